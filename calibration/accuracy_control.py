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
config). So the same loop runs over ONNX Runtime's quantizer: rank each Conv/MatMul/Gemm
by the relative error it *adds* (error at its output minus error at its input, INT8 vs
FP32, one pass over a few validation images, label-free), then send the worst back to
float in growing steps, re-measuring Recall@1 after each, until the drop holds.

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
    log: Callable[[str], None] | None = None,
) -> tuple[Any, list[str]]:
    """``nncf.quantize_with_accuracy_control`` on the OpenVINO model; returns (ov.Model, float op names)."""
    import nncf
    import onnx
    from boq_edge.calibration.graph import attention_nodes
    from boq_edge.calibration.ptq_openvino import advanced_parameters, calibration_dataset, ignored_scope_for, read_fp32

    ov_model = read_fp32(fp32_onnx)
    scope = ignored_scope_for(ov_model, attention_nodes(onnx.load(str(fp32_onnx), load_external_data=False)))

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
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def _with_outputs(model_path: str | os.PathLike, names: Sequence[str], out: Path) -> Path:
    """A copy of the model that also outputs the tensors ``names`` (float ones)."""
    import onnx

    m = onnx.load(str(model_path))
    have = {o.name for o in m.graph.output}
    produced = {o for node in m.graph.node for o in node.output}
    for n in names:
        if n not in have and n in produced:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
            have.add(n)
    onnx.save(m, str(out))
    return out


def rank_by_error_increase(fp32_named: str | os.PathLike, quantized: str | os.PathLike, candidates: Sequence[str],
                           images: np.ndarray) -> dict[str, float]:
    """Per candidate node: relative error of its output minus the largest of its inputs', INT8 vs FP32.

    One inference of each model on ``images``. The difference is the error the node itself
    adds (its weights, its input and output quantization), not what it inherits, so the
    high-resolution early layers that hurt most stand out even though every later layer
    carries their error too.
    """
    import onnx
    import onnxruntime as ort

    fp = onnx.load(str(fp32_named), load_external_data=False)
    by_name = {n.name: n for n in fp.graph.node}
    graph_inputs = {i.name for i in fp.graph.input}
    consts = {t.name for t in fp.graph.initializer}
    io: dict[str, tuple[list[str], str]] = {}
    for c in candidates:
        node = by_name[c]
        io[c] = ([i for i in node.input if i and i not in consts], node.output[0])
    wanted = sorted({t for ins, out in io.values() for t in [*ins, out] if t not in graph_inputs})
    with tempfile.TemporaryDirectory(prefix="boq-rank-") as tmp:
        runs = []
        for i, path in enumerate((fp32_named, quantized)):
            p = _with_outputs(path, wanted, Path(tmp) / f"m{i}.onnx")
            so = ort.SessionOptions()
            so.intra_op_num_threads = 2
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep tensors observable
            sess = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
            names = {o.name for o in sess.get_outputs()}
            avail = [n for n in wanted if n in names]
            acc: dict[str, list[np.ndarray]] = {n: [] for n in avail}
            for b in range(0, len(images), 16):
                outs = sess.run(avail, {sess.get_inputs()[0].name: images[b : b + 16]})
                for n, o in zip(avail, outs, strict=True):
                    acc[n].append(np.asarray(o, dtype=np.float32))
            runs.append({n: np.concatenate(v) for n, v in acc.items()})
    ref, q = runs

    def rel(t: str) -> float | None:
        if t in graph_inputs:
            return 0.0
        if t not in ref or t not in q:
            return None  # a tensor the quantizer renamed
        a, b = ref[t].ravel(), q[t].ravel()
        return float(np.linalg.norm(a - b) / (np.linalg.norm(a) + 1e-12))

    out: dict[str, float] = {}
    for c, (ins, o) in io.items():
        r_out = rel(o)
        r_in = [r for r in (rel(t) for t in ins) if r is not None]
        out[c] = 0.0 if r_out is None else r_out - (max(r_in) if r_in else 0.0)
    return out


def accuracy_control_onnx(
    fp32_named: str | os.PathLike,
    out_path: str | os.PathLike,
    calibration: np.ndarray,
    split: ValidationSplit,
    max_r1_drop: float,
    *,
    scheme: str,
    r1_fp32: float,
    ranking_images: int = 32,
    max_iterations: int = 12,
    log: Callable[[str], None] | None = None,
) -> AccuracyControlResult:
    """Greedy float fallback over ONNX Runtime's quantizer until the Recall@1 drop holds.

    ``fp32_named`` must have named nodes (:func:`ptq_onnx.prepare_fp32`). Writes the final
    model to ``out_path``. If even the last step misses the budget, the best model found is
    kept and the result says so through its drop (the caller decides whether to fail).
    """
    from boq_edge.calibration.ptq_onnx import candidate_nodes, quantize_onnx

    say = log or (lambda s: None)
    lines: list[str] = []

    def note(s: str) -> None:
        lines.append(s)
        say(s)

    cands = candidate_nodes(fp32_named, scheme)
    with tempfile.TemporaryDirectory(prefix="boq-ac-") as tmp:
        cache = Path(tmp) / "calib-ranges.json"
        trial = Path(tmp) / "trial.onnx"

        def build(float_nodes: Sequence[str], path: Path) -> EmbedFn:
            quantize_onnx(fp32_named, path, calibration, scheme=scheme, float_nodes=float_nodes, cache_path=cache)
            return ort_session_fn(path)

        r1 = recall_at_1(build([], trial), split)
        note(f"all quantized: R@1 {r1:.2f} (FP32 {r1_fp32:.2f}, drop {r1_fp32 - r1:.2f} pp)")
        if r1_fp32 - r1 <= max_r1_drop:
            build([], Path(out_path))
            return AccuracyControlResult([], r1_fp32, r1, 0, lines)
        # Rank (label-free, one pass): how much relative error each node adds to its input's.
        harm = rank_by_error_increase(fp32_named, trial, cands, split.queries[:ranking_images])
        order = sorted(cands, key=lambda n: -harm[n])
        note("most harmful: " + ", ".join(f"{n} ({harm[n]:.4f})" for n in order[:6]))
        best: tuple[float, list[str]] = (r1, [])
        k, it = 0, 0
        while it < max_iterations and k < len(order):
            it += 1
            k = min(len(order), k + max(1, k // 2))  # 1, 2, 3, 4, 6, 9, 13... nodes back in float
            fl = order[:k]
            r1 = recall_at_1(build(fl, trial), split)
            note(f"{k} node(s) in float: R@1 {r1:.2f} (drop {r1_fp32 - r1:.2f} pp)")
            if r1 > best[0]:
                best = (r1, fl)
            if r1_fp32 - r1 <= max_r1_drop:
                best = (r1, fl)
                break
        build(best[1], Path(out_path))
        return AccuracyControlResult(list(best[1]), r1_fp32, best[0], it, lines)


__all__ = [
    "AccuracyControlResult", "ValidationSplit", "accuracy_control_onnx", "accuracy_control_openvino", "embed",
    "openvino_float_ops", "ort_session_fn", "query_hits", "rank_by_error_increase", "recall_at_1",
]
