"""``boq-edge train``: train a preset into a full ``.boq`` checkpoint (one process, or many under torchrun).

Thin: settings come from the defaults, then ``--config FILE`` (JSON/TOML, the same keys as
the flags with ``_``), then the flags actually given; the merged record goes to
:func:`boq_edge.train.train`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from boq_edge.cli.app import app, console, fail, parse_key_values


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _val_options(frames: str | None, tolerance: int | None, queries: str | None, database: str | None,
                 extra: list[str] | None) -> dict[str, Any]:
    opts = parse_key_values(extra, "--val-option")
    given: dict[str, Any] = {"frames": frames, "tolerance": tolerance, "queries": queries, "database": database}
    opts.update({k: v for k, v in given.items() if v is not None})
    return opts


@app.command("train")
def train_cmd(
    preset: str | None = typer.Option(None, "--preset", "-p", help="Preset to train (see `boq-edge presets`)."),
    data: Path | None = typer.Option(None, "--data", "-d", help="Training data directory."),
    format: str | None = typer.Option(None, "--format", "-f", help="gsv-cities, aligned or auto (default)."),
    val: Path | None = typer.Option(None, "--val", help="Validation benchmark directory (Recall@k every epoch)."),
    val_format: str | None = typer.Option(None, help="Benchmark format of --val (default auto)."),
    val_frames: str | None = typer.Option(None, help="aligned --val: frame range, e.g. 25000:."),
    val_tolerance: int | None = typer.Option(None, help="aligned --val: positives within ±N files (default 1)."),
    val_queries: str | None = typer.Option(None, help="--val query folder (aligned default: summer)."),
    val_database: str | None = typer.Option(None, help="--val database folder (aligned default: winter)."),
    val_option: list[str] | None = typer.Option(None, help="Other --val reader option KEY=VALUE (repeatable)."),
    frames: str | None = typer.Option(None, help="aligned: training frame range START:STOP, e.g. :25000."),
    traversals: str | None = typer.Option(None, help="aligned: traversal folders, comma-separated (default: all)."),
    frames_per_place: int | None = typer.Option(None, help="aligned: consecutive frames per place (default 1)."),
    cities: str | None = typer.Option(None, help="gsv-cities: cities, comma-separated (default: all)."),
    epochs: int | None = typer.Option(None, help="Epochs (default 40)."),
    batch_places: int | None = typer.Option(None, help="Places per batch and process, P (default 120)."),
    images_per_place: int | None = typer.Option(None, help="Images per place, K (default min(4, available))."),
    lr: float | None = typer.Option(None, help="AdamW learning rate (default 2e-4)."),
    weight_decay: float | None = typer.Option(None, help="AdamW weight decay (default 1e-3)."),
    warmup_epochs: float | None = typer.Option(None, help="Linear warm-up epochs (default 3)."),
    lr_step_epochs: int | None = typer.Option(None, help="Multiply the lr by --lr-gamma every N epochs (default 10)."),
    lr_gamma: float | None = typer.Option(None, help="Step decay factor (default 0.3)."),
    image_size: tuple[int, int] | None = typer.Option(None, help="Training/inference input H W (default: preset's)."),
    trainable_stages: int | None = typer.Option(None, help="Backbone stages that train (default: preset's)."),
    backbone_weights: Path | None = typer.Option(None, help="Local ImageNet backbone state_dict (.pt/.pth)."),
    augment: str | None = typer.Option(None, help="randaugment (default) or none."),
    amp: str | None = typer.Option(None, help="Mixed precision: auto (bf16/fp16 on GPU, bf16 on CPUs with native "
                                   "bf16, else off), off, bf16, fp16."),
    seed: int | None = typer.Option(None, help="Seed for initialisation, data order and augmentation (default 0)."),
    num_workers: int | None = typer.Option(None, "--num-workers", "-j", help="DataLoader workers (default 1)."),
    threads: int | None = typer.Option(None, min=1, help="torch threads per process (default: cores / processes)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run directory (default runs/train)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="JSON/TOML file with these settings."),
    resume: Path | None = typer.Option(None, help="Continue a run: its directory, best.boq/last.boq or *.state.pt."),
    max_minutes: float | None = typer.Option(None, help="Wall-time budget: stop before an epoch would end past it."),
    log_every_steps: int | None = typer.Option(None, help="Print a line per N steps from every process."),
    save_every_steps: int | None = typer.Option(None, help="Also save the resume state every N steps."),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help="Progress bars."),
) -> None:
    """Train a BoQ model (MS loss, place-balanced batches) and write best.boq / last.boq in the run directory."""
    from boq_edge.data.benchmark import BenchmarkFormatError
    from boq_edge.model import CheckpointError
    from boq_edge.train import ResumeError, TrainConfig, TrainError, train

    settings = _saved_settings(resume, config)
    flags = {
        "preset": preset, "data": str(data) if data else None, "format": format, "val": str(val) if val else None,
        "val_format": val_format, "frames": frames, "traversals": _split(traversals),
        "frames_per_place": frames_per_place, "cities": _split(cities),
        "epochs": epochs, "batch_places": batch_places, "images_per_place": images_per_place, "lr": lr,
        "weight_decay": weight_decay, "warmup_epochs": warmup_epochs, "lr_step_epochs": lr_step_epochs,
        "lr_gamma": lr_gamma, "image_size": image_size, "trainable_stages": trainable_stages,
        "backbone_weights": str(backbone_weights) if backbone_weights else None, "augment": augment, "amp": amp,
        "seed": seed, "num_workers": num_workers, "threads": threads, "out": str(out) if out else None,
        "log_every_steps": log_every_steps, "max_minutes": max_minutes, "save_every_steps": save_every_steps,
        "progress": progress,
    }
    settings.update({k: v for k, v in flags.items() if v is not None})
    vopts = _val_options(val_frames, val_tolerance, val_queries, val_database, val_option)
    if vopts:
        settings["val_options"] = {**settings.get("val_options", {}), **vopts}
    if not settings.get("data"):
        fail("give the training data: --data DIR (or data = ... in --config)")
    if resume is None and not settings.get("backbone_weights"):
        console.print("[yellow]note:[/] no --backbone-weights: the backbone starts from random weights")
    try:
        cfg = TrainConfig.from_dict({**TrainConfig().to_dict(), **settings})
        result = train(cfg, resume=resume)
    except (TrainError, ResumeError, CheckpointError, BenchmarkFormatError, FileNotFoundError, KeyError,
            ValueError) as e:
        fail(str(e).strip("'\""))
    if result.last_checkpoint is not None:  # None: not rank 0 of a distributed run
        _print_result(cfg, result)


def _saved_settings(resume: Path | None, config: Path | None) -> dict[str, Any]:
    """Settings of the run being resumed, then of ``--config``; flags override both."""
    from boq_edge.train import ResumeError, load_state, read_config_file
    from boq_edge.train.state import resolve_resume

    settings: dict[str, Any] = {}
    try:
        if resume is not None:
            settings.update(load_state(resolve_resume(resume))["config"])
        if config is not None:
            settings.update(read_config_file(config))
    except (ResumeError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    return settings


def _print_result(cfg: Any, result: Any) -> None:
    t = Table(show_header=False, title=f"trained {cfg.preset}")
    t.add_row("run directory", str(result.run_dir))
    stopped = " (stopped)" if result.interrupted else ""
    t.add_row("epochs completed", f"{result.epochs_completed}/{cfg.epochs}{stopped}")
    t.add_row("steps", str(result.global_step))
    t.add_row("training time", f"{result.train_seconds:.0f} s (without validation)")
    if result.best_r1 is not None:
        t.add_row("best R@1", f"{result.best_r1:.2f} (epoch {result.best_epoch})")
        t.add_row("last recall", "  ".join(f"R@{k} {v:.2f}" for k, v in result.last_recalls.items()))
    t.add_row("best checkpoint", str(result.best_checkpoint) if result.best_checkpoint else "— (no --val)")
    t.add_row("last checkpoint", str(result.last_checkpoint))
    console.print(t)
