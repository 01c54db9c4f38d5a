"""Every command loads, shows its help, and its first imports work (a broken import must not hide
behind a command nobody invoked in the tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from boq_edge.cli import _COMMAND_MODULES, _load_commands, app

_load_commands()
runner = CliRunner()
COMMANDS = [m.replace("_", "-") for m in _COMMAND_MODULES]


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command: str) -> None:
    r = runner.invoke(app, [command, "--help"])
    assert r.exit_code == 0 and "Usage" in r.output, r.output


def test_quickstart_without_data_is_one_line_exit_2(tmp_path: Path) -> None:
    r = runner.invoke(app, ["quickstart", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "qs")])
    assert r.exit_code == 2, r.output
    assert "is not an aligned-traversal dataset" in r.output and r.exception is None or isinstance(
        r.exception, SystemExit)
    assert not (tmp_path / "qs").exists()
