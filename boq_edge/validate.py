"""Validate artifact bundles against the FP32 checkpoint they were exported from, on real data.

The proof is bound to what it proves:

- the reference must be the checkpoint the bundle records (sha256), unless asked
  (``allow_foreign_reference``; every row then says so);
- the reference always runs with the checkpoint's own preprocessing (at the bundle's input
  size); a bundle whose preprocessing differs fails, naming the fields;
- an INT8 bundle's calibration images must not be evaluation images (decoded pixels);
- every bundle is verified (hashes, unlisted files, the deployment facts in the model file).

Per artifact the report holds Recall@k of both models, the drop in percentage points with a
paired-bootstrap 95 % interval and McNemar's exact p-value (per-query hits), descriptor
cosine, top-1 agreement, cross-precision Recall@1 (artifact queries against the reference's
database — the map built on the workstation, queried on the device — and the reverse),
latency and speedup. A bundle that cannot be loaded or run is a failed row with its
reason; the others are still measured. Gates (``boq_edge.gate``) read the report; with
``rules`` their verdict is part of it.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from boq_edge import __version__
from boq_edge.bench import system_info, time_callable
from boq_edge.data.benchmark import Benchmark
from boq_edge.evaluate.run import EvalReport, evaluate_benchmark, score
from boq_edge.evaluate.stats import hits_at_k, paired_drop
from boq_edge.preprocess import Preprocessing
from boq_edge.validation_report import plot_recall_vs_latency, report_markdown, write_report

K_VALUES = (1, 5, 10)
# Preprocessing fields that must equal the checkpoint's; the size may differ (export --image-size).
PREPROCESSING_FIELDS = ("interpolation", "mean", "std", "layout", "extra")


class ForeignReferenceError(ValueError):
    """The reference is not the checkpoint a bundle was exported from (and that was not allowed)."""


class ArtifactCheckError(ValueError):
    """A bundle that runs but is not comparable or not clean (preprocessing, calibration leak)."""


def _latency(fn: Any, pre: Preprocessing, iters: int, warmup: int) -> dict[str, float]:
    x = np.random.default_rng(0).standard_normal((1, 3, pre.height, pre.width)).astype(np.float32)
    return {k: round(v, 3) for k, v in time_callable(fn, x, warmup=warmup, iters=iters).to_dict().items()}


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(na, 1e-12)


def _recall(recalls: Mapping[int, float]) -> dict[str, float]:
    return {str(k): round(float(v), 3) for k, v in recalls.items()}


def reference_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def check_binding(bundles: Sequence[str | os.PathLike], reference: str | os.PathLike, reference_sha256: str,
                  allow_foreign: bool) -> dict[str, str | None]:
    """Each bundle's recorded source checkpoint sha256; raises unless all are the reference's (or allowed)."""
    from boq_edge.runtime.manifest import BundleError, read_manifest

    recorded: dict[str, str | None] = {}
    foreign = []
    for b in bundles:
        try:
            recorded[str(b)] = sha = read_manifest(b, verify=False).checkpoint_sha256
        except BundleError:
            continue  # reported as a failed row, with the reason, when it is measured
        if sha != reference_sha256:
            foreign.append(f"{Path(b).name} ({'no recorded checkpoint' if sha is None else sha[:12] + '…'})")
    if foreign and not allow_foreign:
        raise ForeignReferenceError(
            f"{reference} (sha256 {reference_sha256[:12]}…) is not the checkpoint {', '.join(foreign)} "
            f"{'was' if len(foreign) == 1 else 'were'} exported from; give that checkpoint as --reference, or "
            f"--allow-foreign-reference to compare anyway (every row of the report then says so)")
    return recorded


def check_preprocessing(bundle_pre: Preprocessing, checkpoint_pre: Preprocessing) -> None:
    differ = [f for f in PREPROCESSING_FIELDS if getattr(bundle_pre, f) != getattr(checkpoint_pre, f)]
    if differ:
        shown = ", ".join(f"{f} {getattr(bundle_pre, f)} (checkpoint: {getattr(checkpoint_pre, f)})" for f in differ)
        raise ArtifactCheckError(f"preprocessing differs from the checkpoint's: {shown}")


def check_calibration_leak(manifest: Any, benchmark: Benchmark) -> None:
    """An INT8 bundle's calibration images (the manifest it carries) must not be evaluation images."""
    from boq_edge.calibration.calibset import CalibrationError, check_not_eval, load_calibration_set

    q = manifest.quantization or {}
    rel = q.get("calibration_file")
    if not rel:
        return
    path = manifest.bundle_dir / rel
    try:
        calib = load_calibration_set(path, verify=False)
        if calib.manifest_sha256 != q.get("calibration_sha256"):
            raise ArtifactCheckError(f"{rel} is not the calibration set the bundle records (sha256 differs)")
        check_not_eval(calib, benchmark)
    except CalibrationError as e:
        raise ArtifactCheckError(f"calibration leak: {e}") from None


class _Reference:
    """The FP32 checkpoint's descriptors and latency, once per input size (cached on disk by content)."""

    def __init__(self, model: Any, config: Any, sha256: str, device: str, benchmark: Benchmark,
                 common: dict[str, Any], cache_dir: str | os.PathLike | None, latency: tuple[int, int]) -> None:
        from boq_edge.evaluate.extract import torch_embed_fn

        self.config, self.sha256, self.device, self.benchmark = config, sha256, device, benchmark
        self.embed = torch_embed_fn(model, device)
        self.common, self.cache_dir, self.latency = common, cache_dir, latency
        self.by_size: dict[tuple[int, int], tuple[EvalReport, dict[str, float]]] = {}

    def at(self, size: tuple[int, int]) -> tuple[EvalReport, dict[str, float]]:
        if size not in self.by_size:
            pre = self.config.preprocessing.with_size(*size)
            rep = evaluate_benchmark(self.embed, self.benchmark, pre, model_hash=f"{self.sha256}|torch-{self.device}",
                                     cache_dir=self.cache_dir, **self.common)
            self.by_size[size] = (rep, _latency(self.embed, pre, *self.latency))
        return self.by_size[size]


def _stats(ref: EvalReport, art: EvalReport, benchmark: Benchmark) -> dict[str, Any]:
    """Paired bootstrap interval and McNemar p of the R@1 and R@5 drops, from per-query hits."""
    pos = [benchmark.positives[i] for i in np.flatnonzero(ref.queries.ok)]
    out = {}
    for k in (1, 5):
        if k <= ref.predictions.shape[1]:
            out[str(k)] = paired_drop(hits_at_k(ref.predictions, pos, k), hits_at_k(art.predictions, pos, k)).to_dict()
    return out


def _cross(ref: EvalReport, art: EvalReport, benchmark: Benchmark, ks: Sequence[int]) -> dict[str, Any]:
    """Recall when one side is the artifact and the other the FP32 reference, both ways."""
    art_q, _ = score(art.queries, ref.database, benchmark, ks)
    ref_q, _ = score(ref.queries, art.database, benchmark, ks)
    ref_r1 = ref.recall.recalls[ks[0]]
    cross = {"artifact_queries_reference_database": _recall(art_q.recalls),
             "reference_queries_artifact_database": _recall(ref_q.recalls)}
    worst = max(ref_r1 - art_q.recalls[ks[0]], ref_r1 - ref_q.recalls[ks[0]])
    return {"cross_recall": cross, "cross_recall_drop_pp": {str(ks[0]): round(float(worst), 3)}}


def _row(bundle: str | os.PathLike, rt: Any, art: EvalReport, art_lat: dict[str, float], ref: EvalReport,
         ref_lat: dict[str, float], benchmark: Benchmark, ks: Sequence[int]) -> dict[str, Any]:
    """One artifact's report row: its recall and latency beside the reference's, with their statistics."""
    cos = np.concatenate([_cosine(art.queries.descriptors, ref.queries.descriptors),
                          _cosine(art.database.descriptors, ref.database.descriptors)])
    ref_r, art_r = _recall(ref.recall.recalls), _recall(art.recall.recalls)
    info = rt.info()
    return {
        "name": info.get("name") or Path(bundle).name, "bundle": str(bundle), "status": "ok", "runtime": info,
        "precision": info.get("precision"), "input_size": list(rt.preprocessing.size),
        "recall": art_r, "reference_recall": ref_r,
        "recall_drop_pp": {k: round(ref_r[k] - art_r[k], 3) for k in art_r},
        "recall_drop_stats": _stats(ref, art, benchmark), **_cross(ref, art, benchmark, ks),
        "cosine": {"mean": float(cos.mean()), "min": float(cos.min())},
        "top1_agreement": round(float(np.mean(art.predictions[:, 0] == ref.predictions[:, 0]) * 100), 3),
        "latency_ms": art_lat, "reference_latency_ms": ref_lat,
        "speedup": round(ref_lat["p50"] / art_lat["p50"], 3) if art_lat["p50"] > 0 else None,
        "images_per_second": round(art.images_per_second, 2),
    }


def validate(
    bundles: Sequence[str | os.PathLike],
    reference: str | os.PathLike,
    benchmark: Benchmark,
    *,
    device: str = "auto",
    batch_size: int = 32,
    num_workers: int = 2,
    threads: int | None = None,
    latency_iters: int = 50,
    warmup: int = 5,
    progress: bool = True,
    k_values: Sequence[int] = K_VALUES,
    backends: Mapping[str, str] | None = None,
    allow_foreign_reference: bool = False,
    cache_dir: str | os.PathLike | None = None,
    rules: Any = None,
) -> dict[str, Any]:
    """Compare each bundle with the reference checkpoint on ``benchmark``; returns the report dict.

    ``backends`` maps a bundle target to the backend that runs it instead of its default,
    e.g. ``{"tensorrt": "onnxruntime"}`` (the report's runtime block says so). ``cache_dir``
    keeps the reference's descriptors across runs (keyed by checkpoint, preprocessing and
    image contents). ``rules`` (a :class:`boq_edge.gate.GateRules` or mapping) puts the gate's
    verdict into the report. Raises :class:`ForeignReferenceError` before any work when the
    reference is not the bundles' source checkpoint and that was not allowed.
    """
    import torch

    from boq_edge.model import load_checkpoint

    stand_in = _stand_in_backends(backends)
    model, config, meta = load_checkpoint(reference)
    ref_sha = meta["checkpoint_sha256"]
    recorded = check_binding(bundles, reference, ref_sha, allow_foreign_reference)
    dev = reference_device(device)
    if threads:
        torch.set_num_threads(threads)
    common = dict(k_values=k_values, batch_size=batch_size, num_workers=num_workers, progress=progress)
    ref = _Reference(model, config, ref_sha, dev, benchmark, common, cache_dir, (latency_iters, warmup))
    artifacts = []
    for b in bundles:
        row = _measure(b, ref, benchmark, common, stand_in, threads, (latency_iters, warmup), list(k_values))
        row["foreign_reference"] = recorded.get(str(b)) != ref_sha
        artifacts.append(row)
    report: dict[str, Any] = {
        "boq_edge_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "benchmark": benchmark.summary(),
        "reference": {
            "checkpoint": str(reference), "checkpoint_sha256": ref_sha, "preset": config.name, "runtime": "torch",
            "device": dev, "precision": "fp32", "preprocessing": config.preprocessing.to_dict(),
            "by_input": [{"input_size": list(size), "recall": _recall(r.recall.recalls), "latency_ms": lat,
                          "from_cache": r.queries.from_cache and r.database.from_cache}
                         for size, (r, lat) in ref.by_size.items()],
        },
        "latency_settings": {"batch": 1, "iters": latency_iters, "warmup": warmup, "threads": threads},
        "system": system_info(),
        "artifacts": artifacts,
    }
    if rules is not None:
        from boq_edge.gate import check_report, gate_summary

        report["gate"] = {"rules": _rules_dict(rules), **gate_summary(check_report(report, rules))}
    return report


def _stand_in_backends(backends: Mapping[str, str] | None) -> dict[str, str]:
    """``--backend TARGET=BACKEND`` with target aliases resolved; an unknown name is bad input."""
    from boq_edge.export.targets import ExportError, get_target
    from boq_edge.runtime import resolve_backend

    try:
        return {get_target(t).name: resolve_backend(b) for t, b in (backends or {}).items()}
    except (ExportError, ValueError) as e:
        raise ValueError(f"--backend: {e}") from None


def _rules_dict(rules: Any) -> dict[str, Any]:
    from boq_edge.gate import GateRules, parse_rules

    r = rules if isinstance(rules, GateRules) else parse_rules(rules)
    return {"defaults": r.defaults, "per_artifact": r.per_artifact}


def _measure(bundle: str | os.PathLike, ref: _Reference, benchmark: Benchmark, common: dict[str, Any],
             stand_in: Mapping[str, str], threads: int | None, latency: tuple[int, int],
             ks: list[int]) -> dict[str, Any]:
    """One bundle's row, or a failed row naming why it could not be measured."""
    from boq_edge.runtime import BundleError, RuntimeUnavailable, load_runtime, read_manifest

    try:
        m = read_manifest(bundle, verify=True)
        rt = load_runtime(bundle, backend=stand_in.get(m.target), threads=threads)
        check_preprocessing(rt.preprocessing, ref.config.preprocessing)
        check_calibration_leak(m, benchmark)
        ref_rep, ref_lat = ref.at(rt.preprocessing.size)
        art = evaluate_benchmark(rt, benchmark, rt.preprocessing, **common)  # type: ignore[arg-type]
        return _row(bundle, rt, art, _latency(rt, rt.preprocessing, *latency), ref_rep, ref_lat, benchmark, ks)
    except (BundleError, RuntimeUnavailable, ArtifactCheckError, RuntimeError, ValueError, OSError) as e:
        return {"name": Path(bundle).name, "bundle": str(bundle), "status": "failed",
                "reason": (str(e).strip().splitlines() or [type(e).__name__])[0]}


__all__ = ["ArtifactCheckError", "ForeignReferenceError", "K_VALUES", "check_binding", "plot_recall_vs_latency",
           "report_markdown", "validate", "write_report"]
