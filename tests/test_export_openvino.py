"""OpenVINO bundles of the MobileNetV2 preset vs torch FP32 on real Nordland images, explicit f32 CPU precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("openvino")
pytest.importorskip("onnx")

from boq_edge.export.api import export_model  # noqa: E402
from boq_edge.export.options import ExportOptions  # noqa: E402

from boq_edge.model import build_model  # noqa: E402
from boq_edge.preprocess import preprocess_batch  # noqa: E402
from boq_edge.runtime import load_runtime, read_manifest  # noqa: E402


def eval_images(nordland_dir: Path, n: int = 16) -> list[Path]:
    out: list[Path] = []
    for season in ("summer", "winter"):
        files = [p for p in sorted((nordland_dir / season).glob("images-*.png"))
                 if int(p.stem.split("-")[1]) >= 25000 and p.stat().st_size > 200]
        out.extend(files[:: len(files) // (n // 2)][: n // 2])
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, mobilenet_weights: Path, nordland_dir: Path):
    torch.manual_seed(0)
    model = build_model("mobilenetv2-2048", mobilenet_weights)
    x = preprocess_batch(eval_images(nordland_dir), model.config.preprocessing)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    tmp = tmp_path_factory.mktemp("ov")
    return (x, ref, export_model(model, tmp / "fp32", ExportOptions("ov")),
            export_model(model, tmp / "fp16", ExportOptions("openvino", "fp16")))


@pytest.mark.parametrize("variant,threshold", [("fp32", 0.99999), ("fp16", 0.999)])
def test_parity(setup, variant: str, threshold: float) -> None:
    x, ref, fp32, fp16 = setup
    bundle = fp32 if variant == "fp32" else fp16
    rt = load_runtime(bundle, threads=2)
    out = rt(x)
    assert float((out * ref).sum(1).min()) >= threshold
    info = rt.info()
    assert info["backend"] == "openvino" and info["precision"] == variant
    # never left to the plugin: bf16 would be picked silently on AMX / AVX512-BF16 CPUs
    assert info["inference_precision_requested"] == "f32" and info["inference_precision"] == "f32"
    m = read_manifest(bundle)
    assert m.inference_precision == "f32"
    assert set(m.files) == {"openvino/model.xml", "openvino/model.bin"}


def test_inference_precision_is_applied(setup) -> None:
    """The recorded precision is what the compiled model uses; an override is reported truthfully."""
    x, ref, fp32, _ = setup
    rt = load_runtime(fp32, threads=2, inference_precision="f32")
    assert rt.info()["inference_precision"] == "f32"
    with pytest.raises(ValueError, match="unknown OpenVINO inference precision"):
        load_runtime(fp32, inference_precision="int4")
    np.testing.assert_allclose(np.linalg.norm(rt(x[:2]), axis=1), 1.0, atol=1e-5)
