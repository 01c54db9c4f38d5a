"""``boq-edge calibrate``: a thin wrapper over boq_edge.calibration.build_calibration_set."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer
from rich.table import Table

from boq_edge.cli.app import app, checked_output, console, fail, parse_key_values


@app.command("calibrate")
def calibrate_cmd(
    data: Path = typer.Option(..., "--data", "-d", help="Dataset folder (any format `boq-edge eval` reads) "
                              "or a plain folder of images."),
    n: int = typer.Option(512, "-n", "--num-images", min=1, help="Images to sample (fewer than 300 warns)."),
    out: Path = typer.Option(..., "--out", "-o", help="Calibration manifest to write (JSON)."),
    seed: int = typer.Option(0, help="Sampling seed."),
    format: str = typer.Option("auto", "--format", "-f", help="Dataset format, or 'images' for a plain folder."),
    frames: str | None = typer.Option(None, help="Aligned sequences: frame range START:STOP, e.g. :25000."),
    option: list[str] | None = typer.Option(None, "--option", help="Reader option KEY=VALUE (repeatable)."),
    eval_data: Path | None = typer.Option(None, "--eval-data", help="The evaluation dataset: refuse any overlap."),
    eval_frames: str | None = typer.Option(None, help="With --eval-data (aligned): its frame range, e.g. 25000:."),
    eval_option: list[str] | None = typer.Option(None, "--eval-option", help="Reader option of --eval-data."),
    force: bool = typer.Option(False, "--force", help="Replace an existing manifest."),
) -> None:
    """Sample a seeded calibration set and write its manifest (paths + sha256)."""
    from boq_edge.calibration import (
        CalibrationError,
        FewCalibrationImagesWarning,
        RepeatedCalibrationImagesWarning,
        build_calibration_set,
        save_calibration_set,
    )
    from boq_edge.data import BenchmarkFormatError, read_benchmark

    if out.exists() and not force:
        fail(f"{out} already exists; pass --force to replace it")
    checked_output(out, inputs=[p for p in (data, eval_data) if p is not None], what="calibration manifest")
    opts = parse_key_values(option, "--option")
    if frames is not None:
        opts["frames"] = frames
    exclude = []
    if eval_data is not None:
        eopts = parse_key_values(eval_option, "--eval-option")
        if eval_frames is not None:
            eopts["frames"] = eval_frames
        try:
            exclude.append(read_benchmark(eval_data, **eopts))
        except (BenchmarkFormatError, FileNotFoundError, ValueError) as e:
            fail(f"--eval-data: {e}")
    elif eval_frames or eval_option:
        fail("--eval-frames/--eval-option need --eval-data")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FewCalibrationImagesWarning)
        warnings.simplefilter("always", RepeatedCalibrationImagesWarning)
        try:
            calib = build_calibration_set(data, n, seed=seed, format=format, options=opts, exclude=exclude)
        except (CalibrationError, BenchmarkFormatError, FileNotFoundError, ValueError) as e:
            fail(str(e))
    for w in caught:
        if issubclass(w.category, (FewCalibrationImagesWarning, RepeatedCalibrationImagesWarning)):
            console.print(f"[bold yellow]warning:[/] {w.message}", highlight=False)
    if not exclude:
        console.print("[bold yellow]warning:[/] no leak check against an evaluation split was done (recorded in "
                      "the manifest); pass --eval-data DIR [--eval-frames …] so calibration images that are "
                      "evaluation images are refused", highlight=False, soft_wrap=True)
    calib = save_calibration_set(calib, out)
    t = Table(show_header=False, title=f"calibration set {out}")
    t.add_row("images", f"{len(calib)} of {calib.source.get('pool_size')} (seed {seed})")
    t.add_row("source", f"{calib.source.get('format')} {calib.source.get('options') or ''}".strip())
    t.add_row("leak check", ", ".join(b.name for b in exclude) if exclude else "none")
    if calib.source.get("repeated_content"):
        t.add_row("repeated pixels", str(calib.source["repeated_content"]))
    t.add_row("sha256", calib.content_hash())
    console.print(t)
