"""``export_model``: the one function behind ``boq-edge export``.

checkpoint (or model) → fold → the target's float emit, or the INT8 pipeline → manifest →
bundle. What differs between targets lives in the target's module
(:mod:`boq_edge.export.targets`); this function only sequences the stages and owns the
manifest's model facts (preset, input/output, preprocessing, provenance).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from boq_edge.export.bundle import (
    BundleError,
    ManifestDraft,
    check_output_dir,
    staging_dir,
    toolchain_versions,
    write_bundle,
)
from boq_edge.export.onnx_export import INPUT_NAME, ONNX_FILE, OUTPUT_NAME, ExportError, export_fp32_onnx
from boq_edge.export.options import ExportOptions, Precision
from boq_edge.export.targets import Target, get_target


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
        return fold(model, image_size), meta
    except ValueError as e:
        raise ExportError(str(e)) from None


def _draft(folded: Any, meta: dict[str, Any], options: ExportOptions) -> ManifestDraft:
    """The manifest's model facts; the target and the quantizer add their parts."""
    config = folded.config
    lo, opt, hi = options.batch_range
    return ManifestDraft(
        target=options.target, precision=str(options.precision), preset=config.name,
        model_config=config.to_dict(), descriptor_dim=config.descriptor_dim,
        input={"name": INPUT_NAME, "shape": ["batch", 3, *config.image_size], "dtype": "float32", "layout": "NCHW"},
        output={"name": OUTPUT_NAME, "shape": ["batch", config.descriptor_dim], "dtype": "float32",
                "l2_normalized": True},
        batch={"min": lo, "opt": opt, "max": hi}, preprocessing=config.preprocessing.to_dict(),
        source={"checkpoint": meta.get("checkpoint"), "checkpoint_sha256": meta.get("checkpoint_sha256"),
                "origin": meta.get("source")},
        folding={"applied": True, "function": "boq_edge.export.fold.fold", "image_size": list(config.image_size)})


def _quantize(folded: Any, target: Target, stage: Path, work: Path, options: ExportOptions,
              draft: ManifestDraft) -> None:
    """INT8 is made from the exporter's FP32 ONNX graph, so both precisions come from one graph."""
    from boq_edge.calibration import quantize_model

    assert options.int8 is not None  # ExportOptions guarantees it for Precision.INT8
    fp32 = export_fp32_onnx(folded, work / ONNX_FILE, options.opset)
    report = quantize_model(folded, fp32, target, stage, options.int8)
    draft.artifacts.update(report.artifacts)
    draft.onnx = report.onnx
    draft.quantization = report.to_manifest()


def _inputs(source: Any, options: ExportOptions) -> list[Path]:
    """What the export reads: the output must neither be nor contain any of it."""
    out = [Path(source)] if isinstance(source, (str, os.PathLike)) else []
    int8 = options.int8
    if int8 is not None:
        calib = int8.calibration
        if isinstance(calib, (str, os.PathLike)):
            out.append(Path(calib))
            root = _calibration_root(Path(calib))
            if root is not None:
                out.append(root)
        elif calib is not None:
            out.append(Path(calib.root))
        path = getattr(int8.validation, "path", None)
        if path is not None:
            out.append(Path(path))
    return out


def _calibration_root(manifest: Path) -> Path | None:
    import json

    try:
        root = json.loads(manifest.read_text(encoding="utf-8")).get("root")
    except (OSError, ValueError, AttributeError):
        return None  # unreadable here: the INT8 stage names the problem
    return Path(root) if isinstance(root, str) else None


def export_model(source: str | os.PathLike | Any, out_dir: str | os.PathLike, options: ExportOptions, *,
                 overwrite: bool = False) -> Path:
    """Fold ``source`` and write a verified artifact bundle to ``out_dir``, as ``options`` say.

    ``source`` is a ``.boq`` checkpoint path or a (folded or unfolded) model. ``overwrite``
    replaces an existing bundle (CLI: ``--force``). Returns the bundle path.
    """
    target = get_target(options.target)
    out = Path(out_dir)
    inputs = _inputs(source, options)
    check_output_dir(out, overwrite, inputs)
    target.check(options)
    folded, meta = _load(source, options.image_size)
    draft = _draft(folded, meta, options)
    target.prepare(draft, options, out)
    with staging_dir(out, overwrite, inputs) as stage, tempfile.TemporaryDirectory(prefix="boq-export-") as tmp:
        if options.precision is Precision.INT8:
            _quantize(folded, target, stage, Path(tmp), options, draft)
        else:
            target.emit(folded, stage, options, draft, Path(tmp))
        draft.toolchain = toolchain_versions()
        write_bundle(stage, out, draft, replace=overwrite)
    target.finish(out, options)
    return out


__all__ = ["BundleError", "ExportError", "ExportOptions", "Precision", "export_model"]
