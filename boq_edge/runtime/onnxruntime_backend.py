"""ONNX Runtime backend: runs the bundle's ``model.onnx`` (any target's bundle has one)."""

from __future__ import annotations

from typing import Any

import numpy as np

from boq_edge.runtime.base import Runtime, RuntimeUnavailable
from boq_edge.runtime.manifest import ROLE_ONNX, BundleError, Manifest


class OnnxRuntimeBackend(Runtime):
    backend = "onnxruntime"

    def __init__(self, manifest: Manifest, threads: int | None = None,
                 providers: list[str] | None = None) -> None:
        super().__init__(manifest, threads)
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise RuntimeUnavailable("onnxruntime is not installed: install boq-edge[onnx] "
                                     "(pip install 'boq-edge[onnx]')") from e
        path = manifest.artifact_path(ROLE_ONNX)
        if path is None:
            raise BundleError(f"{manifest.bundle_dir}: bundle has no ONNX model for onnxruntime "
                              f"(target {manifest.target}); use backend {manifest.target!r}")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only: its Q/DQ fusion warns once per scale constant it leaves unused
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        self._providers = providers or ["CPUExecutionProvider"]
        self._session = ort.InferenceSession(str(path), so, providers=self._providers)
        self._version = ort.__version__

    def _run(self, batch: np.ndarray) -> np.ndarray:
        m = self.manifest
        return self._session.run([m.output_name], {m.input_name: batch})[0]

    def _backend_info(self) -> dict[str, Any]:
        return {"onnxruntime": self._version, "providers": self._session.get_providers()}
