"""Torch reference backend: the bundle's source model in eager PyTorch, behind the same interface.

A bundle carries no torch weights (devices never need torch), so this backend needs the
source checkpoint (or the model object). The checkpoint's sha256 must match the one the
manifest records, so the reference is provably the model the artifact was exported from.
The model is folded at the bundle's input size exactly as the export did, unless
``fold=False`` asks for the original training-graph model. Only this module imports torch.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from boq_edge.runtime.base import Runtime, RuntimeUnavailable
from boq_edge.runtime.manifest import BundleError, Manifest


class TorchBackend(Runtime):
    backend = "torch"

    def __init__(self, manifest: Manifest, threads: int | None = None,
                 checkpoint: str | os.PathLike | None = None, model: Any = None,
                 device: str = "cpu", fold: bool = True) -> None:
        super().__init__(manifest, threads)
        try:
            import torch
        except ImportError as e:
            raise RuntimeUnavailable("torch is not installed: the torch reference backend needs "
                                     "boq-edge[torch] (devices use onnxruntime/openvino/tensorrt instead)") from e
        if (checkpoint is None) == (model is None):
            raise ValueError("the torch backend needs exactly one of checkpoint=PATH or model=MODULE "
                             "(bundles hold no torch weights)")
        if checkpoint is not None:
            from boq_edge.model import load_checkpoint

            model, _, meta = load_checkpoint(checkpoint)
            expected = manifest.checkpoint_sha256
            if expected and meta["checkpoint_sha256"] != expected:
                raise BundleError(f"{checkpoint} is not the checkpoint {manifest.bundle_dir.name} was exported "
                                  f"from (sha256 {meta['checkpoint_sha256'][:12]}… ≠ {expected[:12]}…)")
        from boq_edge.export.fold import FoldedVPRModel
        from boq_edge.export.fold import fold as fold_model

        h, w = self.input_size
        if fold and not isinstance(model, FoldedVPRModel):
            model = fold_model(model, (h, w))
        if threads:
            torch.set_num_threads(int(threads))
        self._torch = torch
        self._device = torch.device(device)
        self._model = model.eval().to(self._device)
        self._folded = isinstance(model, FoldedVPRModel)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            return self._model(torch.from_numpy(batch).to(self._device)).float().cpu().numpy()

    def _backend_info(self) -> dict[str, Any]:
        return {"torch": self._torch.__version__, "device": str(self._device), "folded": self._folded,
                "precision": "fp32"}
