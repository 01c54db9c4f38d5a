"""``boq-edge quickstart``: the README's main job — train briefly, export FP32 + INT8, validate, print."""

from __future__ import annotations

from pathlib import Path

import typer

from boq_edge.cli.app import app, console, fail
from boq_edge.quickstart import DEFAULT_DATA, DEFAULT_WEIGHTS


@app.command("quickstart")
def quickstart_cmd(
    data: Path = typer.Option(DEFAULT_DATA, "--data", "-d",
                              help="Aligned traversals (summer/ + winter/): frames < 25000 train, ≥ 25000 evaluate."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", "-c", help="Skip training; use this FP32 .boq."),
    backbone_weights: Path | None = typer.Option(DEFAULT_WEIGHTS, help="ImageNet MobileNetV2 weights for training."),
    no_backbone_weights: bool = typer.Option(False, "--no-backbone-weights", help="Train from random weights."),
    epochs: int = typer.Option(3, min=1, help="Training epochs (stops earlier at --max-minutes)."),
    max_minutes: float = typer.Option(6.0, help="Training wall-time budget in minutes."),
    image_size: tuple[int, int] = typer.Option((48, 96), help="Input H W for training and export."),
    calibration_images: int = typer.Option(300, help="Calibration images drawn from the training frames."),
    threads: int | None = typer.Option(None, min=1, help="Threads for torch and the runtimes (default: all cores)."),
    out: Path = typer.Option(Path("runs/quickstart"), "--out", "-o", help="Run folder (checkpoints, bundles, report)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train (or take a checkpoint) → ONNX FP32 + OpenVINO/ONNX Runtime INT8 bundles → validate → table."""
    from boq_edge.cli.reports import print_validation_table
    from boq_edge.model import CheckpointError
    from boq_edge.quickstart import QuickstartConfig, QuickstartError, run_quickstart

    cfg = QuickstartConfig(data=data, out=out, checkpoint=checkpoint,
                           backbone_weights=None if no_backbone_weights else backbone_weights,
                           image_size=image_size, epochs=epochs, max_minutes=max_minutes,
                           calibration_images=calibration_images, threads=threads, progress=progress)
    try:
        report = run_quickstart(cfg, log=lambda m: console.print(m, highlight=False))
    except (QuickstartError, CheckpointError, FileNotFoundError) as e:
        fail(str(e))
    print_validation_table(report)
    q = report["quickstart"]
    console.print(f"total {q['total_seconds']:.0f} s (training {q['train_seconds']:.0f} s); report: "
                  f"{out / 'validation' / 'report.md'}", highlight=False)
