"""``boq-edge export`` / ``build-engine`` / ``embed``: aliases, refused flag combinations, the TensorRT hand-off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")

from boq_edge.export import api  # noqa: E402
from boq_edge.export.options import ExportOptions, ExportOptionsError, parse_batch_range  # noqa: E402
from boq_edge.export.targets import ExportError, get_target  # noqa: E402
from boq_edge.export.targets.tensorrt import tensorrt_status  # noqa: E402

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
        assert get_target(typed).name == target == ExportOptions(typed).target
    with pytest.raises(ExportError, match="unknown target 'tflite'"):
        get_target("tflite")
    assert parse_batch_range("1") == (1, 1, 1)
    assert parse_batch_range("1:4:8") == (1, 4, 8)
    assert parse_batch_range("2:16") == (2, 2, 16)
    for bad in ("0", "8:4:1", "a:b", "1:2:3:4"):
        with pytest.raises(ExportOptionsError):
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


def test_export_options_check_their_own_rules() -> None:
    """The rules live in the options types, so the Python API refuses what the CLI refuses."""
    from boq_edge.calibration import Int8Options, Int8OptionsError
    from boq_edge.export.targets.openvino import OpenVINOOptions

    with pytest.raises(ExportOptionsError, match="needs Int8Options"):
        ExportOptions("onnx", "int8")
    with pytest.raises(ExportOptionsError, match="only with --int8"):
        ExportOptions("onnx", "fp16", int8=Int8Options(calibration="c.json"))
    with pytest.raises(ExportOptionsError, match=r"OpenVINOOptions \(--inference-precision\) is for --target openvino"):
        ExportOptions("trt", target_options=OpenVINOOptions())
    with pytest.raises(ExportOptionsError, match="opset 17"):
        ExportOptions("onnx", opset=17)
    with pytest.raises(ExportOptionsError, match="unknown precision"):
        ExportOptions("onnx", "int4")
    with pytest.raises(Int8OptionsError, match="calibration set"):
        Int8Options(calibration=None)
    with pytest.raises(Int8OptionsError, match="needs --val-data"):
        Int8Options(calibration="c.json", max_r1_drop=0.5)
    with pytest.raises(Int8OptionsError, match=">= 0"):
        Int8Options(calibration="c.json", qat_epochs=-1)
    assert ExportOptions("ov", "int8", int8=Int8Options(calibration="c.json", qat_epochs=2)).int8.method == "qat"


@pytest.mark.skipif(tensorrt_status()[0], reason="TensorRT and a GPU are present: the engine is built instead")
def test_tensorrt_without_tensorrt_writes_ready_bundle(ckpt: Path, tmp_path: Path, nordland_dir: Path) -> None:
    out = tmp_path / "trt"
    r = runner.invoke(app, ["export", str(ckpt), "--target", "engine", "--batch-range", "1:2:4", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert f"boq-edge build-engine {out}" in r.output.replace("\n", "")
    m = read_manifest(out)
    assert m.target == "tensorrt" and set(m.files) == {"model.onnx"} and m.batch_range == (1, 2, 4)
    assert m.section("tensorrt")["engine"] == "pending"
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
    out = api.export_model(ckpt, tmp_path / "onnx", ExportOptions("onnx", batch_range=(1, 1, 1)))
    r = runner.invoke(app, ["build-engine", str(out)])
    assert r.exit_code == 2
    assert "not tensorrt" in r.output or "boq-edge[tensorrt]" in r.output, r.output
