"""TensorRT: real engine builds where TensorRT and a GPU exist; the build/run code paths against a stub elsewhere."""

from __future__ import annotations

import shutil
import subprocess
import sys
import types
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")

from boq_edge.export.api import export_model  # noqa: E402
from boq_edge.export.options import ExportOptions  # noqa: E402
from boq_edge.export.targets import tensorrt as tensorrt_export  # noqa: E402

from boq_edge.model import build_model, get_preset  # noqa: E402
from boq_edge.preprocess import preprocess_batch  # noqa: E402
from boq_edge.runtime import (  # noqa: E402
    BundleError,
    load_runtime,
    read_manifest,
    tensorrt_backend,  # noqa: E402
)

HAVE_TRT = tensorrt_export.tensorrt_status()[0]


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(get_preset("mobilenetv2-2048").with_image_size(64, 64))


@pytest.fixture(scope="module")
def pending(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    options = ExportOptions("tensorrt", batch_range=(1, 2, 4),
                            target_options=tensorrt_export.TensorRTOptions(build_engine=False))
    return export_model(tiny_model, tmp_path_factory.mktemp("trt") / "b", options)


def _fake_tensorrt(plan: bytes = b"PLAN-BYTES") -> types.SimpleNamespace:
    """Just enough of the tensorrt module for build_engine / TensorRTBackend to run their logic."""

    class ILogger:
        Severity = types.SimpleNamespace(ERROR="E", INTERNAL_ERROR="IE", WARNING="W")

        def __init__(self) -> None:
            pass

    builder = mock.MagicMock(name="builder")
    network = builder.create_network.return_value
    network.get_input.return_value = types.SimpleNamespace(name="images", shape=(-1, 3, 64, 64))
    builder.build_serialized_network.return_value = plan
    config = builder.create_builder_config.return_value
    config.get_timing_cache.return_value.serialize.return_value = b"CACHE"
    parser = mock.MagicMock(name="parser")
    parser.parse_from_file.return_value = True
    engine = mock.MagicMock(name="engine")
    engine.get_tensor_dtype.return_value = "float32"
    shapes = {}
    context = engine.create_execution_context.return_value
    context.set_input_shape.side_effect = lambda name, shape: shapes.update(last=shape) or 1 <= shape[0] <= 4
    context.get_tensor_shape.side_effect = lambda name: (shapes["last"][0], 2048)
    runtime = mock.MagicMock(name="runtime")
    runtime.deserialize_cuda_engine.return_value = engine
    return types.SimpleNamespace(
        __version__="10.9.0", ILogger=ILogger, Logger=mock.MagicMock(WARNING="W"),
        Builder=mock.MagicMock(return_value=builder), OnnxParser=mock.MagicMock(return_value=parser),
        Runtime=mock.MagicMock(return_value=runtime),
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=1),
        BuilderFlag=types.SimpleNamespace(TF32="TF32"), MemoryPoolType=types.SimpleNamespace(WORKSPACE="WS"),
        nptype=lambda dt: np.float32, builder=builder, config=config, shapes=shapes)


def test_pending_bundle_says_what_to_run(pending: Path) -> None:
    m = read_manifest(pending)
    assert m.target == "tensorrt" and m.section("tensorrt")["engine"] == "pending"
    assert m.section("tensorrt")["build_command"] == "boq-edge build-engine b"
    with pytest.raises(BundleError, match="boq-edge build-engine"):
        load_runtime(pending)


def test_build_and_run_against_stub(pending: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exercises the build code (strongly typed, profile, workspace, timing cache, manifest update) and the
    backend's shape handling without TensorRT; real builds are covered by the tensorrt-marked test."""
    bundle = Path(shutil.copytree(pending, tmp_path / "b"))
    trt = _fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(tensorrt_export, "cuda_gpu", lambda: tensorrt_export.GpuInfo("Fake GPU", "8.7"))
    opts = tensorrt_export.TensorRTOptions(workspace_gib=1.0, timing_cache=tmp_path / "shared.cache")
    m = tensorrt_export.build_engine_for_bundle(bundle, opts)
    assert (bundle / "model.engine").read_bytes() == b"PLAN-BYTES"  # the plan as is: no header
    assert (bundle / "timing.cache").read_bytes() == b"CACHE" == (tmp_path / "shared.cache").read_bytes()
    assert m.section("tensorrt")["engine"] == "built" and m.section("tensorrt")["gpu"] == "Fake GPU"
    assert m.toolchain["tensorrt"] == "10.9.0"
    assert set(m.files) == {"model.onnx", "model.engine", "timing.cache"}
    trt.builder.create_network.assert_called_once_with(1 << 1)  # STRONGLY_TYPED on TensorRT 10
    trt.config.set_memory_pool_limit.assert_called_once_with("WS", 1 << 30)
    trt.config.clear_flag.assert_called_once_with("TF32")
    trt.config.set_flag.assert_not_called()  # no weak-typing precision flags, ever
    profile = trt.builder.create_optimization_profile.return_value
    profile.set_shape.assert_called_once_with("images", (1, 3, 64, 64), (2, 3, 64, 64), (4, 3, 64, 64))
    trt.config.set_timing_cache.assert_called_once()
    with pytest.raises(BundleError, match="already has an engine"):
        tensorrt_export.build_engine_for_bundle(bundle, opts)

    class FakeCuda:
        name = "fake"

        def device_name(self) -> str:
            return "Fake GPU"

        def run(self, context, in_name, out_name, batch, out_shape, out_dtype):
            return np.tile(batch.reshape(batch.shape[0], -1)[:, :1], (1, out_shape[1])).astype(out_dtype) + 1

    monkeypatch.setattr(tensorrt_backend, "cuda_memory", lambda index=0: FakeCuda())
    rt = load_runtime(bundle)
    x = np.random.default_rng(0).standard_normal((5, 3, 64, 64)).astype(np.float32)
    out = rt(x)
    assert out.shape == (5, 2048) and trt.shapes["last"][0] == 1  # chunks of 4, then 1
    assert rt.info()["gpu"] == "Fake GPU" and rt.info()["tensorrt"] == "10.9.0"


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TRT, reason="needs the tensorrt package and an NVIDIA GPU")
def test_real_engine_parity(tmp_path: Path, mobilenet_weights: Path, nordland_dir: Path) -> None:
    torch.manual_seed(0)
    model = build_model("mobilenetv2-2048", mobilenet_weights)
    files = sorted((nordland_dir / "winter").glob("images-3*.png"))[:8]
    x = preprocess_batch(files, model.config.preprocessing)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    for fp16, threshold in ((False, 0.99999), (True, 0.999)):
        options = ExportOptions("trt", "fp16" if fp16 else "fp32", batch_range=(1, 4, 8))
        bundle = export_model(model, tmp_path / f"b{int(fp16)}", options)
        m = read_manifest(bundle)
        assert m.section("tensorrt")["engine"] == "built"
        out = load_runtime(bundle)(x)
        assert float((out * ref).sum(1).min()) >= threshold
        import tensorrt as trt

        plan = (bundle / "model.engine").read_bytes()
        assert trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan) is not None
        if shutil.which("trtexec"):
            r = subprocess.run(["trtexec", f"--loadEngine={bundle / 'model.engine'}", "--shapes=images:1x3x224x224"],
                               capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, r.stdout[-2000:]
