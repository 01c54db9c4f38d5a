"""Post-training INT8 of the FP32 ONNX model with ONNX Runtime's static quantizer.

Two schemes share this code:

:attr:`Scheme.ORT_U8S7` (target ``onnx``): uint8 activations, int8 per-channel weights,
ONNX Runtime's own Q/DQ placement (Conv/MatMul outputs, Add, Clip... as its CPU kernels fuse them).
This is the fast CPU path: u8s8 maps onto VNNI/AVX2 integer kernels, while s8s8 Q/DQ on
the CPU provider runs *slower* than FP32 (263 ms vs ~85 ms on resnet50-16384, measured
here). The attention MatMuls and Softmax stay in float: their probabilities (~1/N each)
fall below one INT8 step, and quantizing them drops descriptor cosine to ~0.5.

Its weights use 7 bits (``reduce_range``): on x86 CPUs without VNNI the u8×s8
kernels saturate their 16-bit intermediates with full-range weights — measured here on an
AVX2-only CPU, descriptor cosine to FP32 0.08 with 8-bit weights vs 0.55 with 7-bit, the
latter equal to the exact (unfused) Q/DQ arithmetic. A bundle does not know its device's
CPU, so it is made to be correct on all of them.

:attr:`Scheme.TRT_S8S8` (target ``tensorrt``): see :mod:`boq_edge.calibration.qdq_tensorrt`;
the same quantizer with signed symmetric activations and Q/DQ only on Conv/MatMul/Gemm inputs.

Calibration statistics are collected once per scheme and cached in a file, so the
accuracy-control search (:mod:`boq_edge.calibration.accuracy_control`), which re-quantizes
with different float fallbacks, never re-runs calibration.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from boq_edge.calibration.graph import attention_nodes, weighted_nodes, with_activations
from boq_edge.calibration.options import Scheme
from boq_edge.export.onnx_graph import cleanup, ensure_node_names

SCHEMES = (Scheme.ORT_U8S7, Scheme.TRT_S8S8)  # the schemes ONNX Runtime's quantizer writes here
# Ops ONNX Runtime's CPU provider runs as integer kernels (QLinearConv/MatMul/Add/Mul/Concat/
# pooling) or passes through (shape ops; Clip/Relu fold into the preceding Q range).
# LayerNormalization, Softmax and the L2 normalisation are not listed: there is no integer
# kernel for them, so Q/DQ around them would only add error and time.
ORT_CPU_INT8_OPS = ("Conv", "MatMul", "Gemm", "Add", "Mul", "Concat", "Clip", "Relu", "MaxPool", "AveragePool",
                    "GlobalAveragePool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Resize")


def _reader(model: onnx.ModelProto, data: np.ndarray, batch: int = 8) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    name = model.graph.input[0].name

    class _Arrays(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.i = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.i >= len(data):
                return None
            x = data[self.i : self.i + batch]
            self.i += batch
            return {name: np.ascontiguousarray(x, dtype=np.float32)}

        def __len__(self) -> int:
            return (len(data) + batch - 1) // batch

        def set_range(self, start_index: int, end_index: int) -> None:  # CalibStridedMinMax protocol
            self.i = start_index

    return _Arrays()


def scheme_options(scheme: Scheme) -> dict[str, Any]:
    """``quantize_static`` keyword arguments of a scheme."""
    from onnxruntime.quantization import QuantFormat, QuantType

    scheme = Scheme(scheme)  # the enum or its value
    if scheme is Scheme.ORT_U8S7:
        return dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True, reduce_range=True, op_types_to_quantize=list(ORT_CPU_INT8_OPS),
                    extra_options={"WeightSymmetric": True})
    if scheme is Scheme.TRT_S8S8:
        return dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    per_channel=True, op_types_to_quantize=["Conv", "MatMul", "Gemm"],
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
    raise ValueError(f"ONNX Runtime's quantizer does not write scheme {scheme}; it writes {', '.join(SCHEMES)}")


def prepare_fp32(fp32_onnx: str | os.PathLike, work_dir: str | os.PathLike) -> Path:
    """A copy of the FP32 model with every node named (exclusion lists are by name)."""
    model = onnx.load(str(fp32_onnx))
    ensure_node_names(model)
    out = Path(work_dir) / "fp32_named.onnx"
    onnx.save(model, str(out))
    return out


def quantize_onnx(
    fp32_onnx: str | os.PathLike,
    out_path: str | os.PathLike,
    calibration: np.ndarray,
    *,
    scheme: Scheme = Scheme.ORT_U8S7,
    float_nodes: Sequence[str] = (),
    keep_attention_float: bool = True,
    cache_path: str | os.PathLike | None = None,
) -> list[str]:
    """Quantize ``fp32_onnx`` into ``out_path``; returns the node names left in float.

    ``calibration`` is a float32 NCHW array of preprocessed calibration images.
    ``float_nodes`` are extra nodes to leave in float (accuracy control). With ``cache_path``
    the calibration ranges are stored there on the first call and reused afterwards.
    """
    from onnxruntime.quantization import quantize_static

    scheme = Scheme(scheme)
    model = onnx.load(str(fp32_onnx))
    if any(not n.name for n in model.graph.node):
        raise ValueError(f"{fp32_onnx} has unnamed nodes; pass it through prepare_fp32() first")
    opts = scheme_options(scheme)
    excluded = list(attention_nodes(model)) if keep_attention_float else []
    extra = list(float_nodes)
    if scheme is Scheme.ORT_U8S7:
        extra = with_activations(model, extra)
    excluded += [n for n in extra if n not in excluded]
    cache = Path(cache_path) if cache_path is not None else None
    with tempfile.TemporaryDirectory(prefix="boq-int8-") as tmp:
        tmp_out = Path(tmp) / "model.onnx"
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # quantize_static's "consider pre-processing" advice, printed on every call
        try:
            quantize_static(
                str(fp32_onnx), str(tmp_out),
                calibration_data_reader=None if cache is not None and cache.is_file() else _reader(model, calibration),
                nodes_to_exclude=excluded,
                calibration_cache_path=str(cache) if cache is not None else None,
                **opts,
            )
        finally:
            root.setLevel(level)
        q = onnx.load(str(tmp_out))
        from boq_edge.calibration.qdq_tensorrt import enforce_tensorrt_placement, read_float_inputs

        if scheme is Scheme.TRT_S8S8:
            q = enforce_tensorrt_placement(q, model)
        else:  # nodes left in float must not read dequantized tensors (see read_float_inputs)
            fl = set(excluded)
            q = read_float_inputs(q, lambda n: n.name in fl and n.op_type in ("Conv", "ConvTranspose", "Gemm",
                                                                               "MatMul"), model)
        save_int8_onnx(q, out_path)
    return excluded


def save_int8_onnx(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Write an INT8 model atomically, without the exporter's per-node metadata.

    The torch exporter annotates every node with its Python stack trace (the build
    machine's file paths), FX node and module scopes, plus intermediate shapes
    (``value_info``) that runtimes re-infer: about 0.3 MB on the MobileNetV2 BoQ, a fifth
    of its INT8 file. Shipped INT8 models do without them (and without initializers no
    node reads); the FP32 model keeps them because the INT8 stage maps its nodes back to
    torch layers through the scopes.
    """
    from boq_edge.fileio import atomic_write_bytes

    cleanup(model)
    g = model.graph
    for n in g.node:
        del n.metadata_props[:]
    del g.value_info[:]
    _compact(g)
    atomic_write_bytes(path, model.SerializeToString())


def _compact(g: onnx.GraphProto) -> None:
    """Constant nodes become initializers; long intermediate tensor names become ``t<k>``.

    The TorchScript exporter (QAT) names every tensor by its full module path twice over
    (~0.2 MB of strings on the MobileNetV2 BoQ). Node names, which reports and manifests
    quote, are kept; graph inputs and outputs keep their names.
    """
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in g.node for a in n.attribute):
        return  # control flow: subgraphs may read outer names; leave the graph as it is
    keep: list[onnx.NodeProto] = []
    for n in g.node:
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(n.attribute[0].t)
            t.name = n.output[0]
            g.initializer.append(t)
        else:
            keep.append(n)
    if len(keep) != len(g.node):
        del g.node[:]
        g.node.extend(keep)
    fixed = {v.name for v in g.input} | {v.name for v in g.output} | {""}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if name in fixed or len(name) <= 16:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for t in g.initializer:
        t.name = short(t.name)
    for n in g.node:
        for k, name in enumerate(n.input):
            n.input[k] = short(name)
        for k, name in enumerate(n.output):
            n.output[k] = short(name)


def candidate_nodes(fp32_onnx: str | os.PathLike, scheme: Scheme = Scheme.TRT_S8S8) -> list[str]:
    """Quantized nodes the accuracy control may send back to float, in graph order.

    For the TensorRT scheme those are the weight-bearing Conv/MatMul/Gemm; ONNX Runtime's
    u8s7 placement also quantizes Add/Mul/Concat/pooling, which can cost as much.
    """
    model = onnx.load(str(fp32_onnx), load_external_data=False)
    att = set(attention_nodes(model))
    if Scheme(scheme) is Scheme.TRT_S8S8:
        return [n for n in weighted_nodes(model) if n not in att]
    compute = {"Conv", "MatMul", "Gemm", "Add", "Mul", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool"}
    weighted = set(weighted_nodes(model))
    return [n.name for n in model.graph.node
            if n.name not in att and n.op_type in compute and (n.op_type not in ("MatMul",) or n.name in weighted)]


__all__ = ["ORT_CPU_INT8_OPS", "SCHEMES", "candidate_nodes", "prepare_fp32", "quantize_onnx", "save_int8_onnx",
           "scheme_options"]
