"""``boq-edge fold``: fold the query self-attention into constants; check the folded model."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from boq_edge.cli.app import app, console, fail, load_model


@app.command("fold")
def fold_cmd(
    ckpt: Path | None = typer.Argument(None, help="A .boq checkpoint (or use --preset)."),
    preset: str | None = typer.Option(None, "--preset", "-p", help="Fold an untrained preset instead."),
    backbone_weights: Path | None = typer.Option(None, help="With --preset: local backbone weights."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the folded model (.boq) here."),
    check: bool = typer.Option(False, "--check", help="Compare folded vs unfolded descriptors."),
    images: Path | None = typer.Option(None, help="With --check: a folder of real images to compare on too."),
    max_images: int = typer.Option(16, help="With --images: how many images to use."),
    tolerance: float = typer.Option(1e-5, help="With --check: largest allowed max |Δ| of descriptors."),
    onnx_nodes: bool = typer.Option(False, help="With --check: export both to ONNX and count nodes (slow)."),
) -> None:
    """Fold the query self-attention into constants and write the deploy model."""
    import torch

    from boq_edge.export.fold import fold, fold_report, folding_check
    from boq_edge.model import save_checkpoint

    model, config, meta = load_model(ckpt, preset, backbone_weights)
    folded = fold(model)
    rep = fold_report(model, folded)
    t = Table("", "value", title=f"fold {config.name}")
    t.add_row("parameters before", f"{rep.params_before:,}")
    t.add_row("parameters after", f"{rep.params_after:,}")
    t.add_row("parameters removed", f"{rep.params_removed:,}")
    t.add_row("constants added", f"{rep.constants_added:,}")
    failed = False
    if check:
        torch.manual_seed(0)
        try:
            results = folding_check(model, folded, images=images, max_images=max_images, onnx_nodes=onnx_nodes)
        except (ValueError, FileNotFoundError) as e:
            fail(str(e))
        for name, value in results.items():
            shown = f"{value:.3g}" if isinstance(value, float) else str(value)
            t.add_row(name, shown)
            if name.startswith("max |Δ|") and value > tolerance:
                failed = True
    console.print(t)
    if out is not None:
        save_checkpoint(folded, out, {**meta, "folded": True})  # type: ignore[arg-type]
        console.print(f"wrote {out}")
    if failed:
        fail(f"folded descriptors differ by more than {tolerance}", code=1)
