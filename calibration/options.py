"""What an INT8 export is asked to do, typed: the method, the scheme vocabulary, the options.

The rules of the INT8 flags (a calibration set is required; a Recall@1 budget needs a
validation split; epochs and budgets are non-negative) are checked here once, when the
options are made, so the CLI only converts flags and the Python API gets the same errors.
This module needs neither torch nor a runtime (the package around it imports onnx).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boq_edge.calibration.calibset import CalibrationSet

    from boq_edge.data.benchmark import Benchmark


class Int8OptionsError(ValueError):
    """INT8 options that contradict each other or miss a required part; the message names the flag."""


class Method(str, Enum):
    """How the INT8 model is made."""

    PTQ = "ptq"  # post-training quantization from calibration statistics
    QAT = "qat"  # quantization-aware tuning by label-free distillation
    ACCURACY_CONTROLLED = "accuracy-controlled"  # PTQ, then quantizers reverted to float until a budget holds

    def __str__(self) -> str:
        return self.value


class Scheme(str, Enum):
    """Where the Q/DQ (or FakeQuantize) nodes sit and which integer types they use; recorded in the manifest.

    Weight bits are named as used: ``s7`` is int8 storage in a 7-bit range (ONNX Runtime's
    ``reduce_range`` / NNCF's overflow fix), which integer kernels without VNNI need.
    """

    OPENVINO_S7 = "openvino-fakequantize-s8-overflowfix"  # NNCF FakeQuantize, s8 weights in a 7-bit range
    ORT_U8S7 = "onnxruntime-qdq-u8s7"  # ONNX Runtime Q/DQ: u8 activations, s8 per-channel weights in 7 bits
    TRT_S8S8 = "qdq-s8s8-tensorrt"  # TensorRT explicit Q/DQ: s8 symmetric, Q/DQ only on Conv/MatMul/Gemm inputs
    QAT_S8S8 = "qdq-s8s8-nncf-qat"  # the QAT student's signed Q/DQ (TensorRT placement) for either ONNX target

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ValidationSpec:
    """A validation split by path, read only when the INT8 stage needs it (``read_benchmark`` options)."""

    path: Path
    format: str = "auto"
    options: Mapping[str, Any] = field(default_factory=dict)

    def read(self) -> Benchmark:
        from boq_edge.data import read_benchmark

        return read_benchmark(self.path, self.format, **dict(self.options))


@dataclass(frozen=True)
class Int8Options:
    """INT8 export options: calibration set, method (PTQ / QAT / accuracy control), validation split.

    ``qat_epochs > 0`` → quantization-aware tuning (then a ``max_r1_drop`` is verified, not
    searched); ``max_r1_drop`` alone → accuracy control; neither → PTQ. ``validation`` is a
    :class:`~boq_edge.data.Benchmark` or a :class:`ValidationSpec`; the Recall@1 drop is
    measured there, never on the evaluation split.
    """

    calibration: CalibrationSet | str | os.PathLike | None
    calibration_root: str | os.PathLike | None = None
    qat_epochs: int = 0
    max_r1_drop: float | None = None
    validation: Benchmark | ValidationSpec | None = None
    seed: int = 0
    log: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.calibration is None:
            raise Int8OptionsError("INT8 needs a calibration set from training images (--calib FILE): make one "
                                   "with `boq-edge calibrate --data DIR -n 512 -o calib.json`, not from the "
                                   "evaluation split")
        if int(self.qat_epochs) != self.qat_epochs or self.qat_epochs < 0:
            raise Int8OptionsError(f"QAT epochs (--qat-epochs) must be a whole number >= 0, got {self.qat_epochs}")
        if self.max_r1_drop is not None and not self.max_r1_drop >= 0:
            raise Int8OptionsError(f"the Recall@1 budget (--max-r1-drop) is in percentage points (>= 0), got "
                                   f"{self.max_r1_drop}")
        if self.max_r1_drop is not None and self.validation is None:
            raise Int8OptionsError("a Recall@1 budget (--max-r1-drop) needs --val-data DIR (Python: validation=), "
                                   "a validation split: Recall@1 is measured there, never on the evaluation split")

    @property
    def method(self) -> Method:
        if self.qat_epochs > 0:
            return Method.QAT
        return Method.ACCURACY_CONTROLLED if self.max_r1_drop is not None else Method.PTQ

    def say(self, message: str) -> None:
        if self.log is not None:
            self.log(message)

    def validation_benchmark(self) -> Benchmark | None:
        v = self.validation
        return v.read() if isinstance(v, ValidationSpec) else v


__all__ = ["Int8Options", "Int8OptionsError", "Method", "Scheme", "ValidationSpec"]
