"""``quantize_for_target``: one call from the export stage to an INT8 model file + its record.

The export stage owns bundles and FP32 emitters; this function owns everything INT8. It
takes the folded FP32 model and the FP32 ONNX already written, writes the INT8 model file
where the bundle wants it, and returns what the manifest must say about it. Heavy
imports (torch, nncf, openvino, onnxruntime) happen inside, so importing the package
stays cheap.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from boq_edge.calibration.calibset import CalibrationError, CalibrationSet, load_calibration_set

from boq_edge.fileio import atomic_write

TARGETS = ("onnx", "openvino", "tensorrt")
METHODS = ("ptq", "qat", "accuracy-controlled")
SCHEMES = {
    "openvino": "openvino-fakequantize-s8-overflowfix",  # NNCF: 7-bit-range s8 weights per channel, per-tensor acts
    "onnx": "onnxruntime-qdq-u8s7",  # u8 activations, s8 per-channel weights in a 7-bit range (reduce_range)
    "tensorrt": "qdq-s8s8-tensorrt",
}


class AccuracyBudgetError(RuntimeError):
    """The INT8 model misses ``max_r1_drop`` on the validation split; the message has the numbers."""


@dataclass
class QuantizationReport:
    """What the bundle manifest records about an INT8 model (``to_manifest()``)."""

    target: str
    method: str
    scheme: str
    files: list[str]
    calibration_sha256: str
    calibration_images: int
    calibration_source: dict[str, Any]
    float_ops: list[str]  # quantizable ops left in float: attention, ill-conditioned, accuracy-control reverts
    ill_conditioned: list[str] = field(default_factory=list)  # ONNX nodes always left float (graph.py)
    reverted_to_float: list[str] = field(default_factory=list)  # the accuracy-control part of float_ops
    cosine_to_fp32: float | None = None  # mean descriptor cosine on (up to 64) calibration images
    validation: str | None = None
    validation_fingerprint: str | None = None
    r1_fp32: float | None = None
    r1_int8: float | None = None
    max_r1_drop: float | None = None
    qat: dict[str, Any] | None = None
    lint: dict[str, Any] | None = None
    toolchain: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def r1_drop(self) -> float | None:
        if self.r1_fp32 is None or self.r1_int8 is None:
            return None
        return self.r1_fp32 - self.r1_int8

    def to_manifest(self) -> dict[str, Any]:
        d = asdict(self)
        d["r1_drop_pp"] = None if self.r1_drop is None else round(self.r1_drop, 4)
        return d


def _toolchain() -> dict[str, str]:
    out = {}
    for mod in ("nncf", "openvino", "onnxruntime", "onnx", "torch"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional tool is simply not recorded
            continue
    return out


def _torch_embed(folded: Any) -> Callable[[np.ndarray], np.ndarray]:
    import copy

    import torch
    from boq_edge.calibration.qat import flush_subnormals

    ref = copy.deepcopy(folded).eval()
    flush_subnormals(ref)

    def fn(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return ref(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    return fn


def quantize_model(
    folded: Any,
    fp32_onnx: str | os.PathLike,
    target: str,
    out_path: str | os.PathLike,
    calibration: CalibrationSet | str | os.PathLike,
    *,
    preprocessing: Any = None,
    qat_epochs: int = 0,
    max_r1_drop: float | None = None,
    validation: Any = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> QuantizationReport:
    """Write the INT8 model file for ``target`` to ``out_path`` and say how it was made.

    ``out_path`` is ``model.onnx`` for onnx/tensorrt, an ``.xml`` (with its ``.bin``) for
    openvino. ``validation`` is a :class:`~boq_edge.data.Benchmark` (a validation split).

    Method: ``qat_epochs > 0`` → quantization-aware tuning (then, if ``max_r1_drop`` is also
    given, the drop is verified rather than searched); ``max_r1_drop`` alone → accuracy
    control; neither → PTQ. Raises :class:`AccuracyBudgetError` when a stated budget is
    missed (nothing is written then), :class:`~boq_edge.calibration.qdq_tensorrt.QDQLintError`
    when a TensorRT model would break the Q/DQ rules.
    """
    from boq_edge.calibration import accuracy_control as ac
    from boq_edge.calibration.ptq_onnx import prepare_fp32, quantize_onnx

    say = log or (lambda s: None)
    if target not in TARGETS:
        raise ValueError(f"unknown INT8 target {target!r}; choose from {', '.join(TARGETS)}")
    if qat_epochs < 0:
        raise ValueError(f"qat_epochs must be >= 0, got {qat_epochs}")
    if max_r1_drop is not None and max_r1_drop < 0:
        raise ValueError(f"max_r1_drop is a budget in percentage points (>= 0), got {max_r1_drop}")
    if max_r1_drop is not None and validation is None:
        raise ValueError("max_r1_drop needs a validation split (validation=..., --val-data): Recall@1 is "
                         "measured there, never on the evaluation split")
    calib = calibration if isinstance(calibration, CalibrationSet) else load_calibration_set(calibration)
    if validation is not None:
        hits = {p.resolve() for p in calib.paths} & {
            Path(p).resolve() for p in [*validation.query_paths, *validation.db_paths]}
        if hits:
            say(f"note: {len(hits)} calibration images are also validation images")
    spec = preprocessing if preprocessing is not None else folded.config.preprocessing
    data = calib.arrays(spec)
    if len(data) == 0:
        raise CalibrationError("the calibration set is empty")
    method = "qat" if qat_epochs > 0 else ("accuracy-controlled" if max_r1_drop is not None else "ptq")
    say(f"INT8 {target}: {method} on {len(data)} calibration images")
    out_path = Path(out_path)
    report = QuantizationReport(
        target=target, method=method, files=[],
        # QAT's ONNX is NNCF's signed Q/DQ (TensorRT rules) for either ONNX target, not ORT's u8s8
        scheme="qdq-s8s8-nncf-qat" if method == "qat" and target != "openvino" else SCHEMES[target],
        calibration_sha256=calib.content_hash(),
        calibration_images=len(calib), calibration_source={k: calib.source.get(k) for k in
                                                            ("format", "options", "data", "pool_size")},
        float_ops=[], max_r1_drop=max_r1_drop, toolchain=_toolchain())
    ref_fn = _torch_embed(folded)
    split = None
    if validation is not None:
        split = ac.ValidationSplit.from_benchmark(validation, spec)
        report.validation, report.validation_fingerprint = split.name, split.fingerprint
        report.r1_fp32 = ac.recall_at_1(ref_fn, split)
        say(f"validation {split.name}: torch FP32 R@1 {report.r1_fp32:.2f}")

    with tempfile.TemporaryDirectory(prefix="boq-int8-") as tmp_s:
        tmp = Path(tmp_s)
        named = prepare_fp32(fp32_onnx, tmp)
        import onnx
        from boq_edge.calibration.graph import ill_conditioned_nodes

        fp32_model = onnx.load(str(named))
        ill = report.ill_conditioned = ill_conditioned_nodes(fp32_model)
        if ill:
            say(f"kept in float (BN-amplified weights and their producers): {', '.join(ill)}")
        staged = tmp / ("model.xml" if target == "openvino" else "model.onnx")
        embed_fn: Callable[[np.ndarray], np.ndarray]
        if method == "qat":
            from boq_edge.calibration import qat

            res = qat.quantization_aware_tune(
                folded, data, epochs=qat_epochs, signed_activations=True, seed=seed, log=say,
                float_layers=qat.nncf_names_for_onnx_nodes(folded, data, fp32_model, ill) if ill else ())
            report.qat = {"epochs": qat_epochs, "loss_history": [round(v, 6) for v in res.history],
                          "signed_activations": True, "quantizers": res.num_quantizers,
                          "images": "calibration set"}
            if target == "openvino":
                from boq_edge.calibration.accuracy_control import openvino_float_ops
                from boq_edge.calibration.ptq_openvino import compile_f32, read_fp32, save_openvino

                qat.export_qdq_onnx(res.model, data, tmp / "qat_qdq.onnx")
                ov_model = read_fp32(tmp / "qat_qdq.onnx")  # Q/DQ → FakeQuantize
                save_openvino(ov_model, staged)
                report.float_ops = openvino_float_ops(ov_model)
                compiled = compile_f32(ov_model)
                embed_fn = lambda x: compiled(x)[0]  # noqa: E731
            else:
                from boq_edge.calibration.lint_qdq import lint_model

                qat.export_qdq_onnx(res.model, data, staged)
                lr = lint_model(onnx.load(str(staged)))
                report.float_ops = lr.float_nodes
                embed_fn = ac.ort_session_fn(staged)
        elif target == "openvino":
            from boq_edge.calibration.ptq_openvino import compile_f32, quantize_openvino, save_openvino

            if method == "accuracy-controlled":
                assert split is not None and max_r1_drop is not None
                ov_model, report.float_ops = ac.accuracy_control_openvino(named, data, split, max_r1_drop,
                                                                          float_nodes=ill, log=say)
                ptq_float = set(ac.openvino_float_ops(quantize_openvino(named, data, float_nodes=ill)[0]))
                report.reverted_to_float = [n for n in report.float_ops if n not in ptq_float]
            else:
                ov_model, _ = quantize_openvino(named, data, float_nodes=ill)
                report.float_ops = ac.openvino_float_ops(ov_model)
            save_openvino(ov_model, staged)
            compiled = compile_f32(ov_model)
            embed_fn = lambda x: compiled(x)[0]  # noqa: E731
        else:
            scheme = "trt-s8s8" if target == "tensorrt" else "ort-u8s8"
            if method == "accuracy-controlled":
                assert split is not None and max_r1_drop is not None and report.r1_fp32 is not None
                res_ac = ac.accuracy_control_onnx(named, staged, data, split, max_r1_drop, scheme=scheme,
                                                  r1_fp32=report.r1_fp32, base_float=ill, log=say)
                report.reverted_to_float = res_ac.float_nodes
                report.notes.extend(res_ac.log)
                report.float_ops = res_ac.excluded  # as quantize_onnx reports it for PTQ
            else:
                report.float_ops = quantize_onnx(named, staged, data, scheme=scheme, float_nodes=ill)
            embed_fn = ac.ort_session_fn(staged)

        if target == "tensorrt":
            from boq_edge.calibration.qdq_tensorrt import check_tensorrt_qdq

            lr = check_tensorrt_qdq(onnx.load(str(staged)), f"TensorRT INT8 model for {fp32_onnx}")
            report.lint = {"ok": True, "quantized_nodes": len(lr.quantized_nodes), "float_matmuls": lr.float_nodes,
                           "quantize_linear": lr.num_quantize, "dequantize_linear": lr.num_dequantize}

        probe = data[:64]
        report.cosine_to_fp32 = ac.mean_cosine(ac.embed(embed_fn, probe), ac.embed(ref_fn, probe))
        if split is not None:
            report.r1_int8 = ac.recall_at_1(embed_fn, split)
            say(f"validation R@1: FP32 {report.r1_fp32:.2f}, INT8 {report.r1_int8:.2f} "
                f"(drop {report.r1_drop:.2f} pp)")
        if max_r1_drop is not None and report.r1_drop is not None and report.r1_drop > max_r1_drop + 1e-9:
            raise AccuracyBudgetError(
                f"{target} INT8 ({method}) loses {report.r1_drop:.2f} pp Recall@1 on {report.validation} "
                f"(FP32 {report.r1_fp32:.2f} → INT8 {report.r1_int8:.2f}), over the budget of {max_r1_drop} pp; "
                f"try --qat-epochs, more calibration images, or a larger budget")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        written = []
        if target == "openvino":
            bin_out = out_path.with_suffix(".bin")
            _move(staged.with_suffix(".bin"), bin_out)  # weights first: the .xml appears last
            written.append(str(bin_out))
        _move(staged, out_path)
        written.insert(0, str(out_path))
        report.files = written
    say(f"INT8 model written: {', '.join(Path(f).name for f in report.files)}")  # bundle staging paths mean nothing
    return report


OPTION_KEYS = ("calibration", "calibration_root", "qat_epochs", "max_r1_drop", "validation", "seed", "log")


def quantize_for_target(
    folded: Any,
    *,
    target: str,
    fp32_onnx: str | os.PathLike,
    stage: str | os.PathLike,
    options: dict[str, Any] | None = None,
    batch_range: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """The export stage's INT8 hook (``boq_edge.export.api.INT8_HOOK``).

    Writes the INT8 model into the bundle being staged (``stage/model.onnx`` for onnx and
    tensorrt, ``stage/openvino/model.xml+bin`` for openvino) and returns
    ``{"artifacts": {role: relpath}, "quantization": QuantizationReport.to_manifest()}``.
    ``options`` keys: ``calibration`` (manifest path or CalibrationSet, required),
    ``calibration_root``, ``qat_epochs``, ``max_r1_drop``, ``validation`` (a Benchmark, or
    ``{"path": DIR, "format": "auto", **reader options}``), ``seed``, ``log``.
    ``batch_range`` is accepted for the contract; INT8 models keep the dynamic batch axis.
    """
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(OPTION_KEYS))
    if unknown:
        raise ValueError(f"unknown INT8 option(s) {', '.join(unknown)}; known: {', '.join(OPTION_KEYS)}")
    calib = opts.get("calibration")
    if calib is None:
        raise CalibrationError("--int8 needs a calibration set: make one with `boq-edge calibrate --data DIR "
                               "-n 512 -o calib.json` and pass --calib calib.json")
    if not isinstance(calib, CalibrationSet):
        calib = load_calibration_set(calib, root=opts.get("calibration_root"))
    validation = opts.get("validation")
    if isinstance(validation, dict):
        from boq_edge.data import read_benchmark

        v = dict(validation)
        validation = read_benchmark(v.pop("path"), v.pop("format", "auto"), **v)
    if target == "openvino":
        rel, role = "openvino/model.xml", "openvino"
    else:
        rel, role = "model.onnx", "onnx"
    report = quantize_model(folded, fp32_onnx, target, Path(stage) / rel, calib,
                            qat_epochs=int(opts.get("qat_epochs") or 0), max_r1_drop=opts.get("max_r1_drop"),
                            validation=validation, seed=int(opts.get("seed") or 0), log=opts.get("log"))
    report.files = [str(Path(f).relative_to(Path(stage))) for f in report.files]
    return {"artifacts": {role: rel}, "quantization": report.to_manifest()}


def _move(src: Path, dst: Path) -> None:
    """Copy into a temp file beside ``dst``, then rename: atomic on the destination filesystem."""
    with open(src, "rb") as f:
        atomic_write(dst, lambda out: shutil.copyfileobj(f, out))


__all__ = ["METHODS", "OPTION_KEYS", "SCHEMES", "TARGETS", "AccuracyBudgetError", "QuantizationReport",
           "quantize_for_target", "quantize_model"]
