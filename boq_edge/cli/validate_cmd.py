"""``boq-edge validate``: the accuracy/latency proof of artifact bundles against their FP32 reference."""

from __future__ import annotations

from pathlib import Path

import typer

from boq_edge.cli.app import app, checked_output, console, fail, parse_key_values
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
    threads: int | None = typer.Option(None, min=1, help="Threads for the runtimes and torch (default: all)."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1),
    num_workers: int = typer.Option(2, "--num-workers", "-j", min=0),
    latency_iters: int = typer.Option(50, min=1, help="Timed runs per model for latency (batch 1)."),
    max_r1_drop: float | None = typer.Option(None, help="Gate: largest allowed Recall@1 drop, percentage points."),
    max_r1_drop_upper: float | None = typer.Option(
        None, help="Gate: largest allowed upper end of the Recall@1 drop's 95 % interval (pp); recommended over "
        "--max-r1-drop, which one lucky query can pass."),
    max_cross_r1_drop: float | None = typer.Option(
        None, help="Gate: largest allowed Recall@1 drop with artifact and FP32 descriptors mixed (pp)."),
    min_cosine: float | None = typer.Option(None, help="Gate: smallest allowed descriptor cosine to the reference."),
    max_latency_ms: float | None = typer.Option(None, help="Gate: largest allowed median latency (ms, batch 1)."),
    rules: Path | None = typer.Option(None, "--rules", help="Gate: a rules TOML as `boq-edge gate` reads it "
                                      "(the flags above override its [gate] table)."),
    junit: Path | None = typer.Option(None, help="Also write the gate result as JUnit XML."),
    allow_foreign_reference: bool = typer.Option(
        False, "--allow-foreign-reference", help="Compare with a reference that is not the checkpoint the bundle "
        "was exported from (refused otherwise); every report row then says so."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Keep the reference's descriptors across runs "
                               "(keyed by checkpoint, preprocessing and image contents)."),
    backend: list[str] | None = typer.Option(
        None, "--backend", help="TARGET=BACKEND: run bundles of TARGET with BACKEND, e.g. tensorrt=onnxruntime "
        "to measure a TensorRT Q/DQ bundle where TensorRT is not installed (repeatable)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Recall drop (with its 95 % interval), cosine, cross-precision recall and latency of bundles vs their checkpoint.

    The reference must be the checkpoint the bundles were exported from (sha256); it runs with its own
    preprocessing. A bundle that cannot be verified, loaded or run, whose preprocessing differs, or whose
    calibration images are evaluation images, is a failed row. Exit 0 all passed, 1 a bundle failed or a gate
    rule was violated, 2 bad input (including a foreign reference). The report is written in every case.
    """
    from boq_edge.cli.eval_cmd import _READ_ERRORS, _reader_options
    from boq_edge.data import FORMATS, detect_format, read_benchmark
    from boq_edge.evaluate.cache import default_cache_dir
    from boq_edge.gate import GateError
    from boq_edge.model import CheckpointError
    from boq_edge.runtime import RuntimeUnavailable
    from boq_edge.validate import validate, write_report

    if format != "auto" and format not in FORMATS:
        fail(f"unknown --format {format!r}; choose auto or one of {', '.join(FORMATS)}")
    checked_output(out, inputs=[*bundles, reference, dataset], what="report folder", folder=True)
    if junit is not None:
        checked_output(junit, inputs=[*bundles, reference, dataset], what="JUnit file")
    try:
        fmt = detect_format(dataset) if format == "auto" else format
        bench = read_benchmark(dataset, fmt, **_reader_options(fmt, queries, database, tolerance, frames, threshold,
                                                                None))
    except _READ_ERRORS as e:
        fail(str(e).strip("'\""))
    backends = {k: str(v) for k, v in parse_key_values(backend, "--backend", "tensorrt=onnxruntime").items()}
    flags = {k: v for k, v in (("max_r1_drop", max_r1_drop), ("max_r1_drop_upper", max_r1_drop_upper),
                               ("max_cross_r1_drop", max_cross_r1_drop), ("min_cosine", min_cosine),
                               ("max_latency_ms", max_latency_ms)) if v is not None}
    gate_rules = _gate_rules(rules, flags)
    try:
        report = validate(bundles, reference, bench, device=device, batch_size=batch_size, num_workers=num_workers,
                          threads=threads, latency_iters=latency_iters, progress=progress, backends=backends,
                          allow_foreign_reference=allow_foreign_reference,
                          cache_dir=default_cache_dir() if cache else None, rules=gate_rules)
    except (CheckpointError, RuntimeUnavailable, GateError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    files = write_report(report, out)
    print_validation_table(report)
    console.print("wrote " + ", ".join(str(p) for p in files.values()), highlight=False)
    _verdict(report, gate_rules, junit)


def _verdict(report: dict, gate_rules: object, junit: Path | None) -> None:
    """Exit 1 when a bundle could not be validated or a gate rule was violated (the report is written)."""
    from boq_edge.gate import check_report

    failed = [a for a in report["artifacts"] if a.get("status") == "failed"]
    code = print_checks(check_report(report, gate_rules), junit) if gate_rules is not None else 0  # type: ignore[arg-type]
    if failed:
        fail(f"{len(failed)} of {len(report['artifacts'])} bundle(s) could not be validated: "
             + "; ".join(f"{a['name']}: {a['reason']}" for a in failed), code=1)
    if code:
        raise typer.Exit(code)


def _gate_rules(path: Path | None, flags: dict[str, float]):  # noqa: ANN202 - GateRules | None, imported lazily
    """The rules file's rules with the command-line limits on top; None when neither sets anything."""
    from boq_edge.gate import GateError, GateRules, load_rules, parse_rules

    try:
        base = load_rules(path) if path is not None else None
        if base is None:
            return parse_rules(flags) if flags else None
        return GateRules({**base.defaults, **parse_rules(flags).defaults} if flags else base.defaults,
                         base.per_artifact)
    except GateError as e:
        fail(str(e))
