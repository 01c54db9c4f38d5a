"""``boq-edge export`` / ``build-engine`` / ``embed``: aliases, refused flag combinations, the TensorRT hand-off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")

from boq_edge.export import api  # noqa: E402
from boq_edge.export.api import ExportError, parse_batch_range, resolve_target  # noqa: E402
from boq_edge.export.tensorrt_export import tensorrt_status  # noqa: E402

from boq_edge.cli import _load_commands, app  # noqa: E402
from boq_edge.runtime import read_manifest  # noqa: E402

_load_commands()
runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint: Path) -> Path:
    return tiny_checkpoint


def test_target_aliases_and_batch_ranges() -> None:
    for typed, target in [("trt", "tensorrt"), ("engine", "tensorrt"), ("ov", "openvino"), ("ONNX", "onnx"),
                          ("ort", "onnx"), ("openvino", "openvino")]:
        assert resolve_target(typed) == target
    with pytest.raises(ExportError, match="unknown target 'tflite'"):
        resolve_target("tflite")
    assert parse_batch_range("1") == (1, 1, 1)
    assert parse_batch_range("1:4:8") == (1, 4, 8)
    assert parse_batch_range("2:16") == (2, 2, 16)
    for bad in ("0", "8:4:1", "a:b", "1:2:3:4"):
        with pytest.raises(ExportError):
            parse_batch_range(bad)


@pytest.mark.parametrize("args,message", [
    (["--target", "tflite"], "unknown target"),
    (["--target", "onnx", "--batch", "1", "--batch-range", "1:4:8"], "not both"),
    (["--target", "onnx", "--batch-range", "4:2:8"], "min <= opt <= max"),
    (["--target", "onnx", "--fp16", "--int8"], "exclusive"),
    (["--target", "onnx", "--inference-precision", "f32"], "openvino only"),
    (["--target", "ov", "--workspace-gib", "2"], "tensorrt only"),
    (["--target", "onnx", "--calibration", "x"], "only apply with --int8"),
    (["--target", "onnx", "--qat-epochs", "2"], "--qat-epochs only apply with --int8"),
    (["--target", "onnx", "--int8"], "boq-edge calibrate"),
    (["--target", "ov", "--int8", "--calib", "c.json", "--max-r1-drop", "0.5"], "needs --val-data"),
    (["--target", "ov", "--int8", "--calib", "c.json", "--val-frames", "1:2"], "--val-frames needs --val-data"),
    (["--target", "dinov2", "--image-size", "100", "100"], "unknown target"),
])
def test_refused_combinations(ckpt: Path, tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "b"
    r = runner.invoke(app, ["export", str(ckpt), "-o", str(out), *args])
    assert r.exit_code == 2 and message in r.output, r.output
    assert not out.exists()


def test_int8_without_calibration_stage_is_refused(ckpt: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "int8_hook", lambda: None)
    calib = tmp_path / "calib.json"
    calib.write_text("{}")
    r = runner.invoke(app, ["export", str(ckpt), "--target", "trt", "--int8", "--calib", str(calib),
                            "-o", str(tmp_path / "b")])
    assert r.exit_code == 2 and "INT8 export is not available yet" in r.output


def test_int8_hook_is_called(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seam the INT8 stage plugs into: it writes the artifacts, the export stage writes the manifest."""
    seen = {}

    def fake_quantize(folded, *, target, fp32_onnx, stage, options, batch_range):
        seen.update(target=target, options=options, batch_range=batch_range)
        (stage / "model.onnx").write_bytes(Path(fp32_onnx).read_bytes())
        return {"artifacts": {"onnx": "model.onnx"},
                "quantization": {"method": "fake", "calibration_manifest_sha256": "0" * 64}}

    monkeypatch.setattr(api, "int8_hook", lambda: fake_quantize)
    out = api.export_model(ckpt, "onnx", tmp_path / "b", int8={"calibration": None}, batch_range=(1, 1, 2))
    m = read_manifest(out)
    assert m.precision == "int8" and m.quantization == {"method": "fake", "calibration_manifest_sha256": "0" * 64}
    assert seen == {"target": "onnx", "options": {"calibration": None}, "batch_range": (1, 1, 2)}


@pytest.mark.skipif(tensorrt_status()[0], reason="TensorRT and a GPU are present: the engine is built instead")
def test_tensorrt_without_tensorrt_writes_ready_bundle(ckpt: Path, tmp_path: Path, nordland_dir: Path) -> None:
    out = tmp_path / "trt"
    r = runner.invoke(app, ["export", str(ckpt), "--target", "engine", "--batch-range", "1:2:4", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert f"boq-edge build-engine {out}" in r.output.replace("\n", "")
    m = read_manifest(out)
    assert m.target == "tensorrt" and set(m.files) == {"model.onnx"} and m.batch_range == (1, 2, 4)
    assert m.raw["tensorrt"]["engine"] == "pending"
    r = runner.invoke(app, ["build-engine", str(out)])
    assert r.exit_code == 2
    assert "boq-edge[tensorrt]" in r.output or "no CUDA GPU" in r.output, r.output
    # the TensorRT bundle's ONNX still runs anywhere through onnxruntime
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sorted((nordland_dir / "winter").glob("images-300*.png"))[:5]:
        (folder / p.name).symlink_to(p)
    desc, names = tmp_path / "d.npy", tmp_path / "d.txt"
    r = runner.invoke(app, ["embed", str(out), str(folder), "--backend", "ort", "--out", str(desc),
                            "--batch-size", "2", "--list-out", str(names)])
    assert r.exit_code == 0, r.output
    d = np.load(desc)
    assert d.shape == (5, 2048) and np.allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    assert names.read_text().splitlines()[0].endswith("images-30000.png")
    r = runner.invoke(app, ["embed", str(out), str(tmp_path / "nope.png"), "--out", str(desc)])
    assert r.exit_code == 2 and "no such file" in r.output


def test_build_engine_refuses_non_tensorrt_bundle(ckpt: Path, tmp_path: Path) -> None:
    out = api.export_model(ckpt, "onnx", tmp_path / "onnx", batch_range=(1, 1, 1))
    r = runner.invoke(app, ["build-engine", str(out)])
    assert r.exit_code == 2
    assert "not tensorrt" in r.output or "boq-edge[tensorrt]" in r.output, r.output
