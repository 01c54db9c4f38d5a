"""The INT8 pipeline: one FP32 model in, one INT8 model file and the record of how it was made out.

:func:`quantize_model` does what every target shares — load the calibration set, find the
ill-conditioned layers that stay float, measure the FP32 reference, and afterwards measure
the INT8 model (descriptor cosine on calibration images; Recall@1 on a validation split),
enforce a Recall@1 budget and publish the files atomically — and asks the target
(:meth:`boq_edge.export.targets.Target.quantize`) for the part that differs: which tool
quantizes, in which scheme, by which method. Heavy imports (torch, nncf, openvino,
onnxruntime) happen inside, so importing the package stays cheap.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from boq_edge.calibration.calibset import CalibrationError, CalibrationSet, load_calibration_set
from boq_edge.calibration.options import Int8Options, Method, Scheme

from boq_edge.fileio import atomic_write

if TYPE_CHECKING:
    import onnx
    from boq_edge.calibration.accuracy_control import ValidationSplit
    from boq_edge.export.targets import Target

EmbedFn = Callable[[np.ndarray], np.ndarray]
CALIBRATION_FILE = "calibration.json"  # the calibration manifest, carried in every INT8 bundle
NON_MANIFEST = ("artifacts", "onnx")  # QuantizationReport fields that go elsewhere in the manifest


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
    calibration_file: str | None = None  # the bundle's copy of the calibration manifest (its sha256 is above)
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
    artifacts: dict[str, str] = field(default_factory=dict)  # role → file, for the manifest's artifacts
    onnx: Any = None  # OnnxRecord of the ONNX the INT8 model was written from (the manifest's onnx field)

    @property
    def r1_drop(self) -> float | None:
        if self.r1_fp32 is None or self.r1_int8 is None:
            return None
        return self.r1_fp32 - self.r1_int8

    def to_manifest(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in NON_MANIFEST}
        d["r1_drop_pp"] = None if self.r1_drop is None else round(self.r1_drop, 4)
        return d


@dataclass
class Int8Job:
    """Everything a target's :meth:`~boq_edge.export.targets.Target.quantize` works from."""

    folded: Any  # FoldedVPRModel, FP32: the QAT teacher
    fp32_onnx: Path  # the exporter's FP32 ONNX
    fp32_named: Path  # the same with every node named (exclusion lists are by name)
    fp32_model: onnx.ModelProto
    data: np.ndarray  # preprocessed calibration images
    options: Int8Options
    ill: list[str]  # ill-conditioned ONNX nodes every scheme leaves in float
    work: Path  # scratch folder; the outcome's files live here until published
    split: ValidationSplit | None = None
    r1_fp32: float | None = None

    @property
    def method(self) -> Method:
        return self.options.method

    def say(self, message: str) -> None:
        self.options.say(message)

    def budget(self) -> float:
        assert self.options.max_r1_drop is not None  # Int8Options guarantees it for accuracy control
        return self.options.max_r1_drop

    def require_split(self) -> ValidationSplit:
        assert self.split is not None  # Int8Options guarantees a validation split with a budget
        return self.split

    def require_r1_fp32(self) -> float:
        assert self.r1_fp32 is not None
        return self.r1_fp32

    def tune_to_qdq_onnx(self, path: Path) -> tuple[dict[str, Any], str]:
        """Quantization-aware tuning, exported as one signed Q/DQ ONNX at ``path``; (QAT record, exporter)."""
        from boq_edge.calibration import qat

        float_layers = qat.nncf_names_for_onnx_nodes(self.folded, self.data, self.fp32_model, self.ill) \
            if self.ill else ()
        res = qat.quantization_aware_tune(self.folded, self.data, epochs=self.options.qat_epochs,
                                          signed_activations=True, seed=self.options.seed, log=self.say,
                                          float_layers=float_layers)
        qat.export_qdq_onnx(res.model, self.data, path)
        record = {"epochs": self.options.qat_epochs, "loss_history": [round(v, 6) for v in res.history],
                  "signed_activations": True, "quantizers": res.num_quantizers, "images": "calibration set"}
        return record, qat.QAT_EXPORTER


@dataclass
class Int8Outcome:
    """What a target made: files under ``job.work`` and how to run and describe them."""

    scheme: Scheme
    files: dict[str, Path]  # bundle-relative path → file under job.work; published in this order
    artifacts: dict[str, str]  # role → bundle-relative path
    embed: EmbedFn  # runs the INT8 model on a preprocessed batch (for the measurements)
    float_ops: list[str]
    onnx_source: Path  # the ONNX the shipped model is (or was converted from)
    exporter: str  # who wrote onnx_source
    reverted_to_float: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    qat: dict[str, Any] | None = None
    lint: dict[str, Any] | None = None


def _toolchain() -> dict[str, str]:
    out = {}
    for mod in ("nncf", "openvino", "onnxruntime", "onnx", "torch"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional tool is simply not recorded
            continue
    return out


def _torch_embed(folded: Any) -> EmbedFn:
    import copy

    import torch
    from boq_edge.calibration.qat import flush_subnormals

    ref = copy.deepcopy(folded).eval()
    flush_subnormals(ref)

    def fn(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return ref(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    return fn


def _calibration_set(options: Int8Options) -> CalibrationSet:
    c = options.calibration
    return c if isinstance(c, CalibrationSet) else load_calibration_set(c, root=options.calibration_root)  # type: ignore[arg-type]


def quantize_model(
    folded: Any,
    fp32_onnx: str | os.PathLike,
    target: str | Target,
    out_dir: str | os.PathLike,
    options: Int8Options,
    *,
    preprocessing: Any = None,
) -> QuantizationReport:
    """Write ``target``'s INT8 model files into ``out_dir`` (a bundle being staged) and say how they were made.

    Raises :class:`AccuracyBudgetError` when a stated budget is missed (nothing is written
    then), :class:`~boq_edge.calibration.qdq_tensorrt.QDQLintError` when a TensorRT model
    would break the Q/DQ rules.
    """
    from boq_edge.export.targets import get_target

    tgt = get_target(target) if isinstance(target, str) else target
    calib = _calibration_set(options)
    validation = options.validation_benchmark()
    if validation is not None:
        hits = {p.resolve() for p in calib.paths} & {
            Path(p).resolve() for p in [*validation.query_paths, *validation.db_paths]}
        if hits:
            options.say(f"note: {len(hits)} calibration images are also validation images")
    spec = preprocessing if preprocessing is not None else folded.config.preprocessing
    data = calib.arrays(spec)
    if len(data) == 0:
        raise CalibrationError("the calibration set is empty")
    options.say(f"INT8 {tgt.name}: {options.method} on {len(data)} calibration images")
    report = QuantizationReport(
        target=tgt.name, method=str(options.method), scheme="", files=[],
        calibration_sha256=calib.content_hash(), calibration_images=len(calib),
        calibration_source={k: calib.source.get(k) for k in ("format", "options", "data", "pool_size")},
        float_ops=[], max_r1_drop=options.max_r1_drop, toolchain=_toolchain())
    ref_fn = _torch_embed(folded)
    with tempfile.TemporaryDirectory(prefix="boq-int8-") as tmp:
        job = _job(folded, Path(fp32_onnx), data, options, Path(tmp), report)
        if validation is not None:
            _measure_reference(job, validation, spec, ref_fn, report)
        outcome = tgt.quantize(job)
        _record(report, outcome)
        _measure(report, outcome, job, ref_fn, tgt.name)
        report.files = _publish(outcome, Path(out_dir))
        report.calibration_file = _carry_calibration(calib, Path(out_dir))
    options.say(f"INT8 model written: {', '.join(Path(f).name for f in report.files)}")
    return report


def _job(folded: Any, fp32_onnx: Path, data: np.ndarray, options: Int8Options, work: Path,
         report: QuantizationReport) -> Int8Job:
    """Name the FP32 graph's nodes and find the layers no scheme may quantize."""
    import onnx
    from boq_edge.calibration.graph import ill_conditioned_nodes
    from boq_edge.calibration.ptq_onnx import prepare_fp32

    named = prepare_fp32(fp32_onnx, work)
    fp32_model = onnx.load(str(named))
    ill = report.ill_conditioned = ill_conditioned_nodes(fp32_model)
    if ill:
        options.say(f"kept in float (BN-amplified weights and their producers): {', '.join(ill)}")
    return Int8Job(folded=folded, fp32_onnx=fp32_onnx, fp32_named=named, fp32_model=fp32_model, data=data,
                   options=options, ill=ill, work=work)


def _measure_reference(job: Int8Job, validation: Any, spec: Any, ref_fn: EmbedFn, report: QuantizationReport) -> None:
    from boq_edge.calibration import accuracy_control as ac

    job.split = ac.ValidationSplit.from_benchmark(validation, spec)
    report.validation, report.validation_fingerprint = job.split.name, job.split.fingerprint
    job.r1_fp32 = report.r1_fp32 = ac.recall_at_1(ref_fn, job.split)
    job.say(f"validation {job.split.name}: torch FP32 R@1 {report.r1_fp32:.2f}")


def _record(report: QuantizationReport, outcome: Int8Outcome) -> None:
    from boq_edge.export.bundle import OnnxRecord

    report.scheme = str(outcome.scheme)
    report.float_ops = list(outcome.float_ops)
    report.reverted_to_float = list(outcome.reverted_to_float)
    report.notes.extend(outcome.notes)
    report.qat, report.lint = outcome.qat, outcome.lint
    report.artifacts = dict(outcome.artifacts)
    report.onnx = OnnxRecord.of_file(outcome.onnx_source, outcome.exporter)


def _measure(report: QuantizationReport, outcome: Int8Outcome, job: Int8Job, ref_fn: EmbedFn, target: str) -> None:
    """Cosine to FP32 on calibration images; Recall@1 on the validation split; the budget."""
    from boq_edge.calibration import accuracy_control as ac

    probe = job.data[:64]
    report.cosine_to_fp32 = ac.mean_cosine(ac.embed(outcome.embed, probe), ac.embed(ref_fn, probe))
    if job.split is None:
        return
    report.r1_int8 = ac.recall_at_1(outcome.embed, job.split)
    job.say(f"validation R@1: FP32 {report.r1_fp32:.2f}, INT8 {report.r1_int8:.2f} (drop {report.r1_drop:.2f} pp)")
    budget = job.options.max_r1_drop
    if budget is not None and report.r1_drop is not None and report.r1_drop > budget + 1e-9:
        raise AccuracyBudgetError(
            f"{target} INT8 ({report.method}) loses {report.r1_drop:.2f} pp Recall@1 on {report.validation} "
            f"(FP32 {report.r1_fp32:.2f} → INT8 {report.r1_int8:.2f}), over the budget of {budget} pp; "
            f"try --qat-epochs, more calibration images, or a larger budget")


def _carry_calibration(calib: CalibrationSet, out_dir: Path) -> str:
    """Put the calibration manifest (its exact bytes: the recorded sha256) in the bundle.

    ``validate`` then checks, wherever the bundle goes, that no calibration image is an
    evaluation image (the manifest carries each image's decoded-pixel digest).
    """
    import hashlib

    data = calib.manifest_path.read_bytes() if calib.manifest_path is not None else calib.to_json_bytes()
    if hashlib.sha256(data).hexdigest() != calib.content_hash():
        raise CalibrationError(f"{calib.manifest_path} changed while the INT8 model was made; run the export again")
    from boq_edge.fileio import atomic_write_bytes

    atomic_write_bytes(out_dir / CALIBRATION_FILE, data)
    return CALIBRATION_FILE


def _publish(outcome: Int8Outcome, out_dir: Path) -> list[str]:
    """Copy each file beside its destination and rename it there (atomic), in the outcome's order.

    Returns the bundle-relative paths, the artifacts first.
    """
    for rel, src in outcome.files.items():
        with open(src, "rb") as f:
            atomic_write(out_dir / rel, lambda out, f=f: shutil.copyfileobj(f, out))  # type: ignore[misc]
    main = [rel for rel in outcome.artifacts.values() if rel in outcome.files]
    return main + [rel for rel in outcome.files if rel not in main]


__all__ = ["AccuracyBudgetError", "Int8Job", "Int8Outcome", "QuantizationReport", "quantize_model"]
