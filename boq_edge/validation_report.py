"""What a validation report looks like on disk: report.json, report.md and the Recall@1-vs-latency plot.

The Markdown states every drop with its interval and McNemar p-value, the cross-precision
Recall@1, failed rows with their reason, and — when the run was gated — each rule's
verdict and what a Recall@1 budget means in queries ("0.5 pp = 5.4 of 1077 queries").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from boq_edge.evaluate.stats import budget_in_queries
from boq_edge.fileio import atomic_write_text

NAN = float("nan")


def _drop_cell(a: dict[str, Any], k: str) -> str:
    s = (a.get("recall_drop_stats") or {}).get(k)
    drop = a["recall_drop_pp"].get(k, NAN)
    if not s:
        return f"{drop:+.2f}"
    return f"{drop:+.2f} [{s['lower']:+.2f}, {s['upper']:+.2f}]"


def _artifact_line(a: dict[str, Any]) -> str:
    if a.get("status") == "failed":
        return f"| {a['name']} | **failed**: {a.get('reason', '')} |" + " |" * 12
    r, rr = a["recall"], a["reference_recall"]
    s1 = (a.get("recall_drop_stats") or {}).get("1") or {}
    cross = (a.get("cross_recall") or {}).get("artifact_queries_reference_database", {})
    foreign = " (foreign reference)" if a.get("foreign_reference") else ""
    return (f"| {a['name']}{foreign} | {a.get('precision')} | {r.get('1', NAN):.2f} | {rr.get('1', NAN):.2f} "
            f"| {_drop_cell(a, '1')} | {s1.get('mcnemar_p', NAN):.3g} | {_drop_cell(a, '5')} "
            f"| {cross.get('1', NAN):.2f} | {a['cosine']['mean']:.5f} | {a['cosine']['min']:.5f} "
            f"| {a['top1_agreement']:.1f} | {a['latency_ms']['p50']:.2f} | {a['reference_latency_ms']['p50']:.2f} "
            f"| {a['speedup']:.2f}× |")


def _gate_lines(report: dict[str, Any]) -> list[str]:
    gate = report.get("gate")
    if not gate:
        return []
    queries = report["benchmark"].get("num_queries")
    lines = ["", f"## Gate: {'PASS' if gate['passed'] else 'FAIL'} ({gate['failed']} of {len(gate['checks'])} "
             f"checks failed)", ""]
    budget = {**gate["rules"]["defaults"]}.get("max_r1_drop_upper", gate["rules"]["defaults"].get("max_r1_drop"))
    if budget is not None and queries:
        lines += [f"Recall@1 budget: {budget_in_queries(budget, int(queries))}.", ""]
    lines += [f"- {'PASS' if c['passed'] else 'FAIL'} {c['text']}" for c in gate["checks"]]
    return lines


def report_markdown(report: dict[str, Any]) -> str:
    ref = report["reference"]
    n = report["benchmark"].get("num_queries")
    lines = [
        f"# Validation report — {report['benchmark'].get('name', '')}",
        "",
        f"Reference: `{ref['checkpoint']}` (sha256 `{str(ref.get('checkpoint_sha256'))[:12]}…`, {ref['preset']}, "
        f"torch FP32 on {ref['device']}, the checkpoint's own preprocessing). Benchmark: {n} queries "
        f"(one query = {100 / n:.3f} pp), {report['benchmark'].get('num_db')} database images. Latency: batch 1, "
        f"median of {report['latency_settings']['iters']} runs, threads={report['latency_settings']['threads']}, "
        f"CPU {report['system'].get('cpu')}." if n else "",
        "",
        "R@1 drop = reference − artifact in percentage points (positive: the artifact lost recall), with the "
        "paired-bootstrap 95 % interval over queries; p = McNemar's exact test on the queries whose hit flipped. "
        "cross R@1 = artifact queries searched in the reference's database.",
        "",
        "| artifact | precision | R@1 | ref R@1 | R@1 drop pp [95 % CI] | McNemar p | R@5 drop pp [95 % CI] "
        "| cross R@1 | cos mean | cos min | top-1 agree % | p50 ms | ref p50 ms | speedup |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_artifact_line(a) for a in report["artifacts"]]
    lines += _gate_lines(report)
    return "\n".join(lines) + "\n"


def plot_recall_vs_latency(report: dict[str, Any], path: str | os.PathLike) -> Path | None:
    """Recall@1 vs p50 latency, one point per measured artifact plus the reference; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        return None
    measured = [a for a in report["artifacts"] if a.get("status", "ok") == "ok"]
    if not measured:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    seen_ref = set()
    for a in measured:
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


__all__ = ["plot_recall_vs_latency", "report_markdown", "write_report"]
