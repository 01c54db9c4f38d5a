"""Model commands: init, import-official, info, fold."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from boq_edge.cli.app import app, console, fail


def _load_model(ckpt: Path | None, preset: str | None, backbone_weights: Path | None):  # noqa: ANN202
    """A model from a checkpoint, or from a preset (optionally with backbone weights)."""
    from boq_edge.model import CheckpointError, build_model, get_preset, load_checkpoint

    if (ckpt is None) == (preset is None):
        fail("give either a checkpoint file or --preset NAME (not both)")
    try:
        if ckpt is not None:
            model, config, meta = load_checkpoint(ckpt)
            return model, config, meta
        config = get_preset(preset)  # type: ignore[arg-type]
        return build_model(config, backbone_weights), config, {"source": f"preset {config.name}"}
    except (CheckpointError, KeyError, ValueError, FileNotFoundError) as e:
        fail(str(e).strip("'\""))


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


@app.command("presets")
def presets_cmd() -> None:
    """List the built-in presets."""
    from boq_edge.model import PRESETS

    t = Table("preset", "backbone", "proj", "queries×blocks", "row_dim", "descriptor", "input H×W")
    for name, c in PRESETS.items():
        t.add_row(name, c.backbone, str(c.proj_channels), f"{c.num_queries}×{c.num_layers}", str(c.row_dim),
                  str(c.descriptor_dim), "×".join(map(str, c.image_size)))
    console.print(t)


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


@app.command("info")
def info_cmd(path: Path = typer.Argument(..., help="A .boq checkpoint or an artifact bundle directory.")) -> None:
    """Describe a checkpoint (preset, dims, parameters, input) or verify and describe a bundle."""
    if path.is_dir():
        try:
            from boq_edge.cli.bundle_info import show_bundle_info
        except ModuleNotFoundError:
            fail(f"{path} is a directory; bundle support is not available in this build")
        show_bundle_info(path)
        return
    from boq_edge.model import CheckpointError, read_checkpoint_header

    try:
        config, meta = read_checkpoint_header(path)
        model, _, meta = _load_model(path, None, None)
    except CheckpointError as e:
        fail(str(e))
    t = Table(show_header=False, title=str(path))
    t.add_row("preset", config.name)
    t.add_row("backbone", config.backbone)
    t.add_row("BoQ", f"proj {config.proj_channels}, {config.num_queries} queries × {config.num_layers} blocks, "
              f"row_dim {config.row_dim}")
    t.add_row("descriptor dim", str(config.descriptor_dim))
    t.add_row("input", f"{config.image_size[0]}×{config.image_size[1]} ({config.preprocessing.interpolation})")
    t.add_row("parameters", f"{sum(p.numel() for p in model.parameters()):,}")
    t.add_row("trainable", f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,}")
    for k, v in meta.items():
        t.add_row(k, str(v))
    console.print(t)


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

    model, config, meta = _load_model(ckpt, preset, backbone_weights)
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
