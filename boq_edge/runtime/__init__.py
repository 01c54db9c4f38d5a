"""Torch-free device runtime: load an artifact bundle, embed images, get unit-norm descriptors.

    from boq_edge.runtime import load_runtime
    rt = load_runtime("bundle/")                 # backend from the manifest's target
    desc = rt.embed(["a.jpg", "b.jpg"])          # (2, D) float32, L2-normalised
    desc = rt(batch)                             # or a float32 NCHW batch already preprocessed

Nothing here imports torch (only the ``torch`` reference backend does, when asked for),
so a device needs the bundle, numpy, PIL and one inference runtime.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from boq_edge.runtime.base import Runtime, RuntimeUnavailable, l2_normalize
from boq_edge.runtime.manifest import BundleError, Manifest, read_manifest

# backend name -> (module, class). Adding a backend is one file and one line here.
BACKENDS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("boq_edge.runtime.onnxruntime_backend", "OnnxRuntimeBackend"),
    "openvino": ("boq_edge.runtime.openvino_backend", "OpenVINOBackend"),
    "tensorrt": ("boq_edge.runtime.tensorrt_backend", "TensorRTBackend"),
    "torch": ("boq_edge.runtime.torch_backend", "TorchBackend"),
}
BACKEND_ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "ov": "openvino", "trt": "tensorrt",
                   "pytorch": "torch"}


def resolve_backend(name: str) -> str:
    key = BACKEND_ALIASES.get(name, name)
    if key not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return key


def load_runtime(bundle_dir: str | os.PathLike, backend: str | None = None, threads: int | None = None,
                 verify: bool = True, **options: Any) -> Runtime:
    """Verify a bundle (sha256 of every file) and open it with a backend.

    ``backend`` defaults to the bundle's target's (:attr:`Target.default_backend`). ``options`` go to the
    backend: ``providers`` (onnxruntime), ``device`` / ``inference_precision`` (openvino),
    ``device_index`` (tensorrt), ``checkpoint`` or ``model`` / ``device`` / ``fold`` (torch).
    Raises :class:`BundleError` for a bad or tampered bundle and :class:`RuntimeUnavailable`
    (naming the extra to install) when the backend's library is missing.
    """
    from boq_edge.export.targets import get_target

    manifest = read_manifest(bundle_dir, verify=verify)
    name = resolve_backend(backend or get_target(manifest.target).default_backend)
    module_name, class_name = BACKENDS[name]
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(manifest, threads=threads, **options)


__all__ = [
    "BACKENDS", "BundleError", "Manifest", "Runtime", "RuntimeUnavailable", "l2_normalize", "load_runtime",
    "read_manifest", "resolve_backend",
]
