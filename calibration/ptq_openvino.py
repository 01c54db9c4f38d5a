"""OpenVINO INT8: NNCF post-training quantization of the OpenVINO model.

The OpenVINO model is read from the exporter's FP32 ONNX, so INT8 and FP32 artifacts
come from the same graph. NNCF's defaults (``performance`` preset: symmetric INT8 weights
per channel and activations per tensor, fast bias correction) gave 14.9 ms vs 129 ms
torch FP32 on resnet50-16384 here. The attention MatMuls and Softmax are put in NNCF's
ignored scope, the same placement as the ONNX Runtime path, because their probabilities
sit below one INT8 step.

Weights are quantized with NNCF's overflow fix on every layer (7-bit weight range). CPUs
without VNNI (AVX2-only, like the build machine here) compute u8×s8 products through 16-bit
intermediates that saturate with full 8-bit weights: with NNCF's default (fix on the first
layer only) the Nordland-trained MobileNetV2 BoQ came out at descriptor cosine 0.05 to
FP32 on such a CPU, 0.72 with the fix everywhere. A bundle does not know its device's CPU,
so it is made to be correct on all of them.

OpenVINO expresses INT8 as FakeQuantize nodes that its CPU plugin turns into integer
kernels; that is OpenVINO's explicit form (there is no calibrator inside the runtime).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

# OpenVINO's conversion fuses MatMul-Softmax-MatMul into one ScaledDotProductAttention op;
# unfused MatMuls keep their ONNX node names, found by pattern in boq_edge.calibration.graph.
_ATTENTION_TYPES = ("ScaledDotProductAttention", "SoftMax", "Softmax")


def read_fp32(fp32_onnx: str | os.PathLike) -> Any:
    import openvino as ov

    return ov.convert_model(str(fp32_onnx))


def ignored_scope_for(ov_model: Any, onnx_names: Sequence[str]) -> Any:
    """An NNCF ignored scope of the OpenVINO ops that carry these ONNX node names."""
    import nncf

    wanted = set(onnx_names)
    names, types = [], set()
    for op in ov_model.get_ordered_ops():
        n = op.get_friendly_name()
        # The ONNX frontend splits Conv+bias into "<name>/WithoutBiases" + an Add named <name>.
        if n in wanted or n.split("/")[0] in wanted:
            names.append(n)
        if op.get_type_name() in _ATTENTION_TYPES:
            types.add(op.get_type_name())  # the ONNX MatMul-Softmax-MatMul, fused on conversion
    if not names and not types:
        return None
    return nncf.IgnoredScope(names=names, types=sorted(types), validate=False)


def float_scope(ov_model: Any, fp32_onnx: str | os.PathLike, float_nodes: Sequence[str] = ()) -> Any:
    """The ignored scope every OpenVINO INT8 path starts from: attention plus ``float_nodes`` (ONNX names)."""
    import onnx
    from boq_edge.calibration.graph import attention_nodes

    att = attention_nodes(onnx.load(str(fp32_onnx), load_external_data=False))
    return ignored_scope_for(ov_model, list(dict.fromkeys([*att, *float_nodes])))


def quiet_nncf() -> None:
    """NNCF logs every ignored node at INFO; its progress bars are enough for PTQ."""
    import logging

    logging.getLogger("nncf").setLevel(logging.WARNING)


def advanced_parameters() -> Any:
    """NNCF settings every OpenVINO INT8 path here uses (overflow fix on all layers, see above)."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    return AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE)


def calibration_dataset(data: np.ndarray) -> Any:
    import nncf

    return nncf.Dataset([data[i : i + 1] for i in range(len(data))])


def quantize_openvino(
    fp32_onnx: str | os.PathLike,
    calibration: np.ndarray,
    *,
    float_nodes: Sequence[str] = (),
    subset_size: int | None = None,
) -> tuple[Any, list[str]]:
    """NNCF PTQ of the OpenVINO model read from ``fp32_onnx``; returns (ov.Model, names kept float)."""
    import nncf

    quiet_nncf()
    ov_model = read_fp32(fp32_onnx)
    scope = float_scope(ov_model, fp32_onnx, float_nodes)
    q = nncf.quantize(ov_model, calibration_dataset(calibration),
                      subset_size=subset_size or len(calibration), ignored_scope=scope,
                      advanced_parameters=advanced_parameters())
    return q, (list(scope.names) + [f"type:{t}" for t in scope.types]) if scope else []


def save_openvino(model: Any, xml_path: str | os.PathLike) -> None:
    """Write model.xml + model.bin (FP32 constants, INT8 weights) via temp names, then rename."""
    import tempfile
    from pathlib import Path

    import openvino as ov

    xml = Path(xml_path)
    xml.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=xml.parent, prefix=".ov-") as tmp:
        t = Path(tmp) / xml.name
        ov.save_model(model, str(t), compress_to_fp16=False)
        os.replace(t.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(t, xml)


def compile_f32(model: Any, threads: int | None = None) -> Any:
    """Compile on CPU with f32 inference precision.

    OpenVINO's CPU default on bf16-capable processors is bf16 for the float parts, which
    alone moved descriptors to cosine 0.977 here; measurements use f32 so that the number
    reported is the INT8 error.
    """
    import openvino as ov

    cfg: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = threads
    return ov.Core().compile_model(model, "CPU", cfg)


__all__ = ["advanced_parameters", "calibration_dataset", "compile_f32", "float_scope", "ignored_scope_for",
           "quantize_openvino", "quiet_nncf", "read_fp32", "save_openvino"]
