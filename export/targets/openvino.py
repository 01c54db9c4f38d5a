"""Target ``openvino``: an OpenVINO IR, ``openvino/model.xml`` + ``model.bin``.

The IR is converted from the exporter's FP32 ONNX (or, for FP16, from the mixed-precision
FP16 ONNX of :mod:`boq_edge.export.onnx_export`: weights stored as FP16, the
precision-sensitive nodes kept FP32), saved without further compression.
``compress_to_fp16`` is OpenVINO's own option that compresses *every* float weight of an
FP32 source, including the sensitive ones (MobileNetV2 preset on Nordland: min cosine
0.99916 against 0.99991 for the mixed graph); it is there for users who want OpenVINO's
behaviour.

The CPU inference precision is an explicit choice recorded in the manifest
(``inference_precision``, ``f32`` by default): on CPUs with AMX or AVX512-BF16 the CPU
plugin otherwise runs bf16 silently (cosine 0.97 on that same test).

INT8 is NNCF post-training quantization of the OpenVINO model (FakeQuantize, 7-bit weight
range: :mod:`boq_edge.calibration.ptq_openvino`), NNCF's accuracy control, or the QAT
student's Q/DQ ONNX read into OpenVINO.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from boq_edge.export.onnx_export import DYNAMO_EXPORTER, INPUT_NAME, ONNX_FILE, ExportError
from boq_edge.export.targets.base import Target

from boq_edge.runtime.manifest import ROLE_OPENVINO
from boq_edge.runtime.openvino_backend import INFERENCE_PRECISIONS

if TYPE_CHECKING:
    from boq_edge.calibration.pipeline import Int8Job, Int8Outcome
    from boq_edge.export.bundle import ManifestDraft
    from boq_edge.export.options import ExportOptions

IR_FILE = "openvino/model.xml"
BIN_FILE = "openvino/model.bin"


@dataclass(frozen=True)
class OpenVINOOptions:
    compress_to_fp16: bool = False
    inference_precision: str = "f32"
    flags: ClassVar[str] = "OpenVINOOptions (--inference-precision)"

    def __post_init__(self) -> None:
        if self.inference_precision not in INFERENCE_PRECISIONS:
            raise ValueError(f"unknown OpenVINO inference precision {self.inference_precision!r}; "
                             f"choose from {', '.join(INFERENCE_PRECISIONS)}")


def _require_openvino() -> Any:
    try:
        import openvino as ov
    except ImportError as e:
        raise ExportError("openvino is not installed: install boq-edge[openvino]") from e
    return ov


def emit_openvino(onnx_path: str | os.PathLike, out_dir: str | os.PathLike,
                  options: OpenVINOOptions | None = None) -> list[Path]:
    """Convert ``onnx_path`` to IR under ``out_dir/openvino/``; returns the files written."""
    options = options or OpenVINOOptions()
    ov = _require_openvino()
    model = ov.convert_model(str(onnx_path))
    inputs = [i.get_any_name() for i in model.inputs]
    if inputs != [INPUT_NAME]:
        raise ExportError(f"{onnx_path}: OpenVINO sees inputs {inputs}, expected [{INPUT_NAME!r}]")
    if not model.inputs[0].get_partial_shape()[0].is_dynamic:
        raise ExportError(f"{onnx_path}: batch axis is static after conversion; expected a dynamic batch")
    xml = Path(out_dir) / IR_FILE
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml), compress_to_fp16=options.compress_to_fp16)
    return [xml, xml.with_suffix(".bin")]


class OpenVINOTarget(Target):
    name = "openvino"
    aliases = ("ov", "ir")
    default_backend = "openvino"
    summary = "OpenVINO IR (model.xml + model.bin); INT8 as NNCF FakeQuantize"
    options_type = OpenVINOOptions

    def prepare(self, draft: ManifestDraft, options: ExportOptions, out_dir: Path) -> None:
        draft.inference_precision = options.options_of_target.inference_precision

    def emit(self, folded: Any, stage: Path, options: ExportOptions, draft: ManifestDraft, work: Path) -> None:
        from boq_edge.export.bundle import OnnxRecord
        from boq_edge.export.onnx_export import convert_fp16, export_fp32_onnx

        fp16 = options.precision == "fp16"
        src = export_fp32_onnx(folded, work / ONNX_FILE, options.opset)
        report = None
        if fp16:
            report = convert_fp16(src, work / "model_fp16.onnx")
            src = work / "model_fp16.onnx"
        emit_openvino(src, stage, options.options_of_target)
        draft.artifacts[ROLE_OPENVINO] = IR_FILE
        draft.onnx = OnnxRecord.of_file(src, DYNAMO_EXPORTER, fp16=report)
        draft.sections["openvino"] = {"source": "mixed-precision FP16 ONNX" if fp16 else "FP32 ONNX",
                                      "compress_to_fp16": options.options_of_target.compress_to_fp16,
                                      "weights": str(options.precision)}

    def quantize(self, job: Int8Job) -> Int8Outcome:
        from boq_edge.calibration import accuracy_control as ac
        from boq_edge.calibration import ptq_openvino as pov
        from boq_edge.calibration.options import Method, Scheme
        from boq_edge.calibration.pipeline import Int8Outcome

        xml, exporter, source = job.work / "model.xml", DYNAMO_EXPORTER, job.fp32_named
        reverted: list[str] = []
        qat = None
        if job.method is Method.QAT:
            source = job.work / "qat_qdq.onnx"
            qat, exporter = job.tune_to_qdq_onnx(source)
            ov_model = pov.read_fp32(source)  # Q/DQ → FakeQuantize
        elif job.method is Method.ACCURACY_CONTROLLED:
            ov_model, _ = ac.accuracy_control_openvino(job.fp32_named, job.data, job.require_split(), job.budget(),
                                                       float_nodes=job.ill, log=job.say)
            # NNCF does not say what it reverted: compare with the plain PTQ placement
            ptq_float = set(ac.openvino_float_ops(pov.quantize_openvino(job.fp32_named, job.data,
                                                                        float_nodes=job.ill)[0]))
            reverted = [n for n in ac.openvino_float_ops(ov_model) if n not in ptq_float]
        else:
            ov_model, _ = pov.quantize_openvino(job.fp32_named, job.data, float_nodes=job.ill)
        pov.save_openvino(ov_model, xml)
        compiled = pov.compile_f32(ov_model)
        return Int8Outcome(scheme=Scheme.OPENVINO_S7, files={BIN_FILE: xml.with_suffix(".bin"), IR_FILE: xml},
                           artifacts={ROLE_OPENVINO: IR_FILE}, embed=lambda x: compiled(x)[0],
                           float_ops=ac.openvino_float_ops(ov_model), onnx_source=source, exporter=exporter,
                           reverted_to_float=reverted, qat=qat)


__all__ = ["BIN_FILE", "IR_FILE", "OpenVINOOptions", "OpenVINOTarget", "emit_openvino"]
