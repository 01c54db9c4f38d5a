"""``boq-edge init``: an untrained checkpoint from a preset."""

from __future__ import annotations

from pathlib import Path

import typer

from boq_edge.cli.app import app, console, fail


@app.command("init")
def init_cmd(
    preset: str = typer.Option(..., "--preset", "-p", help="Preset name (see `boq-edge presets`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint file to write (.boq)."),
    backbone_weights: Path | None = typer.Option(
        None, help="Local ImageNet backbone state_dict (.pt/.pth); nothing is downloaded."),
    image_size: tuple[int, int] | None = typer.Option(None, help="Inference input H W (default: the preset's)."),
    seed: int = typer.Option(0, help="Seed for the randomly initialised BoQ head."),
) -> None:
    """Create an untrained checkpoint from a preset (pretrained backbone if weights are given)."""
    import torch

    from boq_edge.model import CheckpointError, build_model, get_preset, save_checkpoint

    torch.manual_seed(seed)
    try:
        config = get_preset(preset)
        if image_size:
            config = config.with_image_size(*image_size)
        model = build_model(config, backbone_weights)
    except (CheckpointError, KeyError, ValueError) as e:
        fail(str(e).strip("'\""))
    meta = {"source": "init", "seed": seed, "backbone_weights": str(backbone_weights) if backbone_weights else None}
    save_checkpoint(model, out, meta)
    console.print(f"wrote {out} ({config.name}, {config.descriptor_dim}-D, input {config.image_size})")
