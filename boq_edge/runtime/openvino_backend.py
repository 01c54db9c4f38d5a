"""OpenVINO backend: compiles ``openvino/model.xml`` with an explicit inference precision.

The CPU plugin picks bf16 by itself on CPUs with AMX or AVX512-BF16 unless told
otherwise, which silently changes the descriptors (measured cosine 0.97 for the
MobileNetV2 preset on an AVX512-BF16 CPU). So the precision is never left to the
plugin: it comes from the manifest (``inference_precision``, ``f32`` unless the export
asked for something else) or from the caller, and :meth:`info` reports what the compiled
model actually uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from boq_edge.runtime.base import Runtime, RuntimeUnavailable
from boq_edge.runtime.manifest import ROLE_ONNX, ROLE_OPENVINO, BundleError, Manifest

INFERENCE_PRECISIONS = ("f32", "f16", "bf16")


class OpenVINOBackend(Runtime):
    backend = "openvino"

    def __init__(self, manifest: Manifest, threads: int | None = None, device: str = "CPU",
                 inference_precision: str | None = None) -> None:
        super().__init__(manifest, threads)
        try:
            import openvino as ov
        except ImportError as e:
            raise RuntimeUnavailable("openvino is not installed: install boq-edge[openvino] "
                                     "(pip install 'boq-edge[openvino]')") from e
        path = manifest.artifact_path(ROLE_OPENVINO) or manifest.artifact_path(ROLE_ONNX)
        if path is None:
            raise BundleError(f"{manifest.bundle_dir}: bundle has neither an OpenVINO IR nor an ONNX model")
        precision = inference_precision or manifest.inference_precision or "f32"
        if precision not in INFERENCE_PRECISIONS:
            raise ValueError(f"unknown OpenVINO inference precision {precision!r}; "
                             f"choose from {', '.join(INFERENCE_PRECISIONS)}")
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        core = ov.Core()
        self._device = device
        self._requested = precision
        self._compiled = core.compile_model(core.read_model(str(path)), device, config)
        self._request = self._compiled.create_infer_request()
        self._model_file = path.relative_to(manifest.bundle_dir).as_posix()
        self._version = ov.get_version()

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = self._request.infer({self.manifest.input_name: batch})
        return np.array(next(iter(out.values())), copy=True)

    def compiled_precision(self) -> str:
        """What the compiled model really runs in (may differ from the hint on some devices)."""
        try:
            value = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        except RuntimeError:
            return "unknown"
        return value.get_type_name() if hasattr(value, "get_type_name") else str(value)

    def _backend_info(self) -> dict[str, Any]:
        return {"openvino": self._version, "device": self._device, "model_file": self._model_file,
                "inference_precision_requested": self._requested,
                "inference_precision": self.compiled_precision()}
