"""ONNX emitter: the folded model → ``model.onnx`` (FP32, or mixed-precision FP16).

FP32 comes from the torch 2.13 exporter (``dynamo=True``) at opset ≥ 18 with a dynamic
batch axis, input ``images`` → output ``descriptors``. The FP16 variant is made from it
by rewriting the graph (``onnxruntime.transformers.float16``) with FP32 I/O and these
nodes left in FP32:

* LayerNormalization and Softmax (variance / exp overflow), and the whole L2-normalise
  tail (ReduceL2 → clamp → Div) so the unit-norm contract holds in FP32;
* any node fed by a constant larger than ``keep_const_above`` (default 32). BatchNorm
  folded into a convolution whose channel variance is tiny gives weights and biases in
  the hundreds whose products cancel; FP16 rounds them relative to those large terms,
  not to the small result. The ImageNet MobileNetV2 has two such convolutions: keeping
  them in FP32 lifts the min cosine to the FP32 model on Nordland from 0.99916 to 0.99989.

The same FP16 graph feeds every FP16 target (ONNX Runtime, OpenVINO, TensorRT's
strongly typed build), so one precision policy holds everywhere.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boq_edge.export.onnx_graph import GraphIndex

DYNAMO_EXPORTER = "torch.onnx.export(dynamo=True)"
ORT_QUANTIZER = "onnxruntime.quantization.quantize_static"  # what writes the INT8 ONNX of PTQ
MIN_OPSET = 18
INPUT_NAME = "images"
OUTPUT_NAME = "descriptors"
ONNX_FILE = "model.onnx"
FP16_KEEP_OPS = ("LayerNormalization", "Softmax", "ReduceL2")
_PROTOBUF_LIMIT = 1_800_000_000  # bytes of weights above which the graph uses external data


class ExportError(RuntimeError):
    """An export step failed in a way the user can act on; the message says how."""


@dataclass(frozen=True)
class OnnxOptions:
    opset: int = MIN_OPSET
    fp16: bool = False
    fp16_keep_ops: tuple[str, ...] = FP16_KEEP_OPS
    keep_const_above: float = 32.0
    check: bool = True
    # Filled in by emit_onnx for the manifest: what the FP16 conversion kept in FP32.
    report: dict[str, Any] = field(default_factory=dict, compare=False)


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise ExportError("onnx is not installed: install boq-edge[onnx]") from e
    return onnx


def export_fp32_onnx(folded: Any, path: str | os.PathLike, opset: int = MIN_OPSET, check: bool = True) -> Path:
    """Export a folded model to a dynamic-batch FP32 ONNX file (the INT8 stage starts from this too)."""
    import torch

    _require_onnx()
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old; boq-edge exports opset >= {MIN_OPSET}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = folded.config.image_size
    weight_bytes = sum(t.numel() * t.element_size() for t in [*folded.parameters(), *folded.buffers()])
    example = torch.zeros(2, 3, h, w)
    batch = torch.export.Dim("batch", min=1, max=4096)
    quiet = logging.getLogger("torch.onnx")  # e.g. "torchvision is not installed. Skipping …" per op
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.export internals, not actionable here
            torch.onnx.export(
                folded.eval(), (example,), str(path), dynamo=True, opset_version=opset,
                dynamic_shapes=({0: batch},), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                external_data=weight_bytes > _PROTOBUF_LIMIT, verbose=False)
    except Exception as e:  # the exporter raises many types; keep the first line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ExportError(f"torch.onnx.export failed for {folded.config.name}: {first}") from e
    finally:
        quiet.setLevel(level)
    if check:
        check_onnx(path, opset)
    return path


def check_onnx(path: str | os.PathLike, min_opset: int = MIN_OPSET) -> None:
    """onnx.checker (full), opset, I/O names, a symbolic batch axis and float32 I/O."""
    onnx = _require_onnx()
    path = Path(path)
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path), load_external_data=False)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < min_opset:
        raise ExportError(f"{path.name}: opset {opset} < {min_opset}")
    ins, outs = list(model.graph.input), list(model.graph.output)
    if [i.name for i in ins] != [INPUT_NAME] or [o.name for o in outs] != [OUTPUT_NAME]:
        raise ExportError(f"{path.name}: expected input {INPUT_NAME!r} → output {OUTPUT_NAME!r}, got "
                          f"{[i.name for i in ins]} → {[o.name for o in outs]}")
    for v in (ins[0], outs[0]):
        t = v.type.tensor_type
        if t.elem_type != onnx.TensorProto.FLOAT:
            raise ExportError(f"{path.name}: {v.name} is not float32")
        if not t.shape.dim[0].dim_param:
            raise ExportError(f"{path.name}: {v.name} has a fixed batch size; expected a dynamic batch axis")


def _normalize_tail(g: GraphIndex) -> list[str]:
    """Names of the nodes between ReduceL2 and the graph output (the L2-normalise tail)."""
    down = g.downstream(n for n in g.nodes if n.op_type == "ReduceL2")
    return sorted(down & g.ancestors(g.outputs))


def convert_fp16(src: str | os.PathLike, dst: str | os.PathLike, keep_ops: Sequence[str] = FP16_KEEP_OPS,
                 keep_const_above: float = 32.0) -> dict[str, Any]:
    """FP32 ONNX → mixed-precision FP16 ONNX with FP32 I/O; returns what stayed in FP32."""
    onnx = _require_onnx()
    from boq_edge.export.onnx_graph import GraphIndex, ensure_node_names, toposort

    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as e:
        raise ExportError("FP16 conversion needs onnxruntime: install boq-edge[onnx]") from e
    model = ensure_node_names(onnx.load(str(src)), prefix="boq_")  # the converter's node block list works by name
    g = GraphIndex(model)
    tail = _normalize_tail(g)
    large = sorted(g.large_constant_nodes(keep_const_above))
    converted = convert_float_to_float16(
        model, keep_io_types=True, op_block_list=list(keep_ops), node_block_list=tail + large)
    toposort(converted)  # the converter appends its I/O casts at the end
    del converted.graph.value_info[:]  # stale float32 annotations; shape inference rebuilds them
    onnx.save(converted, str(dst))
    check_onnx(dst)
    kept_ops = sorted({n.op_type for n in model.graph.node if n.op_type in keep_ops})
    return {"kept_fp32_op_types": kept_ops, "kept_fp32_normalize_tail": tail,
            "kept_fp32_large_constant_nodes": large, "keep_const_above": keep_const_above}


def emit_onnx(folded: Any, out_dir: str | os.PathLike, options: OnnxOptions | None = None) -> list[Path]:
    """Write ``out_dir/model.onnx`` (FP32, or FP16 if ``options.fp16``); returns the files written."""
    options = options or OnnxOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dst = out / ONNX_FILE
    if not options.fp16:
        export_fp32_onnx(folded, dst, options.opset, options.check)
    else:
        with tempfile.TemporaryDirectory(prefix="boq-onnx-") as tmp:
            fp32 = export_fp32_onnx(folded, Path(tmp) / ONNX_FILE, options.opset, options.check)
            options.report.update(convert_fp16(fp32, dst, options.fp16_keep_ops, options.keep_const_above))
    return sorted(p for p in out.iterdir() if p.name.startswith(ONNX_FILE))
