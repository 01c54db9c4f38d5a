"""validate → report → gate on real Nordland data, and `bench` on a device without torch.

A good artifact (the reference exported to ONNX) passes ``--max-r1-drop 0.5``; a bad one
(exported from a model whose backbone lost its ImageNet weights: R@1 ≈ 3 % → ≈ 0.2 % on
frames ≥ 30000) fails it, and the failure names the rule with measured vs allowed values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from boq_edge.export.api import export_model
from boq_edge.export.options import ExportOptions
from typer.testing import CliRunner

from boq_edge.cli import _load_commands, app
from boq_edge.model import build_model, get_preset, save_checkpoint

pytest.importorskip("onnxruntime")
_load_commands()
runner = CliRunner()
SIZE = (64, 128)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, mobilenet_weights: Path) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("validate")
    cfg = get_preset("mobilenetv2-edge").with_image_size(*SIZE)
    torch.manual_seed(0)
    ref = save_checkpoint(build_model(cfg, mobilenet_weights), tmp / "ref.boq")
    torch.manual_seed(0)
    broken = save_checkpoint(build_model(cfg), tmp / "broken.boq")  # random backbone: a bad artifact
    return {
        "ref": ref,
        "good": export_model(ref, tmp / "good", ExportOptions("onnx")),
        "bad": export_model(broken, tmp / "bad", ExportOptions("onnx")),
        "tmp": tmp,
    }


def _validate(models: dict[str, Path], bundle: str, dataset: Path, out: Path, *extra: str):  # noqa: ANN202
    return runner.invoke(app, [
        "validate", str(models[bundle]), "--reference", str(models["ref"]), "--dataset", str(dataset),
        "--format", "aligned", "--frames", "30000:", "--latency-iters", "5", "--threads", "2", "--num-workers", "0",
        "--no-progress", "-o", str(out), *extra])


def test_good_artifact_passes_the_gate(models: dict[str, Path], nordland_dir: Path, tmp_path: Path) -> None:
    r = _validate(models, "good", nordland_dir, tmp_path, "--max-r1-drop", "0.5", "--min-cosine", "0.9999")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "report.json").read_text())
    (art,) = report["artifacts"]
    assert art["recall_drop_pp"]["1"] == pytest.approx(0.0, abs=0.2)
    assert art["cosine"]["min"] > 0.9999 and art["top1_agreement"] > 99.0
    assert report["reference"]["device"] == "cpu" and art["speedup"] > 0
    assert (tmp_path / "report.md").read_text().count("| good |") == 1
    assert (tmp_path / "recall_vs_latency.png").stat().st_size > 1000


def test_bad_artifact_fails_validate_and_gate_naming_the_rule(models: dict[str, Path], nordland_dir: Path,
                                                              tmp_path: Path) -> None:
    junit = tmp_path / "gate.xml"
    r = _validate(models, "bad", nordland_dir, tmp_path, "--max-r1-drop", "0.5", "--junit", str(junit))
    assert r.exit_code == 1, r.output
    assert "bad: max_r1_drop" in r.output and "allowed ≤ 0.5pp" in r.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["artifacts"][0]["recall_drop_pp"]["1"] > 1.0  # measured, not assumed
    assert 'failures="1"' in junit.read_text()
    rules = tmp_path / "gates.toml"
    rules.write_text("[gate]\nmax_r1_drop = 0.5\n")
    r = runner.invoke(app, ["gate", str(tmp_path / "report.json"), "--rules", str(rules)])
    assert r.exit_code == 1 and "max_r1_drop" in r.output
    rules.write_text("[gate]\nmax_r1_drop = 50\n")
    r = runner.invoke(app, ["gate", str(tmp_path / "report.json"), "--rules", str(rules)])
    assert r.exit_code == 0, r.output




def test_bench_runs_where_torch_cannot_be_imported(models: dict[str, Path], tmp_path: Path, block_torch: str) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(block_torch)  # applies to bench's worker processes too
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "blocked" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "boq_edge.cli", "bench", str(models["good"]), str(models["bad"]), "--iters", "5",
         "--warmup", "1", "--threads", "1", "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert [Path(r["bundle"]).name for r in result["results"]] == ["good", "bad"]
    for r in result["results"]:
        assert r["latency_ms"]["p50"] > 0 and r["rss_mb"]["peak"] > 0 and r["runtime"]["backend"] == "onnxruntime"
