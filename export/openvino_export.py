"""OpenVINO emitter: an ONNX file → ``openvino/model.xml`` + ``model.bin``.

For an FP16 bundle the source is the mixed-precision FP16 ONNX of
:mod:`boq_edge.export.onnx_export` (weights stored as FP16, the precision-sensitive
nodes kept FP32), saved without further compression. ``compress_to_fp16`` is
OpenVINO's own option that compresses *every* float weight of an FP32 source, including
the sensitive ones (MobileNetV2 preset on Nordland: min cosine 0.99916 against 0.99991
for the mixed graph); it is there for users who want OpenVINO's behaviour.

The CPU inference precision is an explicit choice recorded in the manifest
(``inference_precision``, ``f32`` by default): on CPUs with AMX or AVX512-BF16 the CPU
plugin otherwise runs bf16 silently (cosine 0.97 on that same test).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boq_edge.export.onnx_export import INPUT_NAME, ExportError

IR_DIR = "openvino"
IR_FILE = "openvino/model.xml"
INFERENCE_PRECISIONS = ("f32", "f16", "bf16")


@dataclass(frozen=True)
class OpenVINOOptions:
    compress_to_fp16: bool = False
    inference_precision: str = "f32"

    def __post_init__(self) -> None:
        if self.inference_precision not in INFERENCE_PRECISIONS:
            raise ValueError(f"unknown OpenVINO inference precision {self.inference_precision!r}; "
                             f"choose from {', '.join(INFERENCE_PRECISIONS)}")


def _require_openvino() -> Any:
    try:
        import openvino as ov
    except ImportError as e:
        raise ExportError("openvino is not installed: install boq-edge[openvino]") from e
    return ov


def emit_openvino(onnx_path: str | os.PathLike, out_dir: str | os.PathLike,
                  options: OpenVINOOptions | None = None) -> list[Path]:
    """Convert ``onnx_path`` to IR under ``out_dir/openvino/``; returns the files written."""
    options = options or OpenVINOOptions()
    ov = _require_openvino()
    model = ov.convert_model(str(onnx_path))
    inputs = [i.get_any_name() for i in model.inputs]
    if inputs != [INPUT_NAME]:
        raise ExportError(f"{onnx_path}: OpenVINO sees inputs {inputs}, expected [{INPUT_NAME!r}]")
    if not model.inputs[0].get_partial_shape()[0].is_dynamic:
        raise ExportError(f"{onnx_path}: batch axis is static after conversion; expected a dynamic batch")
    xml = Path(out_dir) / IR_FILE
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml), compress_to_fp16=options.compress_to_fp16)
    return [xml, xml.with_suffix(".bin")]
