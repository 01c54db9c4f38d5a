"""Check that a Q/DQ ONNX model follows the explicit-INT8 rules TensorRT builds from.

TensorRT 10 deprecated implicit INT8 calibrators (removed in 11); the supported way is an
ONNX graph whose INT8 regions are spelled out with QuantizeLinear/DequantizeLinear. Which
Q/DQ graphs TensorRT turns into fast, accurate engines is narrow, so every TensorRT INT8
bundle is checked against these rules before it is written, and ``boq-edge lint-qdq``
checks any file:

``int8``        Q/DQ carry signed INT8 (not uint8, not int32 biases).
``zero-point``  zero-points are absent-as-int8 or all zero (symmetric quantization).
``weight-axis`` weights (constant DQ inputs of Conv/ConvTranspose/Gemm/MatMul) are
                per-channel, on the output-channel axis.
``activation``  activations (non-constant Q/DQ) are per-tensor (one scale).
``coverage``    a Conv/ConvTranspose/Gemm/MatMul takes *all* its data inputs (activation
                and weight) through DequantizeLinear, or none: half-quantized nodes are
                refused. Fully float ones (attention MatMuls; ill-conditioned layers; nodes
                accuracy control sent back to float) are allowed, listed in ``float_nodes``.
``float-op``    DequantizeLinear feeds only Conv/ConvTranspose/Gemm/MatMul, and
                QuantizeLinear feeds only DequantizeLinear: LayerNorm, Softmax, residual
                adds and the L2 normalisation therefore always compute in float.

Pure ``onnx`` + ``numpy``: no torch, no runtime. Local functions are inlined first so
nodes hidden in functions are checked too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from boq_edge.export.onnx_graph import MAX_HOPS, GraphIndex
from onnx import TensorProto

RULES = ("int8", "zero-point", "weight-axis", "activation", "coverage", "float-op")
QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class Violation:
    """One broken rule at one node; ``str()`` is the line the CLI prints."""

    rule: str
    node: str
    op_type: str
    message: str

    def __str__(self) -> str:
        return f"{self.node} ({self.op_type}) [{self.rule}]: {self.message}"


@dataclass(frozen=True)
class LintReport:
    violations: list[Violation]
    num_quantize: int
    num_dequantize: int
    quantized_nodes: list[str]  # Conv/Gemm/MatMul nodes with Q/DQ on their inputs
    float_nodes: list[str]  # Conv/Gemm/MatMul nodes wholly in float (attention, ill-conditioned, reverted)

    @property
    def ok(self) -> bool:
        return not self.violations and self.num_dequantize > 0


class _Graph(GraphIndex):
    """The graph index plus the two Q/DQ questions only the linter asks."""

    def weight_source(self, n: onnx.NodeProto) -> str | None:
        """The constant a Q or DQ node quantizes, or None for an activation.

        Weights appear either pre-quantized (an int8 constant → DequantizeLinear, as ONNX
        Runtime writes them) or as a float constant → QuantizeLinear → DequantizeLinear pair
        (as QAT exporters write them); TensorRT folds both.
        """
        src = n.input[0]
        if self.is_const(src):
            return src
        p = self.producer.get(src)
        if n.op_type == "DequantizeLinear" and p is not None and p.op_type == "QuantizeLinear" \
                and self.is_const(p.input[0]):
            return p.input[0]
        return None

    def axis_at_dq(self, tensor: str, axis: int) -> int | None:
        """Map ``axis`` of ``tensor`` back to its DequantizeLinear's frame through Transposes.

        Torch Linear weights are (out, in) and reach MatMul through a Transpose; their
        output channels are axis 0 at the DQ. None when a reshape makes the mapping unclear.
        """
        t = tensor
        for _ in range(MAX_HOPS):
            p = self.producer.get(t)
            if p is None or p.op_type == "DequantizeLinear":
                return axis
            if p.op_type == "Transpose":
                perm = next((list(a.ints) for a in p.attribute if a.name == "perm"), None)
                if perm is None:
                    return None
                axis = perm[axis]
            elif p.op_type != "Identity":
                return None
            t = p.input[0]
        return None

    def dq_source(self, tensor: str) -> onnx.NodeProto | None:
        """The DequantizeLinear a tensor comes from, looking through shape-only ops."""
        return self.source(tensor, "DequantizeLinear")


def _attr(n: onnx.NodeProto, name: str, default: int) -> int:
    for a in n.attribute:
        if a.name == name:
            return int(a.i)
    return default


def _weight_axis(op: onnx.NodeProto, rank: int) -> int:
    """The output-channel axis of a weight tensor for ``op``."""
    if op.op_type == "Conv":
        return 0
    if op.op_type == "ConvTranspose":
        return 1
    if op.op_type == "Gemm":
        return 0 if _attr(op, "transB", 0) else 1
    return rank - 1  # MatMul: x @ W, W is (..., K, N)


def _qdq_int_type(g: _Graph, n: onnx.NodeProto) -> int:
    """Element type of the integer side of a Q/DQ node (TensorProto enum); 0 if unknown."""
    if len(n.input) > 2 and n.input[2]:
        return g.dtype(n.input[2])
    out_dtype = _attr(n, "output_dtype", 0)  # opset 21 QuantizeLinear
    if n.op_type == "QuantizeLinear":
        return out_dtype or TensorProto.UINT8  # the ONNX default without zero-point is uint8
    src = n.input[0]
    if src in g.tensors:
        return g.dtype(src)
    p = g.producer.get(src)
    if p is not None and p.op_type == "QuantizeLinear":
        return _qdq_int_type(g, p)
    return 0


def lint_model(model: onnx.ModelProto) -> LintReport:
    """Check ``model`` against :data:`RULES`; every violation names its node."""
    try:
        import onnx.inliner

        model = onnx.inliner.inline_local_functions(model)
    except (ImportError, AttributeError):  # pragma: no cover - very old onnx
        pass
    g = _Graph(model)
    out: list[Violation] = []

    def add(n: onnx.NodeProto, rule: str, msg: str) -> None:
        out.append(Violation(rule, g.name(n), n.op_type, msg))

    qs = [n for n in g.nodes if n.op_type == "QuantizeLinear"]
    dqs = [n for n in g.nodes if n.op_type == "DequantizeLinear"]
    for n in qs + dqs:
        _check_qdq_node(g, n, add)
    quantized, floating = [], []
    for n in g.nodes:
        if n.op_type not in QUANTIZED_OPS:
            continue
        srcs = [g.dq_source(t) for t in n.input[:2]]
        if all(s is not None for s in srcs):
            quantized.append(g.name(n))
            _check_weight_axes(g, n, add)
        elif all(s is None for s in srcs):
            floating.append(g.name(n))  # left in float on purpose: attention, or accuracy control
        else:
            missing = [t for t, s in zip(n.input[:2], srcs, strict=True) if s is None]
            kind = "weight" if any(g.is_const(t) and s is None for t, s in zip(n.input[:2], srcs, strict=True)) \
                else "input"
            add(n, "coverage", f"{kind} {', '.join(repr(m) for m in missing)} has no DequantizeLinear: "
                f"a Conv/MatMul/Gemm is INT8 on all data inputs or float on all")
    return LintReport(out, len(qs), len(dqs), quantized, floating)


Add = Callable[[onnx.NodeProto, str, str], None]


def _check_qdq_node(g: _Graph, n: onnx.NodeProto, add: Add) -> None:
    """Rules ``int8``, ``zero-point``, ``activation`` and ``float-op`` for one Q or DQ node."""
    dtype = _qdq_int_type(g, n)
    if dtype != TensorProto.INT8:
        kind = TensorProto.DataType.Name(dtype) if dtype else "unknown"
        what = "weights" if g.weight_source(n) is not None else "activations"
        add(n, "int8", f"{what} quantized to {kind.lower()}, TensorRT explicit INT8 needs signed int8")
    zp = g.array(n.input[2]) if len(n.input) > 2 and n.input[2] else None
    if zp is not None and np.any(zp != 0):
        add(n, "zero-point", f"zero-point {np.unique(zp)[:4].tolist()} is not 0 (asymmetric)")
    scale = g.array(n.input[1])
    if scale is not None and g.weight_source(n) is None and scale.size != 1:
        add(n, "activation", f"activation scale has {scale.size} values; activations must be per-tensor")
    for c in g.consumers.get(n.output[0], []):
        if n.op_type == "QuantizeLinear" and c.op_type != "DequantizeLinear":
            add(n, "float-op", f"QuantizeLinear feeds {c.op_type} {g.name(c)!r}, not a DequantizeLinear")
        elif n.op_type == "DequantizeLinear" and not g.only_through_shape_ops(
                c, lambda m: m.op_type in QUANTIZED_OPS, max_depth=4):
            add(n, "float-op", f"DequantizeLinear feeds {c.op_type} {g.name(c)!r}, which must stay in float")


def _check_weight_axes(g: _Graph, n: onnx.NodeProto, add: Add) -> None:
    """Rule ``weight-axis``: a quantized node's constant-side DQ is per-channel on the output-channel axis."""
    for idx, t_in in enumerate(n.input[:2]):
        s = g.dq_source(t_in)
        weight = None if s is None else g.weight_source(s)
        if s is None or weight is None:
            continue
        wshape = g.shape(weight)
        scale = g.array(s.input[1])
        if wshape is None or scale is None:
            continue
        rank = len(wshape)
        # A constant on the left of a MatMul has its output channels as rows.
        expect = g.axis_at_dq(t_in, rank - 2 if n.op_type == "MatMul" and idx == 0 else _weight_axis(n, rank))
        if expect is None:
            continue
        channels = wshape[expect] if rank else 1
        if scale.size == 1 and channels > 1:
            add(s, "weight-axis", f"weight {weight!r} of {g.name(n)!r} is quantized per-tensor; "
                f"needs per-channel scales on axis {expect} ({channels} channels)")
            continue
        axis = _attr(s, "axis", 1)
        axis = axis + rank if axis < 0 else axis
        if scale.size != 1 and (axis != expect or scale.size != channels):
            add(s, "weight-axis", f"weight {weight!r} of {g.name(n)!r} has per-channel scales on axis "
                f"{axis} ({scale.size} values); the output-channel axis is {expect} ({channels} channels)")


def lint_file(path: str | os.PathLike) -> LintReport:
    """:func:`lint_model` on a file (external data is not needed: only scales and zero-points are read)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such ONNX file")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError/ValueError depending on the damage
        raise ValueError(f"{p} is not a readable ONNX model: {e}") from None
    return lint_model(model)


__all__ = ["QUANTIZED_OPS", "RULES", "LintReport", "Violation", "lint_file", "lint_model"]
