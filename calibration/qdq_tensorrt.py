"""TensorRT INT8 as an explicit Q/DQ ONNX model — never an implicit calibrator.

TensorRT deprecated ``IInt8Calibrator`` in 10.1 and removes it in 11; explicit
quantization is the path that stays. The rules (checked by :mod:`lint_qdq`):
signed INT8, zero-point 0, per-channel weight scales on the output-channel axis,
per-tensor activations, Q/DQ on Conv/MatMul/Gemm inputs and nowhere else, so
LayerNorm, Softmax, residual adds and the L2 normalisation compute in higher precision.

The model comes either from ONNX Runtime's static quantizer in the ``qdq-s8s8-tensorrt``
scheme (:func:`boq_edge.calibration.ptq_onnx.quantize_onnx`) or from the QAT student's
Q/DQ export (:mod:`boq_edge.calibration.qat`). Both pass through
:func:`enforce_tensorrt_placement`, which makes every float consumer read the float
tensor instead of its dequantized copy and drops Q/DQ pairs nothing INT8 reads, then
:func:`check_tensorrt_qdq`, which refuses to hand over a model the linter rejects.

The same file runs in ONNX Runtime (Q/DQ are standard ops), which is how its accuracy
is measured on machines without TensorRT.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
from boq_edge.calibration.lint_qdq import QUANTIZED_OPS, LintReport, lint_model
from boq_edge.export.onnx_graph import GraphIndex, cleanup, toposort


class QDQLintError(ValueError):
    """A Q/DQ model that breaks the TensorRT rules; the message lists the nodes."""


def _is_int8(node: onnx.NodeProto, g: GraphIndex) -> bool:
    """A Conv/MatMul/Gemm whose data inputs (activation and weight) all come from DequantizeLinear."""
    return node.op_type in QUANTIZED_OPS and all(g.source(t, "DequantizeLinear", hops=6) for t in node.input[:2] if t)


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
    g = GraphIndex(model)
    ref = GraphIndex(reference) if reference is not None else None
    restored: dict[str, str] = {}

    def float_source(t: str) -> str:
        """``t`` as the FP32 model computes it, re-adding an activation the quantizer fused away."""
        rp = ref.producer.get(t) if ref is not None else None
        p = g.producer.get(t)
        if ref is None or rp is None or p is None or rp.name == p.name or rp.op_type not in ("Clip", "Relu"):
            return t
        if t not in restored:
            node = onnx.NodeProto()
            node.CopyFrom(rp)
            node.name = f"{rp.name}_float"
            node.input[0] = rp.input[0] if rp.input[0] in g.producer else t
            node.output[0] = f"{t}_float"
            have = {i.name for i in model.graph.initializer}
            for init in ref.graph.initializer:
                if init.name in node.input[1:] and init.name not in have:
                    model.graph.initializer.append(init)  # clip bounds the quantizer dropped with the Clip
            model.graph.node.append(node)
            restored[t] = node.output[0]
        return restored[t]

    for dq in [n for n in g.nodes if n.op_type == "DequantizeLinear"]:
        q = g.producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue  # a weight DQ (constant input)
        for c in list(g.consumers.get(dq.output[0], [])):
            if not is_float(c):
                continue
            for k, name in enumerate(c.input):
                if name == dq.output[0]:
                    c.input[k] = float_source(q.input[0])
    cleanup(model)  # Q/DQ pairs nobody reads any more, and their scales
    if restored:
        toposort(model)
    return model


def enforce_tensorrt_placement(model: onnx.ModelProto, reference: onnx.ModelProto | None = None) -> onnx.ModelProto:
    """Keep Q/DQ only where an INT8 Conv/MatMul/Gemm reads them (in place; returns ``model``).

    A tensor that feeds both a quantized Conv and a residual Add gets one Q/DQ pair from
    ONNX Runtime (and from NNCF), and the Add then reads the dequantized copy; a Conv left
    in float still reads its dequantized input. Here both read the float tensor again.
    """
    g = GraphIndex(model)
    return read_float_inputs(model, lambda c: not g.only_through_shape_ops(c, lambda n: _is_int8(n, g), max_depth=4),
                             reference)


def fold_weight_quantizers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Float weight → QuantizeLinear becomes the int8 constant it computes (in place; returns ``model``).

    QAT exporters write weights as float constants with a Q/DQ pair; ONNX Runtime writes
    int8 constants with a DequantizeLinear. Both mean the same arithmetic and TensorRT folds
    both, but the first stores every weight in float: the bundle was as large as the FP32
    model. Rounding is half-to-even, as QuantizeLinear specifies.
    """
    import numpy as np
    from onnx import numpy_helper

    g = GraphIndex(model)
    inits = {t.name for t in model.graph.initializer}
    kept, folded = [], []
    for n in g.nodes:
        has_zp = len(n.input) > 2 and bool(n.input[2])
        w = g.array(n.input[0]) if n.op_type == "QuantizeLinear" and n.input[0] in inits else None
        scale = g.array(n.input[1]) if w is not None else None
        zp = g.array(n.input[2]) if w is not None and has_zp else None
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
    model.graph.initializer.extend(folded)
    return cleanup(model)  # the float weights and scales the folded quantizers read


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


__all__ = ["QDQLintError", "check_tensorrt_qdq", "enforce_tensorrt_placement", "fold_weight_quantizers",
           "read_float_inputs"]
