"""Targets are plug-ins: one file adds one, through the Python API, the CLI and an installed entry point.

Also pins the architecture rules the registry exists for: outside the target modules no
code compares a target name, and the list of targets is defined once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from boq_edge.export import targets  # noqa: E402
from boq_edge.export.api import export_model  # noqa: E402
from boq_edge.export.options import ExportOptions, ExportOptionsError  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from boq_edge.cli import _load_commands, app  # noqa: E402
from boq_edge.runtime import BundleError, load_runtime  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
_load_commands()

# The whole throwaway target: one file, nothing else in the project changes.
TOY_TARGET = textwrap.dedent('''
    """A throwaway target: the FP32 ONNX under another name, run by ONNX Runtime."""
    from boq_edge.export.bundle import OnnxRecord
    from boq_edge.export.onnx_export import DYNAMO_EXPORTER, export_fp32_onnx
    from boq_edge.export.targets import Target
    from boq_edge.runtime.manifest import ROLE_ONNX


    class ToyTarget(Target):
        name = "toy"
        aliases = ("toy-onnx",)
        default_backend = "onnxruntime"
        precisions = ("fp32",)

        def prepare(self, draft, options, out_dir):
            draft.sections["toy"] = {"greeting": "hello from the toy target"}

        def emit(self, folded, stage, options, draft, work):
            path = export_fp32_onnx(folded, stage / "toy.onnx", options.opset)
            draft.artifacts[ROLE_ONNX] = "toy.onnx"
            draft.onnx = OnnxRecord.of_file(path, DYNAMO_EXPORTER)

        def describe(self, manifest):
            return [("toy", manifest.section("toy")["greeting"])]
''')


@pytest.fixture()
def toy_module(tmp_path: Path) -> Path:
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / "toy_target.py").write_text(TOY_TARGET)
    return folder


@pytest.fixture()
def toy_registered(toy_module: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("toy_target", toy_module / "toy_target.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(targets, "TARGETS", dict(targets.TARGETS))  # the test's registration is undone after
    return targets.register_target(mod.ToyTarget)


def test_registered_target_exports_through_api_and_cli(toy_registered, tiny_checkpoint: Path,  # noqa: ANN001
                                                       tmp_path: Path) -> None:
    bundle = export_model(tiny_checkpoint, tmp_path / "api", ExportOptions("toy-onnx", batch_range=(1, 1, 2)))
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["target"] == "toy" and m["artifacts"] == {"onnx": "toy.onnx"} and set(m["files"]) == {"toy.onnx"}
    assert m["toy"] == {"greeting": "hello from the toy target"} and m["onnx"]["opset"] == 18
    rt = load_runtime(bundle)  # the default backend comes from the target
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    assert rt.info()["backend"] == "onnxruntime" and rt(x).shape == (3, 2048)

    runner = CliRunner()
    r = runner.invoke(app, ["export", str(tiny_checkpoint), "--target", "toy", "-o", str(tmp_path / "cli")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["info", str(tmp_path / "cli")])
    assert r.exit_code == 0 and "hello from the toy target" in r.output, r.output
    # the target's own rules hold: it declared FP32 only
    r = runner.invoke(app, ["export", str(tiny_checkpoint), "--target", "toy", "--fp16", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "does not export fp16" in r.output
    with pytest.raises(ValueError, match="already used by target 'toy'"):
        targets.register_target(toy_registered)
    bad = type("Bad", (type(toy_registered),), {"name": "Toy2", "aliases": ()})
    with pytest.raises(ValueError, match="lower case"):
        targets.register_target(bad)
    bad = type("Bad", (type(toy_registered),), {"name": "toy3", "aliases": (), "default_backend": "tflite"})
    with pytest.raises(ValueError, match="not a runtime backend"):
        targets.register_target(bad)


def test_installed_plugin_is_found_by_entry_point(toy_module: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A package that declares a ``boq_edge.targets`` entry point is a target for every command."""
    dist = toy_module / "boq_edge_toy-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: boq-edge-toy\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[boq_edge.targets]\ntoy = toy_target:ToyTarget\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(toy_module), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "plugin-bundle"
    r = subprocess.run([sys.executable, "-m", "boq_edge.cli", "export", str(tiny_checkpoint), "--target", "toy",
                        "-o", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert json.loads((out / "manifest.json").read_text())["target"] == "toy"
    # Without the plug-in installed, the bundle is refused by name rather than misread.
    with pytest.raises(BundleError, match="unknown target 'toy'"):
        load_runtime(out)


def test_unknown_target_lists_the_registered_ones() -> None:
    with pytest.raises(targets.ExportError, match=r"unknown target 'tflite'; choose from onnx, openvino, tensorrt"):
        ExportOptions("tflite")
    with pytest.raises(ExportOptionsError, match="unknown precision 'int16'"):
        ExportOptions("onnx", "int16")


CODE_DIRS = ("boq_edge", "export", "calibration", "benchmarks")
NAMES = r"(?:onnx|openvino|tensorrt|ort|ov|trt|engine|ir)"
COMPARISON = re.compile(
    rf"""(?:[=!]=\s*["']{NAMES}["'])|(?:["']{NAMES}["']\s*[=!]=)|(?:\bnot\s+in\s*[(\[{{]\s*["']{NAMES}["'])"""
    rf"""|(?:\bin\s*[(\[{{]\s*["']{NAMES}["'])""")


def _code_files() -> list[Path]:
    return [p for d in CODE_DIRS for p in sorted((REPO / d).rglob("*.py")) if "targets" not in p.parts]


def test_no_target_name_comparisons_outside_target_modules() -> None:
    loop = re.compile(r"\bfor\s+[\w, ]+\s+in\b")  # iterating over targets (a benchmark's rows) is not comparing
    hits = [f"{p.relative_to(REPO)}:{i}: {line.strip()}" for p in _code_files()
            for i, line in enumerate(p.read_text().splitlines(), 1) if COMPARISON.search(loop.sub("", line))]
    assert not hits, "target names compared outside export/targets/:\n" + "\n".join(hits)


def test_targets_are_defined_once() -> None:
    pattern = re.compile(r"^\s*TARGETS\s*(?::[^=]*)?=", re.M)
    places = [str(p.relative_to(REPO)) for p in [*_code_files(), *(REPO / "export/targets").glob("*.py")]
              if pattern.search(p.read_text())]
    assert places == ["export/targets/__init__.py"]
