"""``boq-edge bench``: latency, throughput, load time and memory of bundles; torch-free."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from boq_edge.cli.app import app, checked_output, console, fail


@app.command("bench")
def bench_cmd(
    bundles: list[Path] = typer.Argument(..., help="Bundle directories, measured side by side."),
    batch: int = typer.Option(1, "--batch", min=1),
    threads: int | None = typer.Option(None, min=1, help="Inference threads (default: the runtime's)."),
    warmup: int = typer.Option(10, min=0),
    iters: int = typer.Option(50, min=1, help="At least this many timed runs."),
    min_time: float = typer.Option(0.0, help="And at least this many seconds of timed runs."),
    backend: str | None = typer.Option(None, help="Force a runtime backend (default: the bundle's target)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the results as JSON."),
) -> None:
    """Latency p50/p90/p99, mean ± std, throughput, load time and peak RSS; runs with only a runtime (no torch)."""
    import json

    from boq_edge.bench import bench_bundle, system_info

    if out is not None:
        checked_output(out, inputs=bundles, what="benchmark results file")
    results = []
    for b in bundles:
        if not (b / "manifest.json").is_file():
            fail(f"{b} is not a bundle (no manifest.json)")
        try:
            results.append(bench_bundle(b, backend=backend, batch=batch, threads=threads, warmup=warmup,
                                        iters=iters, min_time=min_time))
        except RuntimeError as e:
            fail(str(e))
    sysinfo = system_info()
    t = Table("bundle", "backend", "precision", "p50 ms", "p90 ms", "p99 ms", "mean ± std ms", "img/s", "load s",
              "RSS load MB", "RSS peak MB", title=f"batch {batch}, threads {threads or 'default'} — {sysinfo['cpu']}")
    for r in results:
        lat, rt = r["latency_ms"], r["runtime"]
        t.add_row(Path(r["bundle"]).name, str(rt.get("backend")), str(rt.get("precision")), f"{lat['p50']:.2f}",
                  f"{lat['p90']:.2f}", f"{lat['p99']:.2f}", f"{lat['mean']:.2f} ± {lat['std']:.2f}",
                  f"{lat['throughput_ips']:.1f}", f"{r['load_seconds']:.2f}", f"{r['rss_mb']['after_load']:.0f}",
                  f"{r['rss_mb']['peak']:.0f}")
    console.print(t)
    if out is not None:
        from boq_edge.fileio import atomic_write_text

        atomic_write_text(out, json.dumps({"system": sysinfo, "results": results}, indent=2) + "\n")
        console.print(f"wrote {out}")
