"""``boq-edge import-official``: an official BoQ ``.pth`` into a ``.boq`` checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from boq_edge.cli.app import app, console, fail


@app.command("import-official")
def import_official_cmd(
    pth: Path = typer.Argument(..., help="Official BoQ state_dict, e.g. resnet50_16384.pth."),
    preset: str = typer.Option(..., "--preset", "-p", help="resnet50-16384 or dinov2-12288."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint file to write (.boq)."),
) -> None:
    """Convert an official BoQ .pth (read with torch.load(weights_only=True)) into a .boq checkpoint."""
    from boq_edge.model import CheckpointError, import_official

    try:
        import_official(pth, preset, out)
    except (CheckpointError, KeyError) as e:
        fail(str(e).strip("'\""))
    console.print(f"wrote {out}")
