"""TensorRT INT8 as an explicit Q/DQ ONNX model — never an implicit calibrator.

TensorRT deprecated ``IInt8Calibrator`` in 10.1 and removes it in 11; explicit
quantization is the path that stays. The rules (checked by :mod:`lint_qdq`):
signed INT8, zero-point 0, per-channel weight scales on the output-channel axis,
per-tensor activations, Q/DQ on Conv/MatMul/Gemm inputs and nowhere else, so
LayerNorm, Softmax, residual adds and the L2 normalisation compute in higher precision.

The model comes either from ONNX Runtime's static quantizer with the ``trt-s8s8``
scheme (:func:`boq_edge.calibration.ptq_onnx.quantize_onnx`) or from the QAT student's
Q/DQ export (:mod:`boq_edge.calibration.qat`). Both pass through
:func:`enforce_tensorrt_placement`, which makes every float consumer read the float
tensor instead of its dequantized copy and drops Q/DQ pairs nothing INT8 reads, then
:func:`check_tensorrt_qdq`, which refuses to hand over a model the linter rejects.

The same file runs in ONNX Runtime (Q/DQ are standard ops), which is how its accuracy
is measured on machines without TensorRT.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import onnx
from boq_edge.calibration.graph import drop_unused_initializers
from boq_edge.calibration.lint_qdq import QUANTIZED_OPS, LintReport, lint_model

_SHAPE_OPS = ("Reshape", "Transpose", "Unsqueeze", "Squeeze", "Identity")


class QDQLintError(ValueError):
    """A Q/DQ model that breaks the TensorRT rules; the message lists the nodes."""


def _dq_fed(tensor: str, producer: dict[str, onnx.NodeProto]) -> bool:
    t = tensor
    for _ in range(6):
        p = producer.get(t)
        if p is None:
            return False
        if p.op_type == "DequantizeLinear":
            return True
        if p.op_type not in _SHAPE_OPS:
            return False
        t = p.input[0]
    return False


def _is_int8(node: onnx.NodeProto, producer: dict[str, onnx.NodeProto]) -> bool:
    """A Conv/MatMul/Gemm whose data inputs (activation and weight) all come from DequantizeLinear."""
    return node.op_type in QUANTIZED_OPS and all(_dq_fed(t, producer) for t in node.input[:2] if t)


def _reaches_int8_only(node: onnx.NodeProto, producer: dict[str, onnx.NodeProto],
                       consumers: dict[str, list[onnx.NodeProto]], depth: int = 0) -> bool:
    if _is_int8(node, producer):
        return True
    if node.op_type not in _SHAPE_OPS or depth > 4:
        return False
    cons = [c for o in node.output for c in consumers.get(o, [])]
    return bool(cons) and all(_reaches_int8_only(c, producer, consumers, depth + 1) for c in cons)


def read_float_inputs(model: onnx.ModelProto, is_float: Callable[[onnx.NodeProto], bool],
                      reference: onnx.ModelProto | None = None) -> onnx.ModelProto:
    """Nodes for which ``is_float(node)`` holds read the float tensor, not its Q→DQ copy (in place).

    Q/DQ pairs left with no readers are removed. This matters beyond tidiness: ONNX Runtime
    (1.32) quantizes the float weights of any Conv that reads a DequantizeLinear output when
    it loads the model (its ``WeightBiasQuantization`` transformer); on the BN-folded
    MobileNetV2 weights that took descriptor cosine to FP32 from 0.63 to 0.07. A node meant
    to run in float must therefore not read dequantized tensors at all.

    ONNX Runtime's quantizer also deletes a Clip/Relu whose output it quantizes (the Q's
    saturation does the clipping). With ``reference`` (the FP32 model), a float reader of
    such a tensor gets the deleted activation back instead of the unclipped values.
    """
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            if i:
                consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in g.output}
    ref_producer = {o: n for n in reference.graph.node for o in n.output} if reference is not None else {}
    restored: dict[str, str] = {}

    def float_source(t: str) -> str:
        """``t`` as the FP32 model computes it, re-adding an activation the quantizer fused away."""
        rp = ref_producer.get(t)
        p = producer.get(t)
        if rp is None or p is None or rp.name == p.name or rp.op_type not in ("Clip", "Relu"):
            return t
        if t not in restored:
            node = onnx.NodeProto()
            node.CopyFrom(rp)
            node.name = f"{rp.name}_float"
            node.input[0] = rp.input[0] if rp.input[0] in producer else t
            node.output[0] = f"{t}_float"
            have = {i.name for i in g.initializer}
            for init in reference.graph.initializer:  # type: ignore[union-attr]
                if init.name in node.input[1:] and init.name not in have:
                    g.initializer.append(init)  # clip bounds the quantizer dropped with the Clip
            g.node.append(node)
            restored[t] = node.output[0]
        return restored[t]

    for dq in [n for n in g.node if n.op_type == "DequantizeLinear"]:
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue  # a weight DQ (constant input)
        for c in list(consumers.get(dq.output[0], [])):
            if not is_float(c):
                continue
            for k, name in enumerate(c.input):
                if name == dq.output[0]:
                    c.input[k] = float_source(q.input[0])
    # Remove Q/DQ nodes nobody reads any more (repeat: removing a DQ can orphan its Q).
    changed = True
    while changed:
        changed = False
        read = {i for n in g.node for i in n.input if i} | graph_outputs
        keep = [n for n in g.node
                if not (n.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(o in read for o in n.output))]
        if len(keep) != len(g.node):
            changed = True
            del g.node[:]
            g.node.extend(keep)
    drop_unused_initializers(g)
    if restored:
        _toposort(g)
    return model


def _toposort(g: onnx.GraphProto) -> None:
    """Order nodes so every input is produced before it is read (appended nodes moved into place)."""
    available = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending = list(g.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for n in pending:
            if all(i in available for i in n.input):
                ordered.append(n)
                available.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input near node {rest[0].name!r}")
        pending = rest
    del g.node[:]
    g.node.extend(ordered)


def enforce_tensorrt_placement(model: onnx.ModelProto, reference: onnx.ModelProto | None = None) -> onnx.ModelProto:
    """Keep Q/DQ only where an INT8 Conv/MatMul/Gemm reads them (in place; returns ``model``).

    A tensor that feeds both a quantized Conv and a residual Add gets one Q/DQ pair from
    ONNX Runtime (and from NNCF), and the Add then reads the dequantized copy; a Conv left
    in float still reads its dequantized input. Here both read the float tensor again.
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            if i:
                consumers.setdefault(i, []).append(n)
    return read_float_inputs(model, lambda c: not _reaches_int8_only(c, producer, consumers), reference)


def fold_weight_quantizers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Float weight → QuantizeLinear becomes the int8 constant it computes (in place; returns ``model``).

    QAT exporters write weights as float constants with a Q/DQ pair; ONNX Runtime writes
    int8 constants with a DequantizeLinear. Both mean the same arithmetic and TensorRT folds
    both, but the first stores every weight in float: the bundle was as large as the FP32
    model. Rounding is half-to-even, as QuantizeLinear specifies.
    """
    import numpy as np
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant" and n.output}

    def array(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        c = consts.get(name)
        t = next((a.t for a in c.attribute if a.name == "value"), None) if c is not None else None
        return None if t is None else numpy_helper.to_array(t)

    kept, folded = [], []
    for n in model.graph.node:
        has_zp = len(n.input) > 2 and bool(n.input[2])
        w = array(n.input[0]) if n.op_type == "QuantizeLinear" and n.input[0] in inits else None
        scale = array(n.input[1]) if w is not None else None
        zp = array(n.input[2]) if w is not None and has_zp else None
        if w is None or scale is None or (has_zp and zp is None):
            kept.append(n)
            continue
        axis = next((int(a.i) for a in n.attribute if a.name == "axis"), 1)
        shape = [1] * w.ndim
        if scale.size > 1:
            shape[axis % w.ndim] = -1
        dtype = zp.dtype if zp is not None else np.uint8
        z = 0.0 if zp is None else (zp.reshape(shape) if zp.size > 1 else zp.reshape(-1)[0]).astype(np.float64)
        lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
        q = np.clip(np.rint(w / scale.reshape(shape)) + z, lo, hi).astype(dtype)
        folded.append(numpy_helper.from_array(q, n.output[0]))
    if not folded:
        return model
    del model.graph.node[:]
    model.graph.node.extend(kept)
    drop_unused_initializers(model.graph)
    model.graph.initializer.extend(folded)
    return model


def check_tensorrt_qdq(model: onnx.ModelProto, source: str = "model") -> LintReport:
    """Lint ``model``; raise :class:`QDQLintError` naming every violating node."""
    report = lint_model(model)
    if report.violations:
        lines = "; ".join(str(v) for v in report.violations[:8])
        more = f" (+{len(report.violations) - 8} more)" if len(report.violations) > 8 else ""
        raise QDQLintError(f"{source} breaks the TensorRT Q/DQ rules: {lines}{more}")
    if report.num_dequantize == 0:
        raise QDQLintError(f"{source} has no Q/DQ nodes: it is not an explicit INT8 model")
    return report


def quantize_tensorrt_qdq(fp32_onnx: str | os.PathLike, out_path: str | os.PathLike, calibration,  # noqa: ANN001
                          **kwargs) -> tuple[list[str], LintReport]:
    """PTQ to a lint-clean TensorRT Q/DQ ONNX; returns (nodes left in float, lint report)."""
    from boq_edge.calibration.ptq_onnx import quantize_onnx

    float_nodes = quantize_onnx(fp32_onnx, out_path, calibration, scheme="trt-s8s8", **kwargs)
    report = check_tensorrt_qdq(onnx.load(str(out_path), load_external_data=False), str(out_path))
    return float_nodes, report


__all__ = ["QDQLintError", "check_tensorrt_qdq", "enforce_tensorrt_placement", "quantize_tensorrt_qdq",
           "read_float_inputs"]
