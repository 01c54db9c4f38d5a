"""ONNX bundles of the MobileNetV2 preset (ImageNet backbone) vs torch FP32 on real Nordland images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from boq_edge.export.api import export_model  # noqa: E402
from boq_edge.export.onnx_export import check_onnx  # noqa: E402
from boq_edge.export.options import ExportOptions  # noqa: E402

from boq_edge.model import build_model  # noqa: E402
from boq_edge.preprocess import preprocess_batch  # noqa: E402
from boq_edge.runtime import load_runtime, read_manifest  # noqa: E402


def eval_images(nordland_dir: Path, n: int = 16) -> list[Path]:
    """n/2 summer + n/2 winter frames of the evaluation split (>= 25000), blank files skipped."""
    out: list[Path] = []
    for season in ("summer", "winter"):
        files = [p for p in sorted((nordland_dir / season).glob("images-*.png"))
                 if int(p.stem.split("-")[1]) >= 25000 and p.stat().st_size > 200]
        out.extend(files[:: len(files) // (n // 2)][: n // 2])
    return out


def cos_min(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(1).min())


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, mobilenet_weights: Path, nordland_dir: Path):
    torch.manual_seed(0)
    model = build_model("mobilenetv2-2048", mobilenet_weights)
    files = eval_images(nordland_dir)
    x = preprocess_batch(files, model.config.preprocessing)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    tmp = tmp_path_factory.mktemp("onnx")
    fp32 = export_model(model, tmp / "fp32", ExportOptions("onnx"))
    fp16 = export_model(model, tmp / "fp16", ExportOptions("onnxruntime", "fp16"))
    return files, x, ref, fp32, fp16


def test_fp32_parity_and_dynamic_batch(setup) -> None:
    files, x, ref, fp32, _ = setup
    rt = load_runtime(fp32, threads=2)
    out = rt(x)
    assert out.shape == ref.shape and out.dtype == np.float32
    assert cos_min(out, ref) >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert cos_min(rt.embed(files), ref) >= 0.99999  # paths in, same answer
    sess = ort.InferenceSession(str(fp32 / "model.onnx"), providers=["CPUExecutionProvider"])
    for b in (1, 3):  # the ONNX graph itself takes any batch
        y = sess.run(["descriptors"], {"images": x[:b]})[0]
        np.testing.assert_allclose(y, out[:b], atol=1e-5)


def test_graph_contract(setup) -> None:
    fp32 = setup[3]
    check_onnx(fp32 / "model.onnx")  # onnx.checker full check, I/O names, dynamic batch, float32 I/O
    model = onnx.load(str(fp32 / "model.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["descriptors"]
    m = read_manifest(fp32)
    assert m.precision == "fp32" and m.target == "onnx" and m.folding["applied"] is True


def test_fp16_parity_and_fp32_islands(setup) -> None:
    _, x, ref, _, fp16 = setup
    out = load_runtime(fp16, threads=2)(x)
    assert cos_min(out, ref) >= 0.999
    model = onnx.shape_inference.infer_shapes(onnx.load(str(fp16 / "model.onnx")))
    types = {v.name: v.type.tensor_type.elem_type for v in
             [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert any(i.data_type == f16 for i in model.graph.initializer), "weights were not converted to FP16"
    kept = [n for n in model.graph.node if n.op_type in ("LayerNormalization", "Softmax", "ReduceL2")]
    assert kept and all(types[n.input[0]] == f32 and types[n.output[0]] == f32 for n in kept)
    assert types["images"] == f32 and types["descriptors"] == f32
    report = read_manifest(fp16).onnx["fp16"]
    assert report["kept_fp32_normalize_tail"] and report["kept_fp32_large_constant_nodes"]
