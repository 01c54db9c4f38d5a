"""Accuracy control: give back to float the quantizers that cost the most Recall@1.

``--max-r1-drop PP`` states the budget in Recall@1 percentage points on a *validation*
split (never the evaluation split). Two implementations of the same idea:

OpenVINO — NNCF's ``quantize_with_accuracy_control``. Its validation function computes
Recall@1 of the validation queries against the validation database and returns each
query's hit (1/0) as the per-item metric, which NNCF uses to rank quantizers by harm; it
then reverts the most harmful to float until the drop holds.

ONNX Runtime and TensorRT Q/DQ — NNCF's algorithm can only revert quantizers it placed
itself, and NNCF's ONNX placement is the wrong one for both (in ONNX Runtime it ran 2.7×
*slower* than FP32 here; it cannot be forced to signed INT8 within NNCF's hardware
config). So the same loop runs over ONNX Runtime's quantizer: rank each candidate node by
the descriptor cosine to FP32 regained when it alone stays in float (label-free, a few
validation images), then send the worst back to float in growing steps, re-measuring
Recall@1 after each, until the drop holds. Sending everything back is not an INT8 model:
then the budget is reported as missed.

The result always lists the nodes left in float and the measured drop, for the manifest.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from boq_edge.calibration.options import Scheme

EmbedFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class ValidationSplit:
    """Preprocessed validation queries/database and positives: what Recall@1 is measured on."""

    name: str
    queries: np.ndarray
    database: np.ndarray
    positives: list[np.ndarray]
    fingerprint: str = ""

    @classmethod
    def from_benchmark(cls, benchmark: Any, preprocessing: Any, max_queries: int | None = None) -> ValidationSplit:
        from boq_edge.preprocess import preprocess_batch

        n = benchmark.num_queries if max_queries is None else min(max_queries, benchmark.num_queries)
        return cls(benchmark.name, preprocess_batch(benchmark.query_paths[:n], preprocessing),
                   preprocess_batch(benchmark.db_paths, preprocessing), list(benchmark.positives[:n]),
                   benchmark.fingerprint())


def embed(fn: EmbedFn, x: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate([np.asarray(fn(x[i : i + batch]), dtype=np.float32) for i in range(0, len(x), batch)])


def query_hits(q: np.ndarray, db: np.ndarray, positives: Sequence[np.ndarray]) -> np.ndarray:
    """Per-query Recall@1 hit (1.0/0.0), exact inner product on L2-normalised descriptors."""
    from boq_edge.evaluate.recall import search

    _, idx = search(q, db, 1)
    return np.array([1.0 if np.isin(idx[i, 0], positives[i]) else 0.0 for i in range(len(q))])


def recall_at_1(fn: EmbedFn, split: ValidationSplit) -> float:
    """Recall@1 in percent on the validation split."""
    return float(query_hits(embed(fn, split.queries), embed(fn, split.database), split.positives).mean() * 100)


@dataclass
class AccuracyControlResult:
    float_nodes: list[str]  # nodes reverted to float by the search (not counting attention)
    r1_fp32: float
    r1_int8: float
    iterations: int
    log: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # everything the written model leaves in float

    @property
    def drop(self) -> float:
        return self.r1_fp32 - self.r1_int8


# --------------------------------------------------------------------------- OpenVINO


def accuracy_control_openvino(
    fp32_onnx: str | os.PathLike,
    calibration: np.ndarray,
    split: ValidationSplit,
    max_r1_drop: float,
    *,
    float_nodes: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
) -> tuple[Any, list[str]]:
    """``nncf.quantize_with_accuracy_control`` on the OpenVINO model; returns (ov.Model, float op names).

    ``float_nodes`` (ONNX names) stay float from the start, like the attention.
    """
    import nncf
    from boq_edge.calibration.ptq_openvino import advanced_parameters, calibration_dataset, float_scope, read_fp32

    ov_model = read_fp32(fp32_onnx)
    scope = float_scope(ov_model, fp32_onnx, float_nodes)

    def validate(compiled: Any, items: Any) -> tuple[float, list[float]]:
        idx = np.fromiter(items, dtype=np.int64)
        fn = lambda x: compiled(x)[0]  # noqa: E731
        db = embed(fn, split.database)
        q = embed(fn, split.queries[idx])
        hits = query_hits(q, db, [split.positives[i] for i in idx])
        return float(hits.mean()), hits.tolist()

    val = nncf.Dataset(list(range(len(split.queries))))
    quantized = nncf.quantize_with_accuracy_control(
        ov_model, calibration_dataset(calibration), val, validate,
        max_drop=max_r1_drop / 100.0, drop_type=nncf.DropType.ABSOLUTE, subset_size=len(calibration),
        ignored_scope=scope, advanced_quantization_parameters=advanced_parameters())
    return quantized, openvino_float_ops(quantized)


_OV_WEIGHTED = ("Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData")


def openvino_float_ops(model: Any) -> list[str]:
    """Weight-bearing OpenVINO ops whose activation input is not fake-quantized (they run in float)."""
    out = []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in _OV_WEIGHTED and op.get_type_name() != "ScaledDotProductAttention":
            continue
        src = op.input_value(0).get_node()
        hops = 0
        while src.get_type_name() in ("Convert", "Reshape", "Transpose") and hops < 4:
            src = src.input_value(0).get_node()
            hops += 1
        if src.get_type_name() != "FakeQuantize":
            out.append(op.get_friendly_name())
    return out


# --------------------------------------------------------------------------- ONNX Runtime / TensorRT Q/DQ


def ort_session_fn(path: str | os.PathLike, threads: int = 2) -> EmbedFn:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3  # errors only (see boq_edge.runtime.onnxruntime_backend)
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def rank_by_float_gain(build: Callable[[Sequence[str]], EmbedFn], reference: EmbedFn, candidates: Sequence[str],
                       images: np.ndarray, log: Callable[[str], None] | None = None) -> dict[str, float]:
    """Per candidate: how much descriptor cosine to FP32 comes back when only it stays in float.

    One re-quantization per candidate (calibration ranges are cached, so this is cheap) and
    one inference on ``images``. Measured on the descriptor, because local error measures
    misplace the harm: in MobileNetV2's first blocks BN-folded channels with gains of ~1000
    look harmless at their own output and flip between 0 and 6 after the ReLU6, the damage
    then showing layers later. On the Nordland model the local ranking missed them and
    needed every node in float; this one finds them first.
    """
    ref = embed(reference, images)
    gains: dict[str, float] = {}
    base = mean_cosine(embed(build([]), images), ref)
    for i, c in enumerate(candidates):
        gains[c] = mean_cosine(embed(build([c]), images), ref) - base
        if log and (i + 1) % 10 == 0:
            log(f"sensitivity: {i + 1}/{len(candidates)} nodes")
    return gains


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-row cosine of two descriptor batches (not assumed L2-normalised)."""
    num = (a * b).sum(1)
    return float((num / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)).mean())


def accuracy_control_onnx(
    fp32_named: str | os.PathLike,
    out_path: str | os.PathLike,
    calibration: np.ndarray,
    split: ValidationSplit,
    max_r1_drop: float,
    *,
    scheme: Scheme,
    r1_fp32: float,
    base_float: Sequence[str] = (),
    ranking_images: int = 32,
    max_iterations: int = 12,
    log: Callable[[str], None] | None = None,
) -> AccuracyControlResult:
    """Greedy float fallback over ONNX Runtime's quantizer until the Recall@1 drop holds.

    ``fp32_named`` must have named nodes (:func:`ptq_onnx.prepare_fp32`). ``base_float``
    stays float in every trial and is not counted as reverted. Writes the final model to
    ``out_path``. If even the last step misses the budget, the best model found is
    kept and the result says so through its drop (the caller decides whether to fail).
    """
    from boq_edge.calibration.ptq_onnx import candidate_nodes, quantize_onnx

    say = log or (lambda s: None)
    lines: list[str] = []

    def note(s: str) -> None:
        lines.append(s)
        say(s)

    base = list(base_float)
    cands = [c for c in candidate_nodes(fp32_named, scheme) if c not in base]
    with tempfile.TemporaryDirectory(prefix="boq-ac-") as tmp:
        cache = Path(tmp) / "calib-ranges.json"
        trial = Path(tmp) / "trial.onnx"

        def write(float_nodes: Sequence[str], path: Path) -> list[str]:
            return quantize_onnx(fp32_named, path, calibration, scheme=scheme, float_nodes=[*base, *float_nodes],
                                 cache_path=cache)

        def build(float_nodes: Sequence[str], path: Path) -> EmbedFn:
            write(float_nodes, path)
            return ort_session_fn(path)

        r1 = recall_at_1(build([], trial), split)
        note(f"all quantized: R@1 {r1:.2f} (FP32 {r1_fp32:.2f}, drop {r1_fp32 - r1:.2f} pp)")
        if r1_fp32 - r1 <= max_r1_drop:
            return AccuracyControlResult([], r1_fp32, r1, 0, lines, write([], Path(out_path)))
        # Rank (label-free): descriptor cosine regained by each node alone in float.
        harm = rank_by_float_gain(lambda fl: build(fl, trial), ort_session_fn(fp32_named), cands,
                                  split.queries[:ranking_images], log=say)
        order = sorted(cands, key=lambda n: -harm[n])
        note("most harmful: " + ", ".join(f"{n} (+{harm[n]:.4f} cosine in float)" for n in order[:6]))
        best: tuple[float, list[str]] = (r1, [])
        k, it = 0, 0
        limit = len(order) - 1  # all back in float is not an INT8 model: the budget is then missed
        while it < max_iterations and k < limit:
            it += 1
            k = min(limit, k + max(1, k // 2))  # 1, 2, 3, 4, 6, 9, 13... nodes back in float
            fl = order[:k]
            r1 = recall_at_1(build(fl, trial), split)
            note(f"{k} node(s) in float: R@1 {r1:.2f} (drop {r1_fp32 - r1:.2f} pp)")
            if r1 > best[0]:
                best = (r1, fl)
            if r1_fp32 - r1 <= max_r1_drop:
                best = (r1, fl)
                break
        return AccuracyControlResult(list(best[1]), r1_fp32, best[0], it, lines, write(best[1], Path(out_path)))


__all__ = [
    "AccuracyControlResult", "ValidationSplit", "accuracy_control_onnx", "accuracy_control_openvino", "embed",
    "mean_cosine", "openvino_float_ops", "ort_session_fn", "query_hits", "rank_by_float_gain", "recall_at_1",
]
