"""ResNet-50 and DINOv2 presets (random init) through the ONNX and OpenVINO emitters at a reduced input size.

Full-size numbers come from ``benchmarks/parity.py``; this keeps the same code path in CI at a
size two CPU cores export in seconds (the folded graph is the same at any size).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

from boq_edge.export.fold import fold  # noqa: E402
from boq_edge.export.onnx_export import convert_fp16, export_fp32_onnx  # noqa: E402
from boq_edge.export.targets.openvino import emit_openvino  # noqa: E402

from boq_edge.model import build_model, get_preset  # noqa: E402
from boq_edge.preprocess import preprocess_batch  # noqa: E402


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]


def _ov(xml: Path, x: np.ndarray) -> np.ndarray:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(xml)), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                                       "INFERENCE_NUM_THREADS": 2})
    return compiled(x)[0]


def _cos_min(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


@pytest.mark.slow
@pytest.mark.parametrize("preset,size", [("resnet50-16384", (128, 128)), ("dinov2-12288", (126, 126))])
def test_large_preset_parity(preset: str, size: tuple[int, int], tmp_path: Path, nordland_dir: Path) -> None:
    torch.manual_seed(0)
    model = build_model(get_preset(preset).with_image_size(*size))
    files = sorted((nordland_dir / "summer").glob("images-3*.png"))[200:206]
    files += sorted((nordland_dir / "winter").glob("images-3*.png"))[200:206]
    x = preprocess_batch(files, model.config.preprocessing)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    fp32 = export_fp32_onnx(fold(model), tmp_path / "model.onnx")
    fp16 = tmp_path / "model_fp16.onnx"
    convert_fp16(fp32, fp16)
    emit_openvino(fp32, tmp_path / "ov32")
    emit_openvino(fp16, tmp_path / "ov16")
    assert _cos_min(_ort(fp32, x), ref) >= 0.99999
    assert _cos_min(_ov(tmp_path / "ov32/openvino/model.xml", x), ref) >= 0.99999
    assert _cos_min(_ort(fp16, x), ref) >= 0.999
    assert _cos_min(_ov(tmp_path / "ov16/openvino/model.xml", x), ref) >= 0.999
    np.testing.assert_allclose(_ort(fp32, x[:1]), _ort(fp32, x)[:1], atol=1e-5)  # dynamic batch
