"""What an export is asked to produce, typed and checked once: :class:`ExportOptions`.

The CLI converts flags into these objects and the Python API takes them, so a rule
(FP16 and INT8 exclude each other, INT8 needs its options, a target's own options go
only to that target) is written here and nowhere else. Target-specific options are the
target module's own dataclass (``OpenVINOOptions``, ``TensorRTOptions``); which target
accepts which is declared by the target (:attr:`Target.options_type`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from boq_edge.export.onnx_export import MIN_OPSET

if TYPE_CHECKING:  # a type only: importing the INT8 package would pull in onnx for every FP32 export
    from boq_edge.calibration.options import Int8Options

DEFAULT_BATCH_RANGE = (1, 1, 8)


class ExportOptionsError(ValueError):
    """Export options that contradict each other; the message names the flags."""


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def from_flags(cls, fp16: bool = False, int8: bool = False) -> Precision:
        """``--fp16`` / ``--int8`` → a precision; both at once is an error."""
        if fp16 and int8:
            raise ExportOptionsError("--fp16 and --int8 are exclusive: an INT8 bundle keeps its float parts in FP32")
        return cls.INT8 if int8 else cls.FP16 if fp16 else cls.FP32


def parse_batch_range(text: str) -> tuple[int, int, int]:
    """``"4"`` → (4, 4, 4); ``"1:4:8"`` → min 1, opt 4, max 8; ``"1:8"`` → (1, 1, 8)."""
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        raise ExportOptionsError(f"batch range {text!r} is not N or MIN:OPT:MAX (integers)") from None
    if len(parts) == 1:
        parts = parts * 3
    elif len(parts) == 2:
        parts = [parts[0], parts[0], parts[1]]
    if len(parts) != 3:
        raise ExportOptionsError(f"batch range {text!r} is not N or MIN:OPT:MAX")
    return check_batch_range((parts[0], parts[1], parts[2]))


def check_batch_range(r: tuple[int, int, int]) -> tuple[int, int, int]:
    lo, opt, hi = (int(x) for x in r)
    if not 1 <= lo <= opt <= hi:
        raise ExportOptionsError(f"batch range {lo}:{opt}:{hi} must satisfy 1 <= min <= opt <= max")
    return lo, opt, hi


@dataclass(frozen=True)
class ExportOptions:
    """One export: target, precision (with its INT8 options), input and batch shape, ONNX opset.

    ``target`` may be an alias (``trt``, ``ov``…); it is stored canonical. ``target_options``
    is the target's own options object (e.g. ``OpenVINOOptions(inference_precision="bf16")``).
    """

    target: str
    precision: Precision | str = Precision.FP32
    int8: Int8Options | None = None
    batch_range: tuple[int, int, int] = DEFAULT_BATCH_RANGE
    image_size: tuple[int, int] | None = None
    opset: int = MIN_OPSET
    target_options: Any = None

    def __post_init__(self) -> None:
        from boq_edge.export.targets import get_target

        target = get_target(self.target)
        object.__setattr__(self, "target", target.name)
        try:
            object.__setattr__(self, "precision", Precision(self.precision))
        except ValueError:
            raise ExportOptionsError(f"unknown precision {self.precision!r}; choose fp32, fp16 or int8") from None
        object.__setattr__(self, "batch_range", check_batch_range(tuple(self.batch_range)))  # type: ignore[arg-type]
        if self.image_size is not None:
            from boq_edge.preprocess import MAX_SIDE

            h, w = (int(v) for v in self.image_size)
            if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
                raise ExportOptionsError(f"image size {h}x{w} is outside 1..{MAX_SIDE} pixels a side")
            object.__setattr__(self, "image_size", (h, w))
        if self.precision is Precision.INT8 and self.int8 is None:
            raise ExportOptionsError("an INT8 export needs Int8Options (CLI: --int8 --calib FILE)")
        if self.precision is not Precision.INT8 and self.int8 is not None:
            raise ExportOptionsError("INT8 options (--calib, --qat-epochs, --max-r1-drop, --val-data) apply "
                                     "only with --int8")
        if self.opset < MIN_OPSET:
            raise ExportOptionsError(f"opset {self.opset} is too old; boq-edge exports opset >= {MIN_OPSET}")
        if self.precision not in target.precisions:
            raise ExportOptionsError(f"target {target.name} does not export {self.precision} "
                                     f"(it exports {', '.join(map(str, target.precisions))})")
        if self.target_options is not None and not isinstance(self.target_options, target.options_type or ()):
            from boq_edge.export.targets import owner_of

            owner = owner_of(type(self.target_options))
            flags = getattr(self.target_options, "flags", type(self.target_options).__name__)
            raise ExportOptionsError(f"{flags} is for --target {owner} only, not {target.name}")

    @property
    def options_of_target(self) -> Any:
        """The target's own options, or its defaults when none were given."""
        from boq_edge.export.targets import get_target

        if self.target_options is not None:
            return self.target_options
        cls = get_target(self.target).options_type
        return cls() if cls is not None else None


__all__ = ["DEFAULT_BATCH_RANGE", "MIN_OPSET", "ExportOptions", "ExportOptionsError", "Precision",
           "check_batch_range", "parse_batch_range"]
