"""``boq-edge presets``: the built-in model presets and their aliases."""

from __future__ import annotations

from rich.table import Table

from boq_edge.cli.app import app, console


@app.command("presets")
def presets_cmd() -> None:
    """List the built-in presets."""
    from boq_edge.model import PRESETS
    from boq_edge.model.presets import ALIASES

    t = Table("preset", "aliases", "backbone", "proj", "queries×blocks", "row_dim", "descriptor", "input H×W")
    for name, c in PRESETS.items():
        aliases = ", ".join(a for a, target in ALIASES.items() if target == name)
        t.add_row(name, aliases, c.backbone, str(c.proj_channels), f"{c.num_queries}×{c.num_layers}",
                  str(c.row_dim), str(c.descriptor_dim), "×".join(map(str, c.image_size)))
    console.print(t)
