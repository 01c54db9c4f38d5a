"""Find the nodes INT8 placement cares about in an exported BoQ ONNX graph, by pattern.

Node names differ between exporters and torch versions (``node_MatMul_490``,
``/aggregator/boqs.0/MatMul``...), so nothing here is keyed on names: attention is
recognised by its shape in the graph — a MatMul whose result reaches a Softmax through
elementwise scaling, or that consumes a Softmax's output. Its probabilities are ~1/N each
(N tokens), below one INT8 step of a per-tensor scale, which is why they stay in float.

Pure ``onnx``; no runtime.
"""

from __future__ import annotations

from collections import defaultdict

import onnx

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_SCALING = ("Mul", "Div", "Add", "Sub", "Where", "Cast", "Identity", "Reshape", "Transpose", "Neg")
_PASS = ("Cast", "Identity", "Dropout", "Reshape", "Transpose")


def _maps(model: onnx.ModelProto) -> tuple[dict[str, onnx.NodeProto], dict[str, list[onnx.NodeProto]]]:
    producer: dict[str, onnx.NodeProto] = {}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in model.graph.node:
        for o in n.output:
            producer[o] = n
        for i in n.input:
            if i:
                consumers[i].append(n)
    return producer, consumers


def _const_names(model: onnx.ModelProto) -> set[str]:
    names = {t.name for t in model.graph.initializer}
    names |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return names


def attention_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the attention MatMuls and Softmax nodes (to keep in float)."""
    producer, consumers = _maps(model)
    found: list[str] = []
    for sm in (n for n in model.graph.node if n.op_type == "Softmax"):
        found.append(sm.name)
        # Backwards: scores = MatMul(q, k^T) [* scale] [+ mask]
        stack, seen = [sm.input[0]], set()
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            p = producer.get(t)
            if p is None:
                continue
            if p.op_type == "MatMul":
                found.append(p.name)
            elif p.op_type in _SCALING:
                stack.extend(i for i in p.input if i)
        # Forwards: out = MatMul(probs, v)
        stack = [sm.output[0]]
        seen = set()
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            for c in consumers.get(t, []):
                if c.op_type == "MatMul":
                    found.append(c.name)
                elif c.op_type in _PASS:
                    stack.extend(c.output)
    out, seen_names = [], set()
    for name in found:
        if name not in seen_names:
            seen_names.add(name)
            out.append(name)
    return out


def weighted_nodes(model: onnx.ModelProto) -> list[str]:
    """Conv/Gemm/MatMul nodes with a constant weight input, in graph order."""
    consts = _const_names(model)
    producer, _ = _maps(model)

    def is_const(t: str) -> bool:
        for _ in range(6):
            if t in consts:
                return True
            p = producer.get(t)
            if p is None or p.op_type not in ("Transpose", "Reshape", "Identity", "Cast", "Unsqueeze"):
                return False
            t = p.input[0]
        return False

    return [n.name for n in model.graph.node
            if n.op_type in WEIGHTED_OPS and any(is_const(i) for i in n.input[:2] if i)]


def large_weight_nodes(model: onnx.ModelProto, threshold: float = 32.0) -> list[str]:
    """Conv/Gemm/MatMul nodes with a constant input (weight or bias) larger than ``threshold``.

    BatchNorm folded over a channel whose running variance is ~0 (the ImageNet MobileNetV2
    has such "dead" channels) gives weights near 100 and biases near 2000 whose products
    cancel. Such a node multiplies the rounding error of its input by its weights. The same
    threshold (32) decides which nodes the FP16 export keeps in FP32, for the same reason.
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type not in WEIGHTED_OPS:
            continue
        for i in n.input[1:]:
            t = inits.get(i)
            if t is None or t.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
                continue
            arr = numpy_helper.to_array(t)
            if arr.size and float(abs(arr).max()) > threshold:
                out.append(n.name)
                break
    return out


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
    producer, _ = _maps(model)
    consts = _const_names(model)
    by_name = {n.name: n for n in model.graph.node}
    keep = set(large)
    for name in large:
        stack, seen = [by_name[name].input[0]], set[str]()
        while stack:  # upstream through activations/adds/reshapes to the nearest weighted nodes
            t = stack.pop()
            if t in seen or t in consts or len(seen) > 64:
                continue
            seen.add(t)
            p = producer.get(t)
            if p is None:
                continue
            if p.op_type in WEIGHTED_OPS:
                keep.add(p.name)
            else:
                stack.extend(i for i in p.input if i)
    return [n.name for n in model.graph.node if n.name in keep]


def with_activations(model: onnx.ModelProto, names: list[str] | tuple[str, ...]) -> list[str]:
    """``names`` plus the Clip/Relu that directly follow them.

    Left on its own, ONNX Runtime's u8s8 placement quantizes such an activation standalone,
    i.e. puts a per-tensor uint8 Q/DQ on the *pre-activation* output of the float node. For
    the ill-conditioned MobileNetV2 convolutions that tensor has channels in the thousands,
    and one scale for all channels erased the rest (Recall@1 26 → 19). Keeping the
    activation with its node puts the Q after the clip instead.
    """
    _, consumers = _maps(model)
    by_name = {n.name: n for n in model.graph.node}
    out = list(names)
    for name in names:
        node = by_name.get(name)
        if node is None:
            continue
        for c in consumers.get(node.output[0], []):
            if c.op_type in ("Clip", "Relu", "LeakyRelu", "HardSigmoid", "Sigmoid") and c.name not in out:
                out.append(c.name)
    return out


def drop_unused_initializers(g: onnx.GraphProto) -> None:
    """Remove initializers no node (and no graph output) reads, in place, order kept.

    Q/DQ rewrites orphan scales and float weights; ONNX Runtime warns about each one on
    load and they cost file size.
    """
    used = {i for n in g.node for i in n.input if i} | {o.name for o in g.output}
    keep = [t for t in g.initializer if t.name in used]
    if len(keep) != len(g.initializer):
        del g.initializer[:]
        g.initializer.extend(keep)


def ensure_node_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give unnamed nodes stable names, so exclusion lists and manifests can name them."""
    used = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name = f"{n.op_type}_{i}"
            while name in used:
                name += "_"
            n.name = name
            used.add(name)
    return model


__all__ = ["WEIGHTED_OPS", "attention_nodes", "drop_unused_initializers", "ensure_node_names",
           "ill_conditioned_nodes", "large_weight_nodes", "weighted_nodes", "with_activations"]
