"""INT8 for every target: calibration sets, PTQ, quantization-aware tuning, accuracy control.

The seam the export stage calls (``boq_edge.export.api.export_model(..., int8={...})``)::

    quantize_for_target(
        folded,                 # FoldedVPRModel, FP32 (teacher for QAT, reference for the drop)
        *,
        target,                 # "onnx" | "openvino" | "tensorrt"
        fp32_onnx,              # the FP32 ONNX the exporter wrote (INT8 is made from this graph)
        stage,                  # the bundle directory being staged
        options,                # {"calibration": manifest path | CalibrationSet,   (required)
                                #  "qat_epochs": N, "max_r1_drop": PP,
                                #  "validation": Benchmark | {"path": DIR, **reader options},
                                #  "calibration_root", "seed", "log"}
        batch_range=None,       # accepted; INT8 models keep the dynamic batch axis
    ) -> {"artifacts": {"onnx": "model.onnx"} | {"openvino": "openvino/model.xml"},
          "quantization": {...}}  # QuantizationReport.to_manifest(): the manifest's field

The Python API underneath, for use without a bundle::

    quantize_model(folded, fp32_onnx, target, out_path, calibration, *, preprocessing=None,
                   qat_epochs=0, max_r1_drop=None, validation=None, seed=0, log=None)
        -> QuantizationReport

What each target gets (measured reasons in each module's docstring):

- ``openvino``: NNCF PTQ of the OpenVINO model (FakeQuantize), or the QAT student, or NNCF
  ``quantize_with_accuracy_control``.
- ``onnx``: ONNX Runtime Q/DQ, uint8 activations × int8 per-channel weights (the fast CPU
  path), attention MatMuls + Softmax in float; QAT gives the student's signed Q/DQ model.
- ``tensorrt``: explicit Q/DQ ONNX by the TensorRT rules (signed INT8, zero-point 0,
  per-channel weights, Q/DQ only on Conv/MatMul/Gemm inputs), verified by
  :func:`lint_qdq.lint_model` before it is written. No implicit calibrator, ever.

Every result records the method, the calibration manifest hash, the ops left in float and
— when a validation split is given — the measured Recall@1 drop against torch FP32.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from boq_edge.calibration.calibset import (
    CalibrationError,
    CalibrationOverlapError,
    CalibrationSet,
    FewCalibrationImagesWarning,
    build_calibration_set,
    calibration_set_from_paths,
    check_not_eval,
    load_calibration_set,
    save_calibration_set,
)
from boq_edge.calibration.lint_qdq import LintReport, Violation, lint_file, lint_model
from boq_edge.calibration.seam import (
    METHODS,
    TARGETS,
    AccuracyBudgetError,
    QuantizationReport,
    quantize_for_target,
    quantize_model,
)


def benchmark_int8_options(calibration_paths: Iterable[str | os.PathLike]) -> Callable[[str], dict[str, Any]]:
    """``target -> export_model(int8=...)`` options over one calibration set (``benchmarks/run.py``).

    PTQ with the default placement per target: what the latency matrix measures.
    """
    calib = calibration_set_from_paths(calibration_paths)
    return lambda target: {"calibration": calib}


__all__ = [
    "METHODS", "TARGETS", "AccuracyBudgetError", "CalibrationError", "CalibrationOverlapError", "CalibrationSet",
    "FewCalibrationImagesWarning", "LintReport", "QuantizationReport", "Violation", "benchmark_int8_options",
    "build_calibration_set", "calibration_set_from_paths",
    "check_not_eval", "lint_file", "lint_model", "load_calibration_set", "quantize_for_target", "quantize_model",
    "save_calibration_set",
]
