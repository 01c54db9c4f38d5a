from __future__ import annotations

from pathlib import Path

import torch
from typer.testing import CliRunner

from boq_edge.cli import _load_commands, app

_load_commands()
runner = CliRunner()


def test_init_info_fold_roundtrip(tmp_path: Path, mobilenet_weights: Path, nordland_dir: Path) -> None:
    ckpt = tmp_path / "m.boq"
    r = runner.invoke(app, ["init", "--preset", "mobilenetv2-edge", "--backbone-weights", str(mobilenet_weights),
                            "--image-size", "32", "64", "-o", str(ckpt)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["info", str(ckpt)])
    assert r.exit_code == 0 and "mobilenetv2-2048" in r.output and "2048" in r.output
    out = tmp_path / "f.boq"
    r = runner.invoke(app, ["fold", str(ckpt), "--check", "--images", str(nordland_dir / "summer"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "max |Δ| 16 real images" in r.output and out.is_file()


def test_errors_are_one_line_and_nonzero(tmp_path: Path) -> None:
    r = runner.invoke(app, ["info", str(tmp_path / "missing.boq")])
    assert r.exit_code == 2 and "no such checkpoint" in r.output
    r = runner.invoke(app, ["init", "--preset", "nope", "-o", str(tmp_path / "x.boq")])
    assert r.exit_code == 2 and "unknown preset 'nope'" in r.output
    bad = tmp_path / "foreign.pth"
    torch.save({"w": torch.zeros(1)}, bad)
    r = runner.invoke(app, ["import-official", str(bad), "--preset", "resnet50-16384", "-o", str(tmp_path / "o.boq")])
    assert r.exit_code == 2 and "unexpected keys (1): w" in r.output
    assert not (tmp_path / "o.boq").exists()
