"""Image preprocessing shared by the torch reference and every device runtime.

It is written once, in numpy + PIL, and described by a plain :class:`Preprocessing`
record that travels in checkpoints and bundle manifests. A device that reads the
manifest reproduces the reference input array bit for bit, so any descriptor
difference measured later is the model's, never the input pipeline's. No torch here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# PIL resampling filters by the names stored in manifests. PIL's BICUBIC/BILINEAR are
# antialiased when downscaling, which is what torchvision's Resize(antialias=True) does
# on PIL images in the official BoQ transform.
_FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}

ImageLike = str | os.PathLike | Image.Image | np.ndarray


class CorruptImageError(ValueError):
    """An image file that cannot be decoded; the message names the file."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        super().__init__(f"cannot read image {self.path}: {reason}")


@dataclass(frozen=True)
class Preprocessing:
    """Everything needed to turn an image file into the model's input array."""

    height: int
    width: int
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    layout: str = "NCHW"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.interpolation not in _FILTERS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}; choose from {sorted(_FILTERS)}")
        if self.layout != "NCHW":
            raise ValueError(f"only NCHW layout is supported, got {self.layout!r}")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"image size must be positive, got {self.height}x{self.width}")

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    def with_size(self, height: int, width: int) -> Preprocessing:
        d = self.to_dict()
        d.update(height=height, width=width)
        return Preprocessing.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        known = {"height", "width", "interpolation", "mean", "std", "layout", "extra"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown preprocessing fields: {sorted(unknown)}")
        return cls(
            height=int(d["height"]),
            width=int(d["width"]),
            interpolation=d.get("interpolation", "bicubic"),
            mean=tuple(float(x) for x in d.get("mean", IMAGENET_MEAN)),  # type: ignore[arg-type]
            std=tuple(float(x) for x in d.get("std", IMAGENET_STD)),  # type: ignore[arg-type]
            layout=d.get("layout", "NCHW"),
            extra=dict(d.get("extra", {})),
        )


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image file fully (not lazily) so a truncated file fails here, named."""
    p = Path(path)
    try:
        with Image.open(p) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise CorruptImageError(p, str(e) or type(e).__name__) from e


def pixel_digest(path: str | os.PathLike) -> str | None:
    """sha256 of an image's decoded RGB pixels (and size), or None for a constant image.

    Two files with equal pixels are the same image whatever their encoding (a PNG re-saved,
    a copy under another name); a constant image (a blank frame) identifies no place, so it
    gets no digest and never counts as a shared image.
    """
    import hashlib

    arr = np.asarray(load_image(path))
    if arr.size == 0 or arr.min() == arr.max():
        return None
    h = hashlib.sha256(f"{arr.shape}".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _as_pil(item: ImageLike) -> Image.Image:
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, np.ndarray):
        arr = item
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise ValueError(f"image arrays must be HxWx3 (or HxW) uint8, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            raise ValueError(f"image arrays must be uint8 (raw pixels), got {arr.dtype}")
        return Image.fromarray(arr[..., :3], mode="RGB")
    return load_image(item)


def preprocess_image(item: ImageLike, spec: Preprocessing) -> np.ndarray:
    """One image → float32 array (3, H, W), resized and normalised as ``spec`` says."""
    im = _as_pil(item)
    if im.size != (spec.width, spec.height):
        im = im.resize((spec.width, spec.height), _FILTERS[spec.interpolation])
    pixels = np.asarray(im, dtype=np.float32) / np.float32(255.0)
    x = (pixels - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def preprocess_batch(items: Sequence[ImageLike], spec: Preprocessing) -> np.ndarray:
    """Images → float32 NCHW batch; the single entry point for torch and runtimes alike."""
    if len(items) == 0:
        return np.zeros((0, 3, spec.height, spec.width), dtype=np.float32)
    return np.stack([preprocess_image(it, spec) for it in items], axis=0)
