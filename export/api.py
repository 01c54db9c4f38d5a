"""``export_model``: the one function behind ``boq-edge export``.

checkpoint (or model) → fold → emitter(s) in a staging directory → manifest → bundle.
Each target is one emitter module with the same call shape; this function only decides
which to call and what the manifest says. INT8 is delegated to
``boq_edge.calibration.quantize_for_target`` (see :data:`INT8_HOOK`) when that exists.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from boq_edge.export.bundle import BundleError, staging_dir, toolchain_versions, write_bundle
from boq_edge.export.onnx_export import (
    INPUT_NAME,
    ONNX_FILE,
    OUTPUT_NAME,
    ExportError,
    OnnxOptions,
    convert_fp16,
    emit_onnx,
    export_fp32_onnx,
)
from boq_edge.export.openvino_export import IR_FILE, OpenVINOOptions, emit_openvino
from boq_edge.export.tensorrt_export import (
    TensorRTOptions,
    build_engine_command,
    build_engine_for_bundle,
    tensorrt_status,
)

from boq_edge.runtime.manifest import ROLE_ONNX, ROLE_OPENVINO

TARGETS = ("onnx", "openvino", "tensorrt")
TARGET_ALIASES = {"trt": "tensorrt", "engine": "tensorrt", "ov": "openvino", "ir": "openvino",
                  "onnxruntime": "onnx", "ort": "onnx"}
DEFAULT_BATCH_RANGE = (1, 1, 8)
INT8_HOOK = ("boq_edge.calibration", "quantize_for_target")


def resolve_target(name: str) -> str:
    """Canonical target for what users type (``trt``, ``engine``, ``ov``…)."""
    key = TARGET_ALIASES.get(name.lower(), name.lower())
    if key not in TARGETS:
        aliases = ", ".join(sorted(TARGET_ALIASES))
        raise ExportError(f"unknown target {name!r}; choose from {', '.join(TARGETS)} (aliases: {aliases})")
    return key


def parse_batch_range(text: str) -> tuple[int, int, int]:
    """``"4"`` → (4, 4, 4); ``"1:4:8"`` → min 1, opt 4, max 8; ``"1:8"`` → (1, 1, 8)."""
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        raise ExportError(f"batch range {text!r} is not N or MIN:OPT:MAX (integers)") from None
    if len(parts) == 1:
        parts = parts * 3
    elif len(parts) == 2:
        parts = [parts[0], parts[0], parts[1]]
    if len(parts) != 3:
        raise ExportError(f"batch range {text!r} is not N or MIN:OPT:MAX")
    return check_batch_range(tuple(parts))  # type: ignore[arg-type]


def check_batch_range(r: tuple[int, int, int]) -> tuple[int, int, int]:
    lo, opt, hi = (int(x) for x in r)
    if not 1 <= lo <= opt <= hi:
        raise ExportError(f"batch range {lo}:{opt}:{hi} must satisfy 1 <= min <= opt <= max")
    return lo, opt, hi


def int8_hook() -> Callable[..., Any] | None:
    """``boq_edge.calibration.quantize_for_target`` if the INT8 stage provides it.

    Contract: ``quantize_for_target(folded, target=, fp32_onnx=, stage=, options=,
    batch_range=)`` writes the quantized artifacts into ``stage`` (the bundle being built)
    and returns ``{"artifacts": {role: relpath}, "quantization": {...}}``; the quantization
    dict (method, calibration manifest hash, ops left in float…) goes into the manifest as is.
    """
    module, name = INT8_HOOK
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    return getattr(mod, name, None)


def _load(source: Any, image_size: tuple[int, int] | None) -> tuple[Any, dict[str, Any]]:
    """A folded model and its provenance from a checkpoint path or a model object."""
    from boq_edge.export.fold import FoldedVPRModel, fold

    from boq_edge.model import VPRModel, load_checkpoint

    meta: dict[str, Any] = {}
    if isinstance(source, (str, os.PathLike)):
        model, _, meta = load_checkpoint(source)
        meta = {"checkpoint": Path(source).name, **meta}
    else:
        model = source
    if isinstance(model, FoldedVPRModel):
        if image_size is not None and tuple(image_size) != tuple(model.config.image_size):
            raise ExportError(f"this model is already folded at {model.config.image_size}; export the unfolded "
                              f"checkpoint to change the input size")
        return model.eval(), meta
    if not isinstance(model, VPRModel):
        raise ExportError(f"cannot export {type(model).__name__}; give a .boq checkpoint or a VPRModel")
    try:
        return fold(model, tuple(image_size) if image_size else None), meta  # type: ignore[arg-type]
    except ValueError as e:
        raise ExportError(str(e)) from None


def export_model(
    source: str | os.PathLike | Any,
    target: str,
    out_dir: str | os.PathLike,
    *,
    fp16: bool = False,
    batch_range: tuple[int, int, int] = DEFAULT_BATCH_RANGE,
    image_size: tuple[int, int] | None = None,
    int8: Any | None = None,
    opset: int = 18,
    inference_precision: str | None = None,
    tensorrt: TensorRTOptions | None = None,
    build_engine: bool | None = None,
    overwrite: bool = False,
) -> Path:
    """Fold ``source`` and write a verified artifact bundle for ``target`` to ``out_dir``.

    ``source`` is a ``.boq`` checkpoint path or a (folded or unfolded) model. For
    ``tensorrt`` the bundle holds the ONNX the engine is built from; the engine itself is
    built now when TensorRT and a GPU are present (``build_engine=None``), else the bundle
    is left "engine pending" for ``boq-edge build-engine`` on the device. Returns the path.
    """
    target = resolve_target(target)
    lo, opt, hi = check_batch_range(batch_range)
    if fp16 and int8 is not None:
        raise ExportError("--fp16 and --int8 are exclusive: an INT8 bundle keeps its float parts in FP32")
    if inference_precision is not None and target != "openvino":
        raise ExportError("--inference-precision applies to OpenVINO bundles only")
    if tensorrt is not None and target != "tensorrt":
        raise ExportError("TensorRT build options apply to --target tensorrt only")
    quantize = None
    if int8 is not None:
        quantize = int8_hook()
        if quantize is None:
            raise ExportError("INT8 export is not available yet: boq_edge.calibration.quantize_for_target "
                              "is not implemented in this build; export FP32 or --fp16 for now")
    if Path(out_dir).exists() and not overwrite:
        raise BundleError(f"{out_dir} already exists; pass overwrite=True (CLI: --force) to replace it")
    can_build, why_not = tensorrt_status() if target == "tensorrt" else (False, "")
    if build_engine and not can_build:
        raise ExportError(f"cannot build a TensorRT engine here: {why_not}")

    folded, meta = _load(source, image_size)
    config = folded.config
    precision = "int8" if int8 is not None else "fp16" if fp16 else "fp32"
    ov_precision = inference_precision or "f32"
    manifest: dict[str, Any] = {
        "target": target,
        "precision": precision,
        "preset": config.name,
        "model_config": config.to_dict(),
        "descriptor_dim": config.descriptor_dim,
        "input": {"name": INPUT_NAME, "shape": ["batch", 3, *config.image_size], "dtype": "float32",
                  "layout": "NCHW"},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", config.descriptor_dim], "dtype": "float32",
                   "l2_normalized": True},
        "batch": {"min": lo, "opt": opt, "max": hi},
        "preprocessing": config.preprocessing.to_dict(),
        "source": {"checkpoint": meta.get("checkpoint"), "checkpoint_sha256": meta.get("checkpoint_sha256"),
                   "origin": meta.get("source")},
        "folding": {"applied": True, "function": "boq_edge.export.fold.fold",
                    "image_size": list(config.image_size)},
        "quantization": None,
        "inference_precision": ov_precision if target == "openvino" else None,
        "onnx": {"opset": opset, "exporter": "torch.onnx.export(dynamo=True)", "dynamic_batch": True},
    }
    out = Path(out_dir)
    with staging_dir(out, overwrite=overwrite) as stage, tempfile.TemporaryDirectory(prefix="boq-export-") as tmp:
        if quantize is not None:
            fp32 = export_fp32_onnx(folded, Path(tmp) / ONNX_FILE, opset)
            result = quantize(folded, target=target, fp32_onnx=fp32, stage=stage, options=int8,
                              batch_range=(lo, opt, hi))
            manifest["artifacts"] = dict(result["artifacts"])
            manifest["quantization"] = result["quantization"]
        elif target in ("onnx", "tensorrt"):
            opts = OnnxOptions(opset=opset, fp16=fp16)
            emit_onnx(folded, stage, opts)
            manifest["artifacts"] = {ROLE_ONNX: ONNX_FILE}
            if fp16:
                manifest["onnx"]["fp16"] = opts.report
        else:  # openvino: IR from the FP32 ONNX, or from the mixed-precision FP16 ONNX
            fp32 = export_fp32_onnx(folded, Path(tmp) / ONNX_FILE, opset)
            src = fp32
            if fp16:
                src = Path(tmp) / "model_fp16.onnx"
                manifest["onnx"]["fp16"] = convert_fp16(fp32, src)
            emit_openvino(src, stage, OpenVINOOptions(inference_precision=ov_precision))
            manifest["artifacts"] = {ROLE_OPENVINO: IR_FILE}
            manifest["openvino"] = {"source": "mixed-precision FP16 ONNX" if fp16 else "FP32 ONNX",
                                    "compress_to_fp16": False, "weights": precision}
        if target == "tensorrt":
            manifest["tensorrt"] = {"engine": "pending", "build_command": build_engine_command(out.name)}
        manifest["toolchain"] = toolchain_versions()
        write_bundle(stage, out, manifest)
    if target == "tensorrt" and (build_engine or (build_engine is None and can_build)):
        build_engine_for_bundle(out, tensorrt or TensorRTOptions(), force=True)
    return out


__all__ = [
    "DEFAULT_BATCH_RANGE", "TARGETS", "TARGET_ALIASES", "BundleError", "ExportError", "export_model",
    "int8_hook", "parse_batch_range", "resolve_target",
]
