"""``boq-edge`` command line. Each subcommand lives in its own module and calls the Python API."""

from __future__ import annotations

import importlib

from boq_edge.cli.app import app, main

# One module per command, named after it; each registers its command on ``app`` at import.
# At the top they import only typer, rich and light boq-edge modules (the target registry);
# torch, onnx and the runtimes are imported inside the commands, so `boq-edge --help` stays
# fast and a device without torch loads them all.
_COMMAND_MODULES = (
    "quickstart", "init", "presets", "import_official", "info", "fold", "train", "eval", "calibrate",
    "export", "build_engine", "lint_qdq", "validate", "gate", "bench", "embed",
)


def _load_commands() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"boq_edge.cli.{name}_cmd")


__all__ = ["app", "main"]
