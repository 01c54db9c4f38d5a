"""Bundle manifest: schema fields, hashes, atomic writes, and refusal of tampered or unsafe bundles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")

from boq_edge.export import api, onnx_export  # noqa: E402
from boq_edge.export.bundle import BundleError, read_manifest  # noqa: E402
from boq_edge.export.options import ExportOptions  # noqa: E402

from boq_edge.cli import _load_commands, app  # noqa: E402
from boq_edge.fileio import file_sha256  # noqa: E402
from boq_edge.runtime import load_runtime  # noqa: E402
from boq_edge.runtime.manifest import load_manifest_dict, write_manifest  # noqa: E402

_load_commands()
runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint: Path) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def bundle(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return api.export_model(ckpt, tmp_path_factory.mktemp("b") / "tiny-onnx",
                            ExportOptions("onnx", batch_range=(1, 2, 4)))


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "copy"))


def test_manifest_fields(bundle: Path, ckpt: Path) -> None:
    d = json.loads((bundle / "manifest.json").read_text())
    assert d["schema"] == "boq-edge-bundle" and d["schema_version"] == 2
    assert d["preset"] == "mobilenetv2-2048" and d["model_config"]["name"] == "mobilenetv2-2048"
    assert d["descriptor_dim"] == 2048 and d["output"]["shape"] == ["batch", 2048]
    assert d["input"] == {"name": "images", "shape": ["batch", 3, 64, 64], "dtype": "float32", "layout": "NCHW"}
    assert d["batch"] == {"min": 1, "opt": 2, "max": 4}
    assert d["preprocessing"]["height"] == 64 and d["preprocessing"]["interpolation"] == "bicubic"
    assert d["precision"] == "fp32" and d["target"] == "onnx"
    assert d["files"] == {"model.onnx": file_sha256(bundle / "model.onnx")}
    assert d["source"]["checkpoint_sha256"] == file_sha256(ckpt)
    assert d["folding"]["applied"] is True and d["quantization"] is None
    assert d["inference_precision"] is None  # OpenVINO bundles only
    for tool in ("torch", "onnx", "onnxruntime", "openvino", "nncf", "numpy", "python"):
        assert tool in d["toolchain"]
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".")], "staging left behind"


def test_flipped_byte_is_refused(bundle: Path, tmp_path: Path) -> None:
    b = _copy(bundle, tmp_path)
    model = b / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="model.onnx has been modified or corrupted"):
        read_manifest(b)
    with pytest.raises(BundleError):
        load_runtime(b)
    r = runner.invoke(app, ["info", str(b)])
    assert r.exit_code == 2 and "model.onnx has been modified" in r.output
    r = runner.invoke(app, ["info", str(bundle)])  # the untouched original still verifies
    assert r.exit_code == 0 and "verified" in r.output and "model.onnx" in r.output


def test_missing_file_unsafe_path_and_schema_are_refused(bundle: Path, tmp_path: Path) -> None:
    b = _copy(bundle, tmp_path)
    d = load_manifest_dict(b)
    d["schema_version"] = 1  # a bundle from before deployment facts were embedded in the model file
    (b / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(BundleError, match="schema version 1"):
        read_manifest(b)
    d["schema_version"] = 2
    d["files"]["../outside.bin"] = "0" * 64
    (b / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(BundleError, match="unsafe path"):
        read_manifest(b)
    del d["files"]["../outside.bin"]
    (b / "manifest.json").write_text(json.dumps(d))
    (b / "model.onnx").unlink()
    with pytest.raises(BundleError, match="model.onnx is missing"):
        read_manifest(b)
    with pytest.raises(BundleError, match="no manifest.json"):
        read_manifest(tmp_path)


def test_export_is_atomic(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "bundle"

    def boom(*args, **kwargs):
        raise RuntimeError("emitter failed")

    monkeypatch.setattr(onnx_export, "emit_onnx", boom)
    with pytest.raises(RuntimeError, match="emitter failed"):
        api.export_model(ckpt, out, ExportOptions("onnx"))
    assert list(tmp_path.iterdir()) == [], "a failed export left files behind"


def test_existing_bundle_needs_overwrite(bundle: Path) -> None:
    with pytest.raises(BundleError, match="already exists"):
        api.export_model(bundle.parent / "nothing-needed.boq", bundle, ExportOptions("onnx"))


def test_runtime_splits_and_pads_to_the_batch_range(bundle: Path, tmp_path: Path) -> None:
    b = _copy(bundle, tmp_path)
    x = np.random.default_rng(0).standard_normal((5, 3, 64, 64)).astype(np.float32)
    whole = load_runtime(b)(x)
    d = load_manifest_dict(b)
    d["batch"] = {"min": 2, "opt": 2, "max": 2}  # odd counts need padding, 5 needs 3 chunks
    write_manifest(b, {k: v for k, v in d.items() if k not in ("schema", "schema_version")})
    rt = load_runtime(b)
    np.testing.assert_allclose(rt(x), whole, atol=1e-5)
    np.testing.assert_allclose(rt(x[:1]), whole[:1], atol=1e-5)
    assert rt(x[:0]).shape == (0, 2048)
    with pytest.raises(ValueError, match="this bundle takes"):
        rt(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="must be float32"):
        rt(np.zeros((1, 3, 64, 64), np.float64))


def _rewrite(b: Path, d: dict) -> None:
    write_manifest(b, {k: v for k, v in d.items() if k not in ("schema", "schema_version")})


def test_edited_manifest_is_refused_by_info_and_runtime(bundle: Path, tmp_path: Path) -> None:
    """Preprocessing edited to mean 0 / std 1: every file still hashes, but the model file says otherwise."""
    b = _copy(bundle, tmp_path)
    d = load_manifest_dict(b)
    d["preprocessing"] = {**d["preprocessing"], "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    _rewrite(b, d)
    with pytest.raises(BundleError, match=r"preprocessing\.mean, preprocessing\.std differ from what model.onnx"):
        read_manifest(b)
    with pytest.raises(BundleError, match="edited manifest"):
        load_runtime(b)
    r = runner.invoke(app, ["info", str(b)])
    assert r.exit_code == 2 and "preprocessing.mean" in r.output
    d = load_manifest_dict(bundle)
    d["output"] = {**d["output"], "name": "other"}
    b2 = _copy(bundle, tmp_path / "2")
    _rewrite(b2, d)
    with pytest.raises(BundleError, match="output.name"):
        read_manifest(b2)


def test_unlisted_files_and_links_are_refused(bundle: Path, tmp_path: Path) -> None:
    """A file a runtime could load (external data, an OpenVINO .bin) must be listed; no links at all."""
    b = _copy(bundle, tmp_path)
    (b / "model.onnx.data").write_bytes(b"weights nobody hashed")
    with pytest.raises(BundleError, match="model.onnx.data is not listed"):
        read_manifest(b)
    (b / "model.onnx.data").unlink()
    outside = tmp_path / "outside.onnx"
    outside.write_bytes((b / "model.onnx").read_bytes())
    (b / "model.onnx").unlink()
    (b / "model.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match="model.onnx is a symbolic link"):
        read_manifest(b)


def test_openvino_bin_must_be_listed(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The .bin OpenVINO reads beside model.xml, dropped from the manifest and then changed, is refused."""
    b = api.export_model(tiny_checkpoint, tmp_path / "ov", ExportOptions("openvino"))
    read_manifest(b)
    d = load_manifest_dict(b)
    del d["files"]["openvino/model.bin"]
    _rewrite(b, d)
    data = bytearray((b / "openvino/model.bin").read_bytes())
    data[-100] ^= 0x55
    (b / "openvino/model.bin").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="openvino/model.bin is not listed"):
        load_runtime(b)
