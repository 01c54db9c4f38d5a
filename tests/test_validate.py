"""validate → report → gate on real Nordland data, and `bench` on a device without torch.

A good artifact (the reference exported to ONNX) passes ``--max-r1-drop 0.5``; a bad one
(exported from a model whose backbone lost its ImageNet weights: R@1 ≈ 3 % → ≈ 0.2 % on
frames ≥ 30000) fails it, and the failure names the rule with measured vs allowed values.
Each way the proof could be fooled — a foreign reference, an edited manifest, preprocessing
unlike the checkpoint's, calibration on the evaluation images, a bundle that does not run —
ends in a refusal or a failed row naming the cause.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
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
    assert art["status"] == "ok" and art["foreign_reference"] is False
    assert art["recall_drop_pp"]["1"] == pytest.approx(0.0, abs=0.2)
    stats = art["recall_drop_stats"]["1"]
    assert stats["lower"] <= stats["drop_pp"] <= stats["upper"] and 0 <= stats["mcnemar_p"] <= 1
    assert stats["queries"] == report["benchmark"]["num_queries"] and stats["resamples"] >= 1000
    cross = art["cross_recall"]["artifact_queries_reference_database"]["1"]
    assert cross == pytest.approx(art["reference_recall"]["1"], abs=0.5) and art["cross_recall_drop_pp"]["1"] < 0.5
    assert report["gate"]["passed"] is True
    assert art["cosine"]["min"] > 0.9999 and art["top1_agreement"] > 99.0
    assert report["reference"]["device"] == "cpu" and art["speedup"] > 0
    assert (tmp_path / "report.md").read_text().count("| good |") == 1
    assert (tmp_path / "recall_vs_latency.png").stat().st_size > 1000


def test_bad_artifact_fails_validate_and_gate_naming_the_rule(models: dict[str, Path], nordland_dir: Path,
                                                              tmp_path: Path) -> None:
    junit = tmp_path / "gate.xml"
    r = _validate(models, "bad", nordland_dir, tmp_path, "--max-r1-drop", "0.5", "--junit", str(junit),
                  "--allow-foreign-reference")  # "bad" was exported from another checkpoint on purpose
    assert r.exit_code == 1, r.output
    assert "bad: max_r1_drop" in r.output and "allowed ≤ 0.5pp" in r.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["artifacts"][0]["recall_drop_pp"]["1"] > 1.0  # measured, not assumed
    assert report["artifacts"][0]["foreign_reference"] is True and "foreign reference" in (
        tmp_path / "report.md").read_text()
    assert report["gate"]["passed"] is False and report["gate"]["checks"][0]["rule"] == "max_r1_drop"
    assert 'failures="1"' in junit.read_text()
    rules = tmp_path / "gates.toml"
    rules.write_text("[gate]\nmax_r1_drop = 0.5\n")
    r = runner.invoke(app, ["gate", str(tmp_path / "report.json"), "--rules", str(rules)])
    assert r.exit_code == 1 and "max_r1_drop" in r.output
    rules.write_text("[gate]\nmax_r1_drop = 50\n")
    r = runner.invoke(app, ["gate", str(tmp_path / "report.json"), "--rules", str(rules)])
    assert r.exit_code == 0, r.output


def test_foreign_reference_is_refused_before_any_work(models: dict[str, Path], nordland_dir: Path,
                                                      tmp_path: Path) -> None:
    r = _validate(models, "bad", nordland_dir, tmp_path / "out")
    assert r.exit_code == 2, r.output
    assert "is not the checkpoint bad" in r.output and "--allow-foreign-reference" in r.output
    assert not (tmp_path / "out").exists()


def test_failed_rows_do_not_hide_the_others(models: dict[str, Path], nordland_dir: Path, tmp_path: Path) -> None:
    """An edited manifest, a missing runtime file and preprocessing unlike the checkpoint's each fail their row;
    the good bundle is still measured, the report is written, the exit code says it failed."""
    import shutil

    from boq_edge.runtime.manifest import load_manifest_dict, write_manifest

    edited = Path(shutil.copytree(models["good"], tmp_path / "edited"))
    d = load_manifest_dict(edited)
    d["preprocessing"]["mean"] = [0.0, 0.0, 0.0]
    write_manifest(edited, {k: v for k, v in d.items() if k not in ("schema", "schema_version")})
    broken = Path(shutil.copytree(models["good"], tmp_path / "broken"))
    (broken / "model.onnx").unlink()
    r = runner.invoke(app, [
        "validate", str(models["good"]), str(edited), str(broken), "--reference", str(models["ref"]),
        "--dataset", str(nordland_dir), "--format", "aligned", "--frames", "34000:", "--latency-iters", "3",
        "--num-workers", "0", "--no-progress", "-o", str(tmp_path / "v")])
    assert r.exit_code == 1, r.output
    report = json.loads((tmp_path / "v" / "report.json").read_text())
    rows = {a["name"]: a for a in report["artifacts"]}
    assert rows["good"]["status"] == "ok" and rows["good"]["recall"]["1"] > 0
    assert rows["edited"]["status"] == "failed" and "preprocessing.mean" in rows["edited"]["reason"]
    assert rows["broken"]["status"] == "failed" and "model.onnx is missing" in rows["broken"]["reason"]
    assert "2 of 3 bundle(s) could not be validated" in r.output and "**failed**" in (
        tmp_path / "v" / "report.md").read_text()
    # The reference checkpoint re-saved with other preprocessing: allowed as foreign, refused as incomparable.
    from boq_edge.model import load_checkpoint
    from boq_edge.preprocess import Preprocessing

    model, config, _ = load_checkpoint(models["ref"])
    d = config.preprocessing.to_dict()
    model.config = replace(config, preprocessing=Preprocessing.from_dict({**d, "std": [1.0, 1.0, 1.0]}))
    other = save_checkpoint(model, tmp_path / "other-pre.boq")
    r = runner.invoke(app, [
        "validate", str(models["good"]), "--reference", str(other), "--allow-foreign-reference",
        "--dataset", str(nordland_dir), "--format", "aligned", "--frames", "34000:", "--latency-iters", "3",
        "--num-workers", "0", "--no-progress", "-o", str(tmp_path / "v2")])
    assert r.exit_code == 1 and "preprocessing differs from the checkpoint's: std" in r.output, r.output


def test_unknown_backend_key_is_bad_input(models: dict[str, Path], nordland_dir: Path, tmp_path: Path) -> None:
    r = _validate(models, "good", nordland_dir, tmp_path / "o", "--backend", "tflite=onnxruntime")
    assert r.exit_code == 2 and "--backend: unknown target 'tflite'" in r.output, r.output


def test_reference_descriptors_are_cached_by_content(models: dict[str, Path], nordland_dir: Path,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOQ_EDGE_CACHE", str(tmp_path / "cache"))
    for run in ("a", "b"):
        r = _validate(models, "good", nordland_dir, tmp_path / run)
        assert r.exit_code == 0, r.output
    first = json.loads((tmp_path / "a" / "report.json").read_text())["reference"]["by_input"][0]
    again = json.loads((tmp_path / "b" / "report.json").read_text())["reference"]["by_input"][0]
    assert not first["from_cache"] and again["from_cache"] and first["recall"] == again["recall"]


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
