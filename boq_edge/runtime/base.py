"""The one runtime interface every backend implements.

A backend only says how to run one preprocessed batch (:meth:`Runtime._run`); this base
class does the rest identically for all of them: preprocessing from the manifest (the
shared numpy code), input checks, splitting into the bundle's batch range (padding up
to its minimum, as a TensorRT profile requires), and L2-normalisation in float32 so
every backend returns unit-norm descriptors even when it computed in FP16.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from boq_edge.preprocess import ImageLike, Preprocessing, preprocess_batch
from boq_edge.runtime.manifest import Manifest

Images = np.ndarray | Sequence[ImageLike]


class NonFiniteDescriptorError(ValueError):
    """A model returned NaN or inf for some inputs: "L2-normalised" descriptors that are not numbers."""

    def __init__(self, message: str, rows: list[int]) -> None:
        super().__init__(message)
        self.rows = rows


class RuntimeUnavailable(ImportError):
    """The inference library a backend needs is missing (or cannot run here); says what to install."""


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


class Runtime(ABC):
    """Load a bundle; ``rt(images) -> (N, D)`` float32 unit-norm descriptors; ``rt.info()``."""

    backend: str = ""

    def __init__(self, manifest: Manifest, threads: int | None = None) -> None:
        self.manifest = manifest
        self.threads = threads
        self.preprocessing = Preprocessing.from_dict(manifest.preprocessing)

    # --- what a backend implements -------------------------------------------------
    @abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray:
        """One float32 NCHW batch within the bundle's batch range → raw (B, D) outputs."""

    def _backend_info(self) -> dict[str, Any]:
        return {}

    # --- the shared interface --------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocessing.size

    @property
    def descriptor_dim(self) -> int:
        return self.manifest.descriptor_dim

    @property
    def bundle_dir(self) -> Path:
        return self.manifest.bundle_dir

    def preprocess(self, images: Sequence[ImageLike]) -> np.ndarray:
        """Paths / PIL images / HxWx3 uint8 arrays → the float32 NCHW batch the model takes."""
        return preprocess_batch(list(images), self.preprocessing)

    def __call__(self, images: Images) -> np.ndarray:
        """Descriptors for a preprocessed float32 NCHW array, or for a list of paths/images."""
        x = self._as_batch(images)
        n = x.shape[0]
        if n == 0:
            return np.zeros((0, self.descriptor_dim), dtype=np.float32)
        lo, _, hi = self.manifest.batch_range
        outs = []
        for start in range(0, n, hi):
            chunk = x[start:start + hi]
            real = chunk.shape[0]
            if real < lo:  # pad to the profile minimum; the padding rows are dropped again
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], lo - real, axis=0)], axis=0)
            out = np.asarray(self._run(np.ascontiguousarray(chunk)))
            if out.ndim != 2 or out.shape != (chunk.shape[0], self.descriptor_dim):
                raise RuntimeError(f"{self.backend} returned shape {out.shape}, expected "
                                   f"({chunk.shape[0]}, {self.descriptor_dim})")
            outs.append(out[:real])
        result = np.concatenate(outs, axis=0)
        bad = np.flatnonzero(~np.isfinite(result).all(axis=1))
        if bad.size:
            raise NonFiniteDescriptorError(
                f"{self.manifest.bundle_dir.name} ({self.backend}) returned non-finite descriptors for {bad.size} of "
                f"{n} inputs (rows {bad[:5].tolist()}); the model or its inputs are broken", bad.tolist())
        return l2_normalize(result)

    def embed(self, images: ImageLike | Sequence[ImageLike]) -> np.ndarray:
        """Descriptors for raw images: paths, PIL images or uint8 HxWx3 arrays (one or a list)."""
        if isinstance(images, np.ndarray) and images.ndim == 4 and images.dtype != np.uint8:
            raise ValueError("embed() takes raw images; call the runtime itself on a preprocessed float32 batch")
        if isinstance(images, (str, os.PathLike, Image.Image)) or (isinstance(images, np.ndarray)
                                                                   and images.ndim in (2, 3)):
            images = [images]
        items = list(images)  # type: ignore[arg-type]
        try:
            return self(self.preprocess(items))
        except NonFiniteDescriptorError as e:
            names = [str(items[i]) if isinstance(items[i], (str, os.PathLike)) else f"image {i}" for i in e.rows[:3]]
            raise NonFiniteDescriptorError(f"{e} — e.g. {', '.join(names)}", e.rows) from None

    def info(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "name": m.bundle_dir.name,
            "bundle": str(m.bundle_dir),
            "backend": self.backend,
            "target": m.target,
            "precision": m.precision,
            "preset": m.preset,
            "descriptor_dim": m.descriptor_dim,
            "input_size": list(self.input_size),
            "batch_range": list(m.batch_range),
            "threads": self.threads,
            **self._backend_info(),
        }

    def _as_batch(self, images: Images) -> np.ndarray:
        if isinstance(images, np.ndarray) and images.ndim == 4:
            x = images
            h, w = self.input_size
            if x.dtype != np.float32:
                raise ValueError(f"preprocessed input must be float32, got {x.dtype} "
                                 f"(pass raw uint8 images as a list, or use .embed())")
            if x.shape[1:] != (3, h, w):
                raise ValueError(f"input batch has shape {x.shape}; this bundle takes (N, 3, {h}, {w}) "
                                 f"preprocessed as its manifest says")
            return x
        if isinstance(images, np.ndarray) and images.ndim == 3 and images.dtype == np.uint8:
            images = [images]  # one raw HxWx3 image
        if isinstance(images, (str, os.PathLike)):
            images = [images]
        return self.preprocess(images)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        m = self.manifest
        return f"<{type(self).__name__} {m.bundle_dir.name}: {m.preset} {m.precision} via {self.backend}>"
