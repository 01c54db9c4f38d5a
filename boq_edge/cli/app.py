"""The typer application object; command modules attach themselves to it."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="boq-edge: fold, quantize, export and validate Bag-of-Queries place-recognition models "
    "for edge devices. Every subcommand is a thin wrapper over a Python function. Exit codes: 0 done / passed, "
    "1 a check or gate failed (a Recall@1 budget missed, a bundle that failed validation), 2 bad input or usage "
    "(one line says what to change; nothing is written). Outputs never replace an input, the current folder, or "
    "anything but a bundle (--force); a run killed or stopped with Ctrl-C/SIGTERM leaves nothing behind.",
)
# Piped or logged output (CI, `| tee`) gets rich's 80-column default, which squeezes the
# validation and bench tables into ellipses; a wide fixed width keeps every number readable.
console = Console() if sys.stdout.isatty() else Console(width=160)
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """One actionable line on stderr and a non-zero exit: the house style for CLI errors.

    The message is plain text (escaped), so install hints like ``boq-edge[onnx]`` survive rich markup.
    """
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def parse_key_values(items: list[str] | None, flag: str, example: str = "frames=:25000") -> dict[str, Any]:
    """Repeatable ``KEY=VALUE`` flags → reader options (integers become ints; readers validate names)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"{flag} takes KEY=VALUE (e.g. {flag} {example}), got {item!r}")
        out[key.strip().replace("-", "_")] = int(value) if value.strip().lstrip("-").isdigit() else value
    return out


def load_model(ckpt: Path | None, preset: str | None, backbone_weights: Path | None):  # noqa: ANN202
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


def checked_output(path: Path, *, inputs: Sequence[Path] = (), what: str = "output", folder: bool = False) -> Path:
    """``boq_edge.outputs.check_output`` for a command's output, before its work: a refusal is one line, exit 2.

    ``folder``: an output folder this command writes files into (report.json …); it may exist.
    """
    from boq_edge.outputs import OutputError, check_output

    try:
        return check_output(path, inputs=inputs, what=what, overwrite=folder,
                            replaceable=(lambda p: p.is_dir()) if folder else None)
    except OutputError as e:
        fail(str(e))


def main() -> None:
    """Console-script entry point. SIGTERM, like Ctrl-C, runs the cleanup of staging folders."""
    from boq_edge.cli import _load_commands
    from boq_edge.outputs import terminate_cleanly

    terminate_cleanly()
    _load_commands()
    app(prog_name="boq-edge")


if __name__ == "__main__":  # pragma: no cover
    main()
    sys.exit(0)
