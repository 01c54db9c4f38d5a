"""``validate``, ``gate`` and ``bench``: the accuracy/latency proof of an artifact, and its CI verdict."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from boq_edge.cli.app import app, console, err_console, fail, parse_key_values


def _print_checks(checks: list, junit: Path | None) -> int:
    from boq_edge.gate import junit_xml

    failed = [c for c in checks if not c.passed]
    for c in checks:
        mark = "[green]PASS[/]" if c.passed else "[bold red]FAIL[/]"
        (console if c.passed else err_console).print(f"{mark} {c.describe()}", highlight=False, soft_wrap=True)
    if junit is not None:
        from boq_edge.evaluate.cache import atomic_write_text

        atomic_write_text(junit, junit_xml(checks))
    if failed:
        err_console.print(f"[bold red]gate failed:[/] {len(failed)} of {len(checks)} rule checks violated",
                          highlight=False, soft_wrap=True)
    return 1 if failed else 0


def print_validation_table(report: dict) -> None:
    """The reference row (torch FP32) then one row per artifact: R@1/5/10, drop, cosine, latency, speedup."""
    t = Table("model", "precision", "R@1", "R@5", "R@10", "ΔR@1 pp", "cos min", "top-1 agree", "p50 ms", "speedup",
              title=f"validation on {report['benchmark'].get('name', '')}")
    shown = set()
    for a in report["artifacts"]:
        rr, rl = a["reference_recall"], a["reference_latency_ms"]
        key = (tuple(a["input_size"]), rr["1"])
        if key not in shown:
            shown.add(key)
            t.add_row(f"torch reference ({report['reference']['device']})", "fp32", f"{rr['1']:.2f}",
                      f"{rr.get('5', float('nan')):.2f}", f"{rr.get('10', float('nan')):.2f}", "—", "—", "—",
                      f"{rl['p50']:.2f}", "1.00×")
        r = a["recall"]
        t.add_row(a["name"], str(a.get("precision")), f"{r['1']:.2f}", f"{r.get('5', float('nan')):.2f}",
                  f"{r.get('10', float('nan')):.2f}", f"{a['recall_drop_pp']['1']:+.2f}", f"{a['cosine']['min']:.5f}",
                  f"{a['top1_agreement']:.1f}%", f"{a['latency_ms']['p50']:.2f}", f"{a['speedup']:.2f}×")
    console.print(t)


@app.command("validate")
def validate_cmd(
    bundles: list[Path] = typer.Argument(..., help="One or more artifact bundle directories."),
    reference: Path = typer.Option(..., "--reference", "-r", help="The FP32 reference checkpoint (.boq)."),
    dataset: Path = typer.Option(..., "--dataset", "-d", help="Benchmark directory (any format `eval` reads)."),
    format: str = typer.Option("auto", "--format", "-f", help="auto, vpr-folder, vpr-bench, openvprlab or aligned."),
    queries: str | None = typer.Option(None, help="aligned / vpr-folder: the query folder."),
    database: str | None = typer.Option(None, help="aligned / vpr-folder: the database folder."),
    tolerance: int | None = typer.Option(None, help="aligned: positives within ±N files (default 1)."),
    frames: str | None = typer.Option(None, help="aligned: frame range, e.g. 25000: for the evaluation split."),
    threshold: float | None = typer.Option(None, help="vpr-folder: positive distance in metres."),
    out: Path = typer.Option(Path("validation"), "--out", "-o", help="Folder for report.json, report.md, the plot."),
    device: str = typer.Option("auto", help="Reference device: auto (GPU when present), cpu, cuda."),
    threads: int | None = typer.Option(None, help="Threads for the runtimes and torch (default: all)."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1),
    num_workers: int = typer.Option(2, "--num-workers", "-j", min=0),
    latency_iters: int = typer.Option(50, help="Timed runs per model for latency (batch 1)."),
    max_r1_drop: float | None = typer.Option(None, help="Gate: largest allowed Recall@1 drop, percentage points."),
    min_cosine: float | None = typer.Option(None, help="Gate: smallest allowed descriptor cosine to the reference."),
    max_latency_ms: float | None = typer.Option(None, help="Gate: largest allowed median latency (ms, batch 1)."),
    junit: Path | None = typer.Option(None, help="Also write the gate result as JUnit XML."),
    backend: list[str] | None = typer.Option(
        None, "--backend", help="TARGET=BACKEND: run bundles of TARGET with BACKEND, e.g. tensorrt=onnxruntime "
        "to measure a TensorRT Q/DQ bundle where TensorRT is not installed (repeatable)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Recall drop, descriptor cosine, top-1 agreement and latency of bundles vs the FP32 reference."""
    from boq_edge.cli.eval_cmd import _READ_ERRORS, _reader_options
    from boq_edge.data import FORMATS, detect_format, read_benchmark
    from boq_edge.gate import check_report, parse_rules
    from boq_edge.model import CheckpointError
    from boq_edge.runtime import RuntimeUnavailable
    from boq_edge.validate import validate, write_report

    if format != "auto" and format not in FORMATS:
        fail(f"unknown --format {format!r}; choose auto or one of {', '.join(FORMATS)}")
    try:
        fmt = detect_format(dataset) if format == "auto" else format
        bench = read_benchmark(dataset, fmt, **_reader_options(fmt, queries, database, tolerance, frames, threshold,
                                                                None))
    except _READ_ERRORS as e:
        fail(str(e).strip("'\""))
    backends = {k: str(v) for k, v in parse_key_values(backend, "--backend", "tensorrt=onnxruntime").items()}
    try:
        report = validate(bundles, reference, bench, device=device, batch_size=batch_size, num_workers=num_workers,
                          threads=threads, latency_iters=latency_iters, progress=progress, backends=backends)
    except (CheckpointError, RuntimeUnavailable, ValueError, FileNotFoundError) as e:
        fail(str(e))
    files = write_report(report, out)
    print_validation_table(report)
    console.print("wrote " + ", ".join(str(p) for p in files.values()), highlight=False)
    rules = {k: v for k, v in (("max_r1_drop", max_r1_drop), ("min_cosine", min_cosine),
                               ("max_latency_ms", max_latency_ms)) if v is not None}
    if rules:
        code = _print_checks(check_report(report, parse_rules(rules)), junit)
        if code:
            raise typer.Exit(code)


@app.command("gate")
def gate_cmd(
    report: Path = typer.Argument(..., help="report.json written by `boq-edge validate`."),
    rules: Path = typer.Option(..., "--rules", help="TOML file with a [gate] table, e.g. max_r1_drop = 0.5."),
    junit: Path | None = typer.Option(None, help="Also write the result as JUnit XML for CI."),
) -> None:
    """Check a validation report against rules; exit 1 naming each violated rule (measured vs allowed).

    Rules: max_r1_drop, max_r5_drop (pp), min_r1 (%), min_cosine, min_mean_cosine, min_top1_agreement (%),
    max_latency_ms, max_p99_latency_ms, min_speedup.
    """
    from boq_edge.gate import GateError, check_report, load_report, load_rules

    try:
        checks = check_report(load_report(report), load_rules(rules))
    except GateError as e:
        fail(str(e))
    code = _print_checks(checks, junit)
    if code:
        raise typer.Exit(code)


@app.command("bench")
def bench_cmd(
    bundles: list[Path] = typer.Argument(..., help="Bundle directories, measured side by side."),
    batch: int = typer.Option(1, "--batch", min=1),
    threads: int | None = typer.Option(None, help="Inference threads (default: the runtime's)."),
    warmup: int = typer.Option(10, min=0),
    iters: int = typer.Option(50, min=1, help="At least this many timed runs."),
    min_time: float = typer.Option(0.0, help="And at least this many seconds of timed runs."),
    backend: str | None = typer.Option(None, help="Force a runtime backend (default: the bundle's target)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the results as JSON."),
) -> None:
    """Latency p50/p90/p99, mean ± std, throughput, load time and peak RSS; runs with only a runtime (no torch)."""
    import json

    from boq_edge.bench import bench_bundle, system_info

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
        from boq_edge.evaluate.cache import atomic_write_text

        atomic_write_text(out, json.dumps({"system": sysinfo, "results": results}, indent=2) + "\n")
        console.print(f"wrote {out}")
