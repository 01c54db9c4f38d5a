"""``boq-edge validate``: the accuracy/latency proof of artifact bundles against their FP32 reference."""

from __future__ import annotations

from pathlib import Path

import typer

from boq_edge.cli.app import app, console, fail, parse_key_values
from boq_edge.cli.reports import print_checks, print_validation_table


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
        code = print_checks(check_report(report, parse_rules(rules)), junit)
        if code:
            raise typer.Exit(code)
