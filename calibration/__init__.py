"""INT8 for every target: calibration sets, PTQ, quantization-aware tuning, accuracy control.

The export stage calls :func:`quantize_model` when ``ExportOptions.precision`` is INT8::

    quantize_model(folded, fp32_onnx, target, out_dir, Int8Options(calibration="calib.json", ...))
        -> QuantizationReport   # the manifest's ``quantization`` field (``to_manifest()``)

It writes the target's INT8 model files into ``out_dir`` (a bundle being staged). What is
shared — calibration, the float placement of ill-conditioned layers, the FP32 reference,
the measured cosine and Recall@1 drop, the budget — lives in :mod:`.pipeline`; what each
target does (measured reasons in each module's docstring) lives in its target module:

- ``openvino``: NNCF PTQ of the OpenVINO model (FakeQuantize, :mod:`.ptq_openvino`), the QAT
  student, or NNCF ``quantize_with_accuracy_control`` (:mod:`.accuracy_control`).
- ``onnx``: ONNX Runtime Q/DQ, uint8 activations × int8 per-channel weights in 7 bits
  (:mod:`.ptq_onnx`); QAT gives the student's signed Q/DQ model (:mod:`.qat`).
- ``tensorrt``: explicit Q/DQ ONNX by the TensorRT rules (:mod:`.qdq_tensorrt`), verified
  by :func:`lint_model` before it is written. No implicit calibrator, ever.

Every result records the method, the scheme, the calibration manifest hash, the ops left
in float and — when a validation split is given — the measured Recall@1 drop.
"""

from __future__ import annotations

from boq_edge.calibration.calibset import (
    CalibrationError,
    CalibrationOverlapError,
    CalibrationSet,
    FewCalibrationImagesWarning,
    RepeatedCalibrationImagesWarning,
    build_calibration_set,
    calibration_set_from_paths,
    check_not_eval,
    load_calibration_set,
    save_calibration_set,
)
from boq_edge.calibration.lint_qdq import LintReport, Violation, lint_file, lint_model
from boq_edge.calibration.options import Int8Options, Int8OptionsError, Method, Scheme, ValidationSpec
from boq_edge.calibration.pipeline import AccuracyBudgetError, QuantizationReport, quantize_model

__all__ = [
    "AccuracyBudgetError", "CalibrationError", "CalibrationOverlapError", "CalibrationSet",
    "FewCalibrationImagesWarning", "Int8Options", "Int8OptionsError", "LintReport", "Method", "QuantizationReport",
    "RepeatedCalibrationImagesWarning", "Scheme", "ValidationSpec", "Violation", "build_calibration_set",
    "calibration_set_from_paths", "check_not_eval", "lint_file", "lint_model", "load_calibration_set",
    "quantize_model", "save_calibration_set",
]
