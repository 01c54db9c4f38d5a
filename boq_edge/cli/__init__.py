"""``boq-edge`` command line. Each subcommand lives in its own module and calls the Python API."""

from __future__ import annotations

import importlib

from boq_edge.cli.app import app, main

# Command modules, imported lazily so `boq-edge --help` does not pay for torch imports
# beyond what typer needs. Each module registers its commands on ``app`` at import.
_COMMAND_MODULES = (
    "boq_edge.cli.model_cmds",
    "boq_edge.cli.eval_cmd",
    "boq_edge.cli.validate_cmds",
    "boq_edge.cli.quickstart_cmd",
    "boq_edge.cli.train_cmd",
    "boq_edge.cli.export_cmd",
    "boq_edge.cli.runtime_cmds",
    "boq_edge.cli.calibrate_cmd",
    "boq_edge.cli.lint_qdq_cmd",
)


def _load_commands() -> None:
    for name in _COMMAND_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:  # a missing dependency inside an existing module is a real error
                raise


__all__ = ["app", "main"]
