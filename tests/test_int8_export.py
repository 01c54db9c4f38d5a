"""INT8 bundles of the MobileNetV2 preset (64×128) on real Nordland images, for every target.

Each bundle is made through the export stage (``export_model`` with ``Int8Options``),
then run by the bundle runtimes; descriptors must stay close to the FP32 torch model.
The model is the ImageNet backbone with a random BoQ head: the floors are set for that
(measured with the ill-conditioned first layers in float: cosine 0.995 OpenVINO, 0.993
ONNX Runtime, 0.967 TensorRT Q/DQ, 0.994 after one QAT epoch; with those layers quantized
0.83–0.90), so a lost float placement, quantized attention (cosine ≈ 0.5) or a wrong
scale fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from boq_edge.calibration import build_calibration_set, lint_model, save_calibration_set

from boq_edge.preprocess import preprocess_batch

SIZE = (64, 128)


@pytest.fixture(scope="module")
def setup(nordland_dir: Path, mobilenet_weights: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    import warnings

    import torch
    from boq_edge.calibration import FewCalibrationImagesWarning
    from boq_edge.export.fold import fold

    from boq_edge.model import build_model, get_preset

    tmp = tmp_path_factory.mktemp("int8")
    torch.manual_seed(0)
    model = build_model(get_preset("mobilenetv2-edge").with_image_size(*SIZE), mobilenet_weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewCalibrationImagesWarning)
        calib = build_calibration_set(nordland_dir, 64, seed=0, format="aligned", options={"frames": ":25000"})
    calib = save_calibration_set(calib, tmp / "calib.json")
    probe = sorted((nordland_dir / "winter").glob("images-2[5-9]*.png"))[::40][:24]
    x = preprocess_batch(probe, model.config.preprocessing)
    folded = fold(model)
    from boq_edge.calibration.qat import flush_subnormals

    flush_subnormals(folded)
    with torch.no_grad():
        ref = folded(torch.from_numpy(x)).numpy()
    return {"model": model, "calib": tmp / "calib.json", "calib_hash": calib.content_hash(), "x": x, "ref": ref,
            "tmp": tmp}


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _export(setup: dict, target: str, name: str = "ptq", **int8: object) -> Path:
    from boq_edge.calibration import Int8Options
    from boq_edge.export.api import export_model
    from boq_edge.export.options import ExportOptions

    out = setup["tmp"] / f"{target}-{name}"
    options = ExportOptions(target, "int8", int8=Int8Options(calibration=setup["calib"], **int8))  # type: ignore[arg-type]
    export_model(setup["model"], out, options, overwrite=True)
    return out


def _run(bundle: Path, x: np.ndarray, backend: str | None = None) -> np.ndarray:
    from boq_edge.runtime import load_runtime

    rt = load_runtime(bundle, backend=backend)
    return np.concatenate([rt(x[i : i + 8]) for i in range(0, len(x), 8)])


@pytest.mark.slow
@pytest.mark.parametrize("target,floor", [("openvino", 0.97), ("onnx", 0.97), ("tensorrt", 0.93)])
def test_ptq_bundle_runs_and_stays_close(setup: dict, target: str, floor: float) -> None:
    bundle = _export(setup, target)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["precision"] == "int8"
    q = manifest["quantization"]
    assert q["method"] == "ptq" and q["calibration_sha256"] == setup["calib_hash"]
    assert q["calibration_images"] == 64 and q["float_ops"]  # attention stays in float
    # The ImageNet MobileNetV2's BN-amplified first layers stay float in every scheme.
    assert len(q["ill_conditioned"]) == 4
    assert all(any(f.split("/")[0] == n for f in q["float_ops"]) for n in q["ill_conditioned"])
    assert q["scheme"] == {"openvino": "openvino-fakequantize-s8-overflowfix", "onnx": "onnxruntime-qdq-u8s7",
                           "tensorrt": "qdq-s8s8-tensorrt"}[target]
    assert manifest["onnx"]["exporter"].startswith("torch.onnx.export(dynamo=True)") and manifest["onnx"]["opset"] >= 18
    if target != "openvino":
        assert "rewritten by onnxruntime.quantization.quantize_static" in manifest["onnx"]["exporter"]
    if target != "openvino":  # the opset recorded is the shipped file's own
        shipped = onnx.load(str(bundle / "model.onnx"))
        assert manifest["onnx"]["opset"] == max(o.version for o in shipped.opset_import if o.domain in ("", "ai.onnx"))
    # TensorRT is not installed here: its Q/DQ ONNX runs in ONNX Runtime, which reads the same file.
    out = _run(bundle, setup["x"], backend="onnxruntime" if target == "tensorrt" else None)
    cos = _cosine(out, setup["ref"])
    assert np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-3)
    assert cos.mean() > floor, f"{target}: cosine to FP32 {cos.mean():.3f} <= {floor}"
    if target == "tensorrt":
        model = onnx.load(str(bundle / "model.onnx"))
        report = lint_model(model)
        assert report.ok, [str(v) for v in report.violations[:5]]
        assert set(q["ill_conditioned"]) <= set(report.float_nodes)
        assert q["lint"]["ok"] and q["lint"]["quantized_nodes"] == len(report.quantized_nodes)
    if target != "openvino":  # shipped INT8 ONNX: no exporter stack traces (build paths), no Constant nodes
        model = onnx.load(str(bundle / "model.onnx"))
        assert not any(n.metadata_props for n in model.graph.node)
        assert not any(n.op_type == "Constant" for n in model.graph.node)
    sizes = {f: (bundle / f).stat().st_size for f in manifest["files"] if f.endswith((".onnx", ".bin"))}
    assert sum(sizes.values()) > 0


def test_ill_conditioned_layers_found_and_mapped_to_torch(setup: dict) -> None:
    """The ImageNet MobileNetV2 keeps features.0, features.1 and features.2's expansion in float; QAT maps them."""
    import torch
    from boq_edge.calibration.graph import ill_conditioned_nodes, large_weight_nodes
    from boq_edge.calibration.qat import nncf_names_for_onnx_nodes
    from boq_edge.export.fold import fold
    from boq_edge.export.onnx_export import export_fp32_onnx

    from boq_edge.model import build_model, get_preset

    folded = fold(setup["model"])
    path = export_fp32_onnx(folded, setup["tmp"] / "fp32-ill.onnx")
    model = onnx.load(str(path))
    ill = ill_conditioned_nodes(model)
    assert len(large_weight_nodes(model)) == 2 and set(large_weight_nodes(model)) < set(ill)
    names = nncf_names_for_onnx_nodes(folded.eval(), setup["x"], model, ill)
    assert names == ["backbone/features/0/0/conv2d/0", "backbone/features/1/conv/0/0/conv2d/0",
                     "backbone/features/1/conv/1/conv2d/0", "backbone/features/2/conv/0/0/conv2d/0"]
    # Freshly initialised BatchNorm (variance 1) amplifies nothing: no layer is singled out.
    torch.manual_seed(0)
    plain = fold(build_model(get_preset("mobilenetv2-edge").with_image_size(*SIZE)))
    assert ill_conditioned_nodes(onnx.load(str(export_fp32_onnx(plain, setup["tmp"] / "fp32-plain.onnx")))) == []


def test_int8_without_calibration_is_refused(setup: dict) -> None:
    from boq_edge.calibration import Int8Options

    with pytest.raises(ValueError, match="boq-edge calibrate"):
        Int8Options(calibration=None)


def test_budget_needs_validation_split(setup: dict) -> None:
    from boq_edge.calibration import Int8Options

    with pytest.raises(ValueError, match="validation split"):
        Int8Options(calibration=setup["calib"], max_r1_drop=0.5)


@pytest.mark.slow
def test_qat_tensorrt_qdq_is_lint_clean_and_close(setup: dict) -> None:
    """QAT student → signed Q/DQ ONNX under TensorRT's rules, runnable in ONNX Runtime."""
    bundle = _export(setup, "tensorrt", "qat", qat_epochs=1)
    q = json.loads((bundle / "manifest.json").read_text())["quantization"]
    assert q["method"] == "qat" and q["qat"]["epochs"] == 1 and len(q["qat"]["loss_history"]) == 1
    assert q["qat"]["signed_activations"] and q["lint"]["ok"]
    model = onnx.load(str(bundle / "model.onnx"))
    report = lint_model(model)
    assert report.ok and report.quantized_nodes, [str(v) for v in report.violations[:5]]
    cos = _cosine(_run(bundle, setup["x"], backend="onnxruntime"), setup["ref"])
    assert cos.mean() > 0.97, cos.mean()
    # The manifest names the exporter and opset that wrote this file (QAT: TorchScript at 17, not dynamo at 18).
    from boq_edge.calibration.qat import QAT_EXPORTER

    record = json.loads((bundle / "manifest.json").read_text())["onnx"]
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert record["opset"] == opset == 17 and record["exporter"] == QAT_EXPORTER


@pytest.mark.slow
def test_accuracy_control_holds_the_budget_and_records_it(setup: dict, nordland_dir: Path) -> None:
    """--max-r1-drop on a validation split (not the evaluation frames): the drop is measured and within budget."""
    from boq_edge.calibration import ValidationSpec

    from boq_edge.data import read_benchmark

    val = ValidationSpec(nordland_dir, "aligned", {"frames": "20000:20300"})
    bundle = _export(setup, "onnx", "ac", max_r1_drop=1.0, validation=val)
    q = json.loads((bundle / "manifest.json").read_text())["quantization"]
    assert q["method"] == "accuracy-controlled" and q["max_r1_drop"] == 1.0
    assert q["r1_fp32"] is not None and q["r1_int8"] is not None
    assert q["r1_drop_pp"] == pytest.approx(q["r1_fp32"] - q["r1_int8"], abs=1e-3)
    assert q["r1_drop_pp"] <= 1.0
    split = read_benchmark(nordland_dir, "aligned", frames="20000:20300")
    assert q["validation"] == split.name and q["validation_fingerprint"] == split.fingerprint()
    assert set(q["reverted_to_float"]) <= set(q["float_ops"])


def test_budget_miss_writes_nothing(setup: dict, nordland_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A missed budget raises with the numbers, and no bundle directory is left behind."""
    from boq_edge.calibration import AccuracyBudgetError, Int8Options, ValidationSpec
    from boq_edge.calibration import accuracy_control as ac
    from boq_edge.calibration.ptq_onnx import quantize_onnx
    from boq_edge.export.api import export_model
    from boq_edge.export.options import ExportOptions

    r1 = [40.0]  # FP32 R@1 first, then every INT8 measurement 10.0: a 30 pp drop the search cannot fix

    def search_that_fails(named, out, data, split, budget, *, scheme, r1_fp32, base_float=(), log=None):  # noqa: ANN001, ANN202
        quantize_onnx(named, out, data, scheme=scheme)
        return ac.AccuracyControlResult([], r1_fp32, 10.0, 12)

    monkeypatch.setattr(ac, "recall_at_1", lambda fn, split: r1.pop() if r1 else 10.0)
    monkeypatch.setattr(ac, "accuracy_control_onnx", search_that_fails)
    out = setup["tmp"] / "miss"
    val = ValidationSpec(nordland_dir, "aligned", {"frames": "20000:20040"})
    int8 = Int8Options(calibration=setup["calib"], max_r1_drop=0.5, validation=val)
    with pytest.raises(AccuracyBudgetError, match=r"30.00 pp .*budget of 0.5"):
        export_model(setup["model"], out, ExportOptions("onnx", "int8", int8=int8))
    assert not out.exists()


@pytest.mark.slow
def test_calibration_on_the_evaluation_split_fails_validation(setup: dict, nordland_dir: Path) -> None:
    """`calibrate` without --eval-data on the evaluation frames → export --int8 → validate on those frames: the
    bundle carries its calibration manifest, and validate finds the shared pixels and fails the row."""
    import warnings

    from boq_edge.calibration import FewCalibrationImagesWarning, Int8Options
    from boq_edge.export.api import export_model
    from boq_edge.export.options import ExportOptions

    from boq_edge.data import read_benchmark
    from boq_edge.model import save_checkpoint
    from boq_edge.validate import validate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewCalibrationImagesWarning)
        leaky = build_calibration_set(nordland_dir, 48, seed=1, format="aligned", options={"frames": "34000:"})
    assert leaky.source["leak_check"] is None  # recorded: nobody checked
    ckpt = save_checkpoint(setup["model"], setup["tmp"] / "leak-ref.boq")
    options = ExportOptions("onnx", "int8", int8=Int8Options(calibration=leaky))
    bundle = export_model(ckpt, setup["tmp"] / "leaky", options)
    q = json.loads((bundle / "manifest.json").read_text())["quantization"]
    assert q["calibration_file"] == "calibration.json" and (bundle / "calibration.json").is_file()
    bench = read_benchmark(nordland_dir, "aligned", frames="34000:")
    report = validate([bundle], ckpt, bench, latency_iters=2, warmup=0, progress=False, num_workers=0)
    (row,) = report["artifacts"]
    assert row["status"] == "failed" and "calibration leak" in row["reason"], row
    assert "overlap the evaluation frames" in row["reason"] and "48 of the 48 calibration images" in row["reason"]
