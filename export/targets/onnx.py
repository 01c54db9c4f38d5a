"""Target ``onnx``: one ``model.onnx`` for ONNX Runtime (or any ONNX consumer).

FP32 is the torch exporter's graph, FP16 the mixed-precision rewrite of it
(:mod:`boq_edge.export.onnx_export`). INT8 is ONNX Runtime's static quantizer in the
``u8s7`` scheme (uint8 activations × int8 per-channel weights in a 7-bit range, Q/DQ where
ONNX Runtime's CPU kernels fuse them; :mod:`boq_edge.calibration.ptq_onnx`), the QAT
student's signed Q/DQ model, or the accuracy-controlled float fallback over the former.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from boq_edge.export.onnx_export import DYNAMO_EXPORTER, ONNX_FILE, ORT_QUANTIZER
from boq_edge.export.targets.base import Target

from boq_edge.runtime.manifest import ROLE_ONNX

if TYPE_CHECKING:
    from boq_edge.calibration.pipeline import Int8Job, Int8Outcome
    from boq_edge.export.bundle import ManifestDraft
    from boq_edge.export.options import ExportOptions


class OnnxTarget(Target):
    name = "onnx"
    aliases = ("onnxruntime", "ort")
    default_backend = "onnxruntime"
    summary = "model.onnx for ONNX Runtime; INT8 as u8s7 Q/DQ for its CPU integer kernels"
    ptq_scheme: ClassVar[str] = "onnxruntime-qdq-u8s7"  # a boq_edge.calibration.Scheme value

    def emit(self, folded: Any, stage: Path, options: ExportOptions, draft: ManifestDraft, work: Path) -> None:
        from boq_edge.export.bundle import OnnxRecord
        from boq_edge.export.onnx_export import OnnxOptions, emit_onnx

        opts = OnnxOptions(opset=options.opset, fp16=options.precision == "fp16")
        emit_onnx(folded, stage, opts)
        draft.artifacts[ROLE_ONNX] = ONNX_FILE
        draft.onnx = OnnxRecord.of_file(stage / ONNX_FILE, DYNAMO_EXPORTER, fp16=opts.report or None)

    def quantize(self, job: Int8Job) -> Int8Outcome:
        from boq_edge.calibration.accuracy_control import accuracy_control_onnx, ort_session_fn
        from boq_edge.calibration.lint_qdq import lint_file
        from boq_edge.calibration.options import Method, Scheme
        from boq_edge.calibration.pipeline import Int8Outcome
        from boq_edge.calibration.ptq_onnx import quantize_onnx

        staged = job.work / ONNX_FILE
        scheme, exporter = Scheme(self.ptq_scheme), f"{DYNAMO_EXPORTER}, rewritten by {ORT_QUANTIZER}"
        reverted: list[str] = []
        notes: list[str] = []
        qat = None
        if job.method is Method.QAT:
            qat, exporter = job.tune_to_qdq_onnx(staged)
            scheme, float_ops = Scheme.QAT_S8S8, lint_file(staged).float_nodes
        elif job.method is Method.ACCURACY_CONTROLLED:
            res = accuracy_control_onnx(job.fp32_named, staged, job.data, job.require_split(), job.budget(),
                                        scheme=scheme, r1_fp32=job.require_r1_fp32(), base_float=job.ill,
                                        log=job.say)
            reverted, notes, float_ops = res.float_nodes, res.log, res.excluded  # as quantize_onnx reports them
        else:
            float_ops = quantize_onnx(job.fp32_named, staged, job.data, scheme=scheme, float_nodes=job.ill)
        return Int8Outcome(scheme=scheme, files={ONNX_FILE: staged}, artifacts={ROLE_ONNX: ONNX_FILE},
                           embed=ort_session_fn(staged), float_ops=float_ops, onnx_source=staged, exporter=exporter,
                           reverted_to_float=reverted, notes=notes, qat=qat)


__all__ = ["OnnxTarget"]
