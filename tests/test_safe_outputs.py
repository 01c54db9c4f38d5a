"""Nothing lost: --force replaces only bundles, never an input or the working folder; two writers never
both win; a killed export leaves nothing behind (or is cleaned next run); outputs never overwrite inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")

from boq_edge.export.api import export_model  # noqa: E402
from boq_edge.export.bundle import is_bundle  # noqa: E402
from boq_edge.export.options import ExportOptions  # noqa: E402

from boq_edge.cli import _load_commands, app  # noqa: E402
from boq_edge.outputs import OutputError, publish, recover_leftovers, staging  # noqa: E402
from boq_edge.runtime import read_manifest  # noqa: E402

_load_commands()
runner = CliRunner()


def _export(ckpt: Path, out: Path, *extra: str):  # noqa: ANN202
    return runner.invoke(app, ["export", str(ckpt), "--target", "onnx", "-o", str(out), *extra])


@pytest.fixture()
def run_dir(tmp_path: Path, tiny_checkpoint: Path) -> Path:
    """A training run folder: the checkpoint and its metrics, things --force must never delete."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.boq").write_bytes(tiny_checkpoint.read_bytes())
    (run / "metrics.csv").write_text("epoch,loss\n1,0.5\n")
    return run


def test_force_never_replaces_a_folder_that_is_not_a_bundle(run_dir: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in run_dir.iterdir())
    r = _export(run_dir / "best.boq", run_dir, "--force")
    assert r.exit_code == 2 and "contains the input" in r.output, r.output
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    r = _export(run_dir / "best.boq", other, "--force")
    assert r.exit_code == 2 and "is not a bundle (it holds todo.txt)" in r.output, r.output
    assert (other / "todo.txt").read_text() == "keep me" and sorted(p.name for p in run_dir.iterdir()) == before


def test_never_the_current_folder(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.txt").write_text("x")
    monkeypatch.chdir(work)
    for out in (".", str(tmp_path)):
        r = _export(run_dir / "best.boq", Path(out), "--force")
        assert r.exit_code == 2 and "is the current folder" in r.output, r.output
    assert (work / "mine.txt").is_file()


def test_force_replaces_a_bundle_and_the_old_is_gone(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    assert _export(tiny_checkpoint, out).exit_code == 0
    first = read_manifest(out).raw["created_utc"]
    r = _export(tiny_checkpoint, out)
    assert r.exit_code == 2 and "already exists" in r.output
    time.sleep(1.1)
    assert _export(tiny_checkpoint, out, "--force").exit_code == 0
    assert read_manifest(out).raw["created_utc"] != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no staging, no lock, no old copy left


def test_two_concurrent_exports_one_winner(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "shared-out"
    cmd = [sys.executable, "-m", "boq_edge.cli", "export", str(tiny_checkpoint), "--target", "onnx", "-o", str(out)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stdout.read() + p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    codes = sorted(c for c, _ in results)
    assert codes == [0, 2], results
    loser = next(text for c, text in results if c == 2)
    assert "another boq-edge process (pid" in loser or "already exists" in loser
    assert is_bundle(out) and read_manifest(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared-out"]


def test_sigterm_leaves_nothing_in_temp_or_beside_the_output(tiny_checkpoint: Path, tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    out = tmp_path / "outs" / "b"
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    proc = subprocess.Popen([sys.executable, "-m", "boq_edge.cli", "export", str(tiny_checkpoint), "--target",
                             "openvino", "--fp16", "-o", str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list((tmp_path / "outs").glob(".b.staging-*/new")):
        time.sleep(0.05)
    assert proc.poll() is None, "the export finished before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    assert not out.exists()
    assert sorted(p.name for p in (tmp_path / "outs").iterdir()) == [], list((tmp_path / "outs").iterdir())
    assert list(tmpdir.iterdir()) == []


def test_sigkill_leftovers_are_cleaned_and_an_interrupted_replace_restored(tiny_checkpoint: Path,
                                                                            tmp_path: Path) -> None:
    old = export_model(tiny_checkpoint, tmp_path / "b", ExportOptions("onnx"))
    # A crash in the fallback replace: the old bundle moved aside, the new one not yet in place.
    crashed = tmp_path / ".b.staging-dead"
    crashed.mkdir()
    (crashed / "owner.pid").write_text("999999999")
    os.replace(old, crashed / "old")
    stale = tmp_path / ".b.staging-stale"
    stale.mkdir()
    (stale / "owner.pid").write_text("999999998")
    done = recover_leftovers(tmp_path / "b")
    assert is_bundle(tmp_path / "b") and any("restored" in d for d in done)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    # and a staging folder of a live process is left alone
    live = tmp_path / ".b.staging-live"
    live.mkdir()
    (live / "owner.pid").write_text(str(os.getpid()))
    recover_leftovers(tmp_path / "b")
    assert live.is_dir()


def test_publish_swaps_atomically(tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "v").write_text("old")
    with staging(out) as root:
        (root / "new").mkdir()
        (root / "new" / "v").write_text("new")
        publish(root / "new", out, root, replace=True)
        assert (out / "v").read_text() == "new" and (root / "new" / "v").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]
    with staging(tmp_path / "fresh") as root:
        (root / "new").mkdir()
        (tmp_path / "fresh").mkdir()  # someone else created the path meanwhile
        with pytest.raises(OutputError, match="appeared while the result was being made"):
            publish(root / "new", tmp_path / "fresh", root)


def test_outputs_never_overwrite_inputs_and_are_checked_first(tiny_checkpoint: Path, tmp_path: Path,
                                                              write_image) -> None:
    bundle = export_model(tiny_checkpoint, tmp_path / "b", ExportOptions("onnx"))
    img = write_image(tmp_path / "imgs" / "a.png")
    data = img.read_bytes()
    r = runner.invoke(app, ["embed", str(bundle), str(img), "-o", str(img)])
    assert r.exit_code == 2 and "is the input" in r.output and img.read_bytes() == data
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = runner.invoke(app, ["embed", str(bundle), str(img), "-o", str(blocker / "d.npy")])
    assert r.exit_code == 2 and "not a writable folder" in r.output
    r = _export(tiny_checkpoint, blocker / "bundle")
    assert r.exit_code == 2 and "not a writable folder" in r.output
    r = runner.invoke(app, ["validate", str(bundle), "--reference", str(tiny_checkpoint), "-d", str(tmp_path),
                            "-o", str(bundle)])
    assert r.exit_code == 2 and "is the input" in r.output
    assert json.loads((bundle / "manifest.json").read_text())["target"] == "onnx"


@pytest.mark.parametrize("args,message", [
    (["--batch", "0"], "must satisfy 1 <= min"),
    (["--opset", "5"], "too old"),
    (["--image-size", "100000", "100000"], "outside 1..4096"),
])
def test_export_flag_values_are_checked(tiny_checkpoint: Path, tmp_path: Path, args: list[str], message: str) -> None:
    r = _export(tiny_checkpoint, tmp_path / "x", *args)
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (tmp_path / "x").exists()


def test_negative_threads_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    bundle = export_model(tiny_checkpoint, tmp_path / "b", ExportOptions("onnx"))
    r = runner.invoke(app, ["bench", str(bundle), "--threads", "-4"])
    assert r.exit_code == 2 and "greater than or equal to 1" in r.output
