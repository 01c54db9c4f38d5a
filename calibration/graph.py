"""Find the nodes INT8 placement cares about in an exported BoQ ONNX graph, by pattern.

Node names differ between exporters and torch versions (``node_MatMul_490``,
``/aggregator/boqs.0/MatMul``...), so nothing here is keyed on names: attention is
recognised by its shape in the graph — a MatMul whose result reaches a Softmax through
elementwise scaling, or that consumes a Softmax's output. Its probabilities are ~1/N each
(N tokens), below one INT8 step of a per-tensor scale, which is why they stay in float.

Pure ``onnx``; no runtime.
"""

from __future__ import annotations

import onnx
from boq_edge.export.onnx_graph import GraphIndex

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_SCALING = ("Mul", "Div", "Add", "Sub", "Where", "Cast", "Identity", "Reshape", "Transpose", "Neg")
_PASS = ("Cast", "Identity", "Dropout", "Reshape", "Transpose")


def attention_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the attention MatMuls and Softmax nodes (to keep in float)."""
    g = GraphIndex(model)
    found: list[str] = []
    for sm in (n for n in g.nodes if n.op_type == "Softmax"):
        found.append(sm.name)
        # Backwards: scores = MatMul(q, k^T) [* scale] [+ mask]
        found += [m.name for m in g.upstream([sm.input[0]], through=lambda n: n.op_type in _SCALING,
                                             stop=lambda n: n.op_type == "MatMul")]
        # Forwards: out = MatMul(probs, v)
        stack, seen = [sm.output[0]], set()
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            for c in g.consumers.get(t, []):
                if c.op_type == "MatMul":
                    found.append(c.name)
                elif c.op_type in _PASS:
                    stack.extend(c.output)
    return list(dict.fromkeys(found))


def weighted_nodes(model: onnx.ModelProto) -> list[str]:
    """Conv/Gemm/MatMul nodes with a constant weight input, in graph order."""
    g = GraphIndex(model)
    return [n.name for n in g.nodes if n.op_type in WEIGHTED_OPS and any(g.is_const(i) for i in n.input[:2] if i)]


def large_weight_nodes(model: onnx.ModelProto, threshold: float = 32.0) -> list[str]:
    """Conv/Gemm/MatMul nodes with a constant input (weight or bias) larger than ``threshold``.

    BatchNorm folded over a channel whose running variance is ~0 (the ImageNet MobileNetV2
    has such "dead" channels) gives weights near 100 and biases near 2000 whose products
    cancel. Such a node multiplies the rounding error of its input by its weights. The same
    threshold (32) decides which nodes the FP16 export keeps in FP32, for the same reason.
    """
    return GraphIndex(model).large_constant_nodes(threshold, WEIGHTED_OPS, weights_only=True)


def ill_conditioned_nodes(model: onnx.ModelProto, threshold: float = 32.0) -> list[str]:
    """Nodes every INT8 scheme here leaves in float: large-weight nodes and their producers.

    A large-weight node (:func:`large_weight_nodes`) turns the error of its *input* into an
    error ``gain`` times larger; that input error is the producing layer's INT8 rounding
    plus the Q/DQ step on the tensor itself. So the node, and the weighted node(s) whose
    output it reads, stay float and exchange float tensors. On the Nordland-trained
    MobileNetV2 these are ``features.0``, ``features.1`` (both convolutions) and the
    expansion of ``features.2``: with them in float the descriptor cosine of ONNX Runtime
    PTQ to FP32 rose from 0.63 to 0.95 and Recall@1 from 37.98 to 44.10 (FP32 45.31);
    only the two large-weight nodes in float gave 42.90. A model without such channels
    (e.g. the freshly initialised ResNet-50 and DINOv2 presets) gets an empty list.
    """
    large = large_weight_nodes(model, threshold)
    if not large:
        return []
    g = GraphIndex(model)
    by_name = {g.name(n): n for n in g.nodes}
    keep = set(large)
    for name in large:  # upstream through activations/adds/reshapes to the nearest weighted nodes
        keep.update(g.name(p) for p in g.upstream([by_name[name].input[0]], through=lambda n: True,
                                                  stop=lambda n: n.op_type in WEIGHTED_OPS, limit=64))
    return [g.name(n) for n in g.nodes if g.name(n) in keep]


def with_activations(model: onnx.ModelProto, names: list[str] | tuple[str, ...]) -> list[str]:
    """``names`` plus the Clip/Relu that directly follow them.

    Left on its own, ONNX Runtime's u8s7 placement quantizes such an activation standalone,
    i.e. puts a per-tensor uint8 Q/DQ on the *pre-activation* output of the float node. For
    the ill-conditioned MobileNetV2 convolutions that tensor has channels in the thousands,
    and one scale for all channels erased the rest (Recall@1 26 → 19). Keeping the
    activation with its node puts the Q after the clip instead.
    """
    g = GraphIndex(model)
    out = list(names)
    for name in names:
        node = g.by_name.get(name)
        if node is None:
            continue
        for c in g.consumers.get(node.output[0], []):
            if c.op_type in ("Clip", "Relu", "LeakyRelu", "HardSigmoid", "Sigmoid") and c.name not in out:
                out.append(c.name)
    return out


__all__ = ["WEIGHTED_OPS", "attention_nodes", "ill_conditioned_nodes", "large_weight_nodes", "weighted_nodes",
           "with_activations"]
