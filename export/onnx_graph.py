"""One ONNX graph toolkit for every stage that reads or rewrites exported graphs.

The FP16 conversion, the INT8 placement (attention, ill-conditioned layers), the Q/DQ
rewrites for TensorRT and the Q/DQ linter all ask the same questions of a graph: who
produces and who reads a tensor, is a tensor a constant (possibly reshaped), which
DequantizeLinear does a tensor come from through shape-only ops, which nodes lie between
two points. :class:`GraphIndex` answers them over a ``ModelProto``. Whole-graph
rewrites that onnx-graphsurgeon already does well — topological order and removing what
nothing reads — go through it (:func:`toposort`, :func:`cleanup`).

Pure ``onnx`` + ``numpy`` (+ onnx-graphsurgeon for the two rewrites); no runtime, no torch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

# Ops that only move or relabel data: a weight seen through them is still the weight.
SHAPE_OPS = ("Reshape", "Transpose", "Unsqueeze", "Squeeze", "Identity")
FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16)
MAX_HOPS = 8


class GraphIndex:
    """Producer/consumer maps, constant lookup and walks over one graph (built once, read many times).

    The index reflects the graph when it was built; rebuild it after a rewrite.
    """

    def __init__(self, model: onnx.ModelProto | onnx.GraphProto) -> None:
        g = model.graph if isinstance(model, onnx.ModelProto) else model
        self.graph = g
        self.nodes = list(g.node)
        self.by_name = {n.name: n for n in self.nodes if n.name}
        self._names = {id(n): n.name or f"{n.op_type}#{i}" for i, n in enumerate(self.nodes)}
        # TensorProtos, converted to arrays only when read: weights may live in unloaded external data.
        self.tensors: dict[str, TensorProto] = {t.name: t for t in g.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for n in self.nodes:
            if n.op_type == "Constant" and n.output:
                value = next((a.t for a in n.attribute if a.name == "value"), None)
                if value is not None:
                    self.tensors[n.output[0]] = value
            for o in n.output:
                self.producer[o] = n
            for i in n.input:
                if i:
                    self.consumers[i].append(n)
        self.outputs = {o.name for o in g.output}

    # --- tensors ------------------------------------------------------------------
    def name(self, node: onnx.NodeProto) -> str:
        """The node's name, or ``OpType#index`` for an unnamed one (reports always name something)."""
        return self._names[id(node)]

    def array(self, tensor: str) -> np.ndarray | None:
        t = self.tensors.get(tensor)
        return None if t is None else numpy_helper.to_array(t)

    def shape(self, tensor: str) -> tuple[int, ...] | None:
        t = self.tensors.get(tensor)
        return None if t is None else tuple(int(d) for d in t.dims)

    def dtype(self, tensor: str) -> int:
        t = self.tensors.get(tensor)
        return 0 if t is None else int(t.data_type)

    def is_const(self, tensor: str) -> bool:
        """A tensor that does not depend on the graph inputs: a constant, maybe reshaped or cast."""
        seen: set[str] = set()
        stack = [tensor]
        while stack:
            t = stack.pop()
            if t in self.tensors or t in seen:
                continue
            seen.add(t)
            p = self.producer.get(t)
            if p is None or p.op_type not in (*SHAPE_OPS, "Cast", "Constant"):
                return False
            stack.extend(i for i in p.input if i)
        return True

    def source(self, tensor: str, op_type: str, through: tuple[str, ...] = SHAPE_OPS,
               hops: int = MAX_HOPS) -> onnx.NodeProto | None:
        """The ``op_type`` node ``tensor`` comes from, looking back through at most ``hops`` ``through`` ops."""
        t = tensor
        for _ in range(hops):
            p = self.producer.get(t)
            if p is None:
                return None
            if p.op_type == op_type:
                return p
            if p.op_type not in through:
                return None
            t = p.input[0]
        return None

    def readers(self, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        """Nodes that read any output of ``node``."""
        return [c for o in node.output for c in self.consumers.get(o, [])]

    def only_through_shape_ops(self, node: onnx.NodeProto, accept: Callable[[onnx.NodeProto], bool],
                               max_depth: int = MAX_HOPS) -> bool:
        """``accept(node)``, or ``node`` is a shape op whose every reader (recursively) is accepted."""
        def ok(n: onnx.NodeProto, depth: int) -> bool:
            if accept(n):
                return True
            if n.op_type not in SHAPE_OPS or depth > max_depth:
                return False
            cons = self.readers(n)
            return bool(cons) and all(ok(c, depth + 1) for c in cons)

        return ok(node, 0)

    # --- walks --------------------------------------------------------------------
    def downstream(self, start: Iterable[onnx.NodeProto]) -> set[str]:
        """Names of the nodes that read, directly or not, an output of the ``start`` nodes."""
        out: set[str] = set()
        stack = list(start)
        while stack:
            n = stack.pop()
            for c in self.readers(n):
                if self.name(c) not in out:
                    out.add(self.name(c))
                    stack.append(c)
        return out

    def ancestors(self, tensors: Iterable[str]) -> set[str]:
        """Names of every node that ``tensors`` depend on."""
        out: set[str] = set()
        stack = [t for t in tensors if t]
        while stack:
            p = self.producer.get(stack.pop())
            if p is not None and self.name(p) not in out:
                out.add(self.name(p))
                stack.extend(i for i in p.input if i)
        return out

    def upstream(self, tensors: Iterable[str], through: Callable[[onnx.NodeProto], bool],
                 stop: Callable[[onnx.NodeProto], bool], limit: int | None = None) -> list[onnx.NodeProto]:
        """The ``stop`` nodes reached walking back from ``tensors`` through nodes where ``through`` holds.

        Depth-first, in the order first reached; constants end a walk; ``limit`` bounds the
        number of tensors visited (a guard for graphs without a nearby stop).
        """
        found: list[onnx.NodeProto] = []
        seen: set[str] = set()
        stack = [t for t in tensors if t]
        while stack:
            t = stack.pop()
            if t in seen or t in self.tensors or (limit is not None and len(seen) > limit):
                continue
            seen.add(t)
            p = self.producer.get(t)
            if p is None:
                continue
            if stop(p):
                if all(p is not f for f in found):
                    found.append(p)
            elif through(p):
                stack.extend(i for i in p.input if i)
        return found

    def large_constant_nodes(self, threshold: float, op_types: tuple[str, ...] | None = None,
                             weights_only: bool = False) -> list[str]:
        """Nodes (of ``op_types``, default any) fed by a float constant whose largest |value| > ``threshold``.

        BatchNorm folded over a channel whose running variance is ~0 gives weights near 100
        and biases near 2000 whose products cancel; FP16 and INT8 both round such terms
        relative to their size, not to the small result. ``weights_only`` looks only at
        initializers in the weight/bias positions (inputs after the first). Graph order.
        """
        big: dict[str, bool] = {}

        def large(tensor: str) -> bool:
            if tensor not in big:
                t = self.tensors.get(tensor)
                a = numpy_helper.to_array(t) if t is not None and t.data_type in FLOAT_TYPES else None
                big[tensor] = a is not None and a.size > 0 and float(np.abs(a).max()) > threshold
            return big[tensor]

        inits = {t.name for t in self.graph.initializer}

        def inputs(n: onnx.NodeProto) -> list[str]:
            return [i for i in n.input[1:] if i in inits] if weights_only else [i for i in n.input if i in self.tensors]

        return [self.name(n) for n in self.nodes
                if n.op_type != "Constant" and (op_types is None or n.op_type in op_types)
                and any(large(i) for i in inputs(n))]


def ensure_node_names(model: onnx.ModelProto, prefix: str = "") -> onnx.ModelProto:
    """Give unnamed nodes stable, unique names (in place): exclusion lists and manifests name nodes."""
    used = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name = f"{prefix}{n.op_type}_{i}"
            while name in used:
                name += "_"
            n.name = name
            used.add(name)
    return model


def _through_graphsurgeon(model: onnx.ModelProto, rewrite: Callable[[Any], Any]) -> onnx.ModelProto:
    """Run an onnx-graphsurgeon graph rewrite and write the result back into ``model`` (in place).

    graphsurgeon does not carry per-node ``metadata_props`` (the torch exporter's stack
    traces with build-machine paths, and module scopes): rewritten graphs ship without
    them, and callers that need them (QAT maps nodes to torch layers) read the FP32 graph.
    """
    try:
        import onnx_graphsurgeon as gs
    except ImportError as e:
        from boq_edge.export.onnx_export import ExportError

        raise ExportError("onnx-graphsurgeon is not installed: install boq-edge[onnx]") from e
    graph = gs.import_onnx(model)
    try:
        rewrite(graph)
    except Exception as e:  # graphsurgeon raises its own types, e.g. for a cycle
        raise ValueError(f"ONNX graph rewrite failed (a cycle or a dangling input?): {e}") from e
    model.graph.CopyFrom(gs.export_onnx(graph, do_type_check=False).graph)
    return model


def toposort(model: onnx.ModelProto) -> onnx.ModelProto:
    """Order nodes so every input is produced before it is read (in place; returns ``model``)."""
    return _through_graphsurgeon(model, lambda g: g.toposort())


def cleanup(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove nodes and initializers no graph output depends on (in place; returns ``model``).

    Q/DQ rewrites orphan quantizer pairs, scales and float weights; ONNX Runtime warns
    about each one on load and they cost file size. Any other dead node goes too (it
    computes nothing the outputs use).
    """
    return _through_graphsurgeon(model, lambda g: g.cleanup(remove_unused_graph_inputs=False))


__all__ = ["FLOAT_TYPES", "SHAPE_OPS", "GraphIndex", "cleanup", "ensure_node_names", "toposort"]
