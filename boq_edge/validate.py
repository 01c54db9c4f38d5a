"""Validate artifact bundles against their FP32 reference on real place-recognition data.

For each bundle the same images go through the reference (the torch checkpoint, on a GPU
when one is present) and through the bundle's runtime, with the bundle's own
preprocessing for both, so every difference is the artifact's. The report holds Recall@k
of both and the drop in percentage points, descriptor cosine (mean/min), top-1 agreement,
latency of both (p50/p90/p99, batch 1) and the speedup. Gates (``boq_edge.gate``) read it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from boq_edge import __version__
from boq_edge.bench import system_info, time_callable
from boq_edge.data.benchmark import Benchmark
from boq_edge.evaluate.run import EvalReport, evaluate_benchmark
from boq_edge.fileio import atomic_write_text
from boq_edge.preprocess import Preprocessing

K_VALUES = (1, 5, 10)


def _latency(fn: Any, pre: Preprocessing, iters: int, warmup: int) -> dict[str, float]:
    x = np.random.default_rng(0).standard_normal((1, 3, pre.height, pre.width)).astype(np.float32)
    return {k: round(v, 3) for k, v in time_callable(fn, x, warmup=warmup, iters=iters).to_dict().items()}


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(na, 1e-12)


def _recall(rep: EvalReport) -> dict[str, float]:
    return {str(k): round(float(v), 3) for k, v in rep.recall.recalls.items()}


def _compare(bundle: str | os.PathLike, rt: Any, art_rep: EvalReport, art_lat: dict[str, float],
             ref_rep: EvalReport, ref_lat: dict[str, float]) -> dict[str, Any]:
    """One artifact's report row: its recall and latency beside the reference's, cosine, top-1 agreement."""
    cos = np.concatenate([
        _cosine(art_rep.queries.descriptors, ref_rep.queries.descriptors),
        _cosine(art_rep.database.descriptors, ref_rep.database.descriptors)])
    top1 = float(np.mean(art_rep.predictions[:, 0] == ref_rep.predictions[:, 0]) * 100)
    ref_r, art_r = _recall(ref_rep), _recall(art_rep)
    info = rt.info()
    pre = rt.preprocessing
    return {
        "name": info.get("name") or Path(bundle).name,
        "bundle": str(bundle),
        "runtime": info,
        "precision": info.get("precision"),
        "input_size": [pre.height, pre.width],
        "recall": art_r,
        "reference_recall": ref_r,
        "recall_drop_pp": {k: round(ref_r[k] - art_r[k], 3) for k in art_r},
        "cosine": {"mean": float(cos.mean()), "min": float(cos.min())},
        "top1_agreement": round(top1, 3),
        "latency_ms": art_lat,
        "reference_latency_ms": ref_lat,
        "speedup": round(ref_lat["p50"] / art_lat["p50"], 3) if art_lat["p50"] > 0 else None,
        "images_per_second": round(art_rep.images_per_second, 2),
    }


def reference_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


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
) -> dict[str, Any]:
    """Compare each bundle with the reference checkpoint on ``benchmark``; returns the report dict.

    ``backends`` maps a bundle target to the backend that runs it instead of its default,
    e.g. ``{"tensorrt": "onnxruntime"}``: a TensorRT INT8 bundle's Q/DQ ONNX is measured in
    ONNX Runtime on a machine without TensorRT (the report's runtime block says so).
    """
    import torch

    from boq_edge.evaluate.extract import torch_embed_fn
    from boq_edge.export.targets import get_target
    from boq_edge.model import load_checkpoint
    from boq_edge.runtime import load_runtime, read_manifest

    stand_in = {get_target(t).name: b for t, b in (backends or {}).items()}  # aliases (trt=…) accepted

    model, config, meta = load_checkpoint(reference)
    dev = reference_device(device)
    if threads:
        torch.set_num_threads(threads)
    ref_embed = torch_embed_fn(model, dev)
    ref_cache: dict[str, tuple[EvalReport, dict[str, float]]] = {}
    common = dict(k_values=k_values, batch_size=batch_size, num_workers=num_workers, progress=progress)

    artifacts = []
    for b in bundles:
        target = read_manifest(b, verify=False).target
        rt = load_runtime(b, backend=stand_in.get(target), threads=threads)
        pre: Preprocessing = rt.preprocessing
        key = json.dumps(pre.to_dict(), sort_keys=True)
        if key not in ref_cache:  # the reference at this artifact's input: computed once per preprocessing
            rep = evaluate_benchmark(ref_embed, benchmark, pre, **common)  # type: ignore[arg-type]
            ref_cache[key] = (rep, _latency(ref_embed, pre, latency_iters, warmup))
        art_rep = evaluate_benchmark(rt, benchmark, pre, **common)  # type: ignore[arg-type]
        artifacts.append(_compare(b, rt, art_rep, _latency(rt, pre, latency_iters, warmup), *ref_cache[key]))
    return {
        "boq_edge_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "benchmark": benchmark.summary(),
        "reference": {
            "checkpoint": str(reference), "checkpoint_sha256": meta.get("checkpoint_sha256"),
            "preset": config.name, "runtime": "torch", "device": dev, "precision": "fp32",
            "by_input": [{"preprocessing": json.loads(key), "recall": _recall(r), "latency_ms": lat}
                         for key, (r, lat) in ref_cache.items()],
        },
        "latency_settings": {"batch": 1, "iters": latency_iters, "warmup": warmup, "threads": threads},
        "system": system_info(),
        "artifacts": artifacts,
    }


def report_markdown(report: dict[str, Any]) -> str:
    ref = report["reference"]
    lines = [
        f"# Validation report — {report['benchmark'].get('name', '')}",
        "",
        f"Reference: `{ref['checkpoint']}` ({ref['preset']}, torch FP32 on {ref['device']}). "
        f"Benchmark: {report['benchmark'].get('num_queries')} queries, {report['benchmark'].get('num_db')} database "
        f"images. Latency: batch 1, median of {report['latency_settings']['iters']} runs, "
        f"threads={report['latency_settings']['threads']}, CPU {report['system'].get('cpu')}.",
        "",
        "| artifact | precision | R@1 | R@5 | R@10 | ref R@1 | ΔR@1 (pp) | cos mean | cos min | top-1 agree % "
        "| p50 ms | p99 ms | ref p50 ms | speedup |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in report["artifacts"]:
        r, rr, nan = a["recall"], a["reference_recall"], float("nan")
        lines.append(
            f"| {a['name']} | {a.get('precision')} | {r.get('1', nan):.2f} | {r.get('5', nan):.2f} "
            f"| {r.get('10', nan):.2f} | {rr.get('1', nan):.2f} | {a['recall_drop_pp'].get('1', nan):+.2f} "
            f"| {a['cosine']['mean']:.5f} | {a['cosine']['min']:.5f} | {a['top1_agreement']:.1f} "
            f"| {a['latency_ms']['p50']:.2f} | {a['latency_ms']['p99']:.2f} | {a['reference_latency_ms']['p50']:.2f} "
            f"| {a['speedup']:.2f}× |")
    return "\n".join(lines) + "\n"


def plot_recall_vs_latency(report: dict[str, Any], path: str | os.PathLike) -> Path | None:
    """Recall@1 vs p50 latency, one point per artifact plus the reference; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    seen_ref = set()
    for a in report["artifacts"]:
        ref_pt = (a["reference_latency_ms"]["p50"], a["reference_recall"]["1"])
        if ref_pt not in seen_ref:
            seen_ref.add(ref_pt)
            ax.scatter(*ref_pt, marker="*", s=160, color="black", zorder=3)
            ax.annotate("torch FP32 (reference)", ref_pt, textcoords="offset points", xytext=(6, -12), fontsize=8)
        pt = (a["latency_ms"]["p50"], a["recall"]["1"])
        ax.scatter(*pt, s=60, zorder=3)
        ax.annotate(a["name"], pt, textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("latency p50, batch 1 (ms, log scale)")
    ax.set_ylabel("Recall@1 (%)")
    ax.set_title(f"Recall@1 vs latency — {report['benchmark'].get('name', '')}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def write_report(report: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "json": atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str) + "\n"),
        "markdown": atomic_write_text(out / "report.md", report_markdown(report)),
    }
    png = plot_recall_vs_latency(report, out / "recall_vs_latency.png")
    if png is not None:
        files["plot"] = png
    return files
