"""``boq-edge info``: describe a checkpoint, or verify and describe a bundle (torch-free for bundles)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from boq_edge.cli.app import app, console, fail, load_model


@app.command("info")
def info_cmd(path: Path = typer.Argument(
        ..., help="A .boq checkpoint, an artifact bundle directory or a calibration manifest (.json).")) -> None:
    """Describe a checkpoint (preset, dims, parameters, input), or verify and describe a bundle or calibration set."""
    if path.is_dir():
        show_bundle(path)
    elif path.suffix.lower() == ".json":
        show_calibration(path)
    else:
        show_checkpoint(path)


def show_calibration(path: Path) -> None:
    """A calibration manifest, every image checked against its recorded sha256."""
    from boq_edge.calibration.calibset import CalibrationError, load_calibration_set

    try:
        calib = load_calibration_set(path, verify=True)
    except CalibrationError as e:
        fail(str(e))
    src = calib.source
    t = Table(show_header=False, title=f"calibration set {path} (every image verified)")
    t.add_row("images", f"{len(calib)} of {src.get('pool_size')} (seed {calib.seed})")
    t.add_row("source", f"{src.get('format')} {src.get('options') or ''} {src.get('data') or ''}".strip())
    checked = src.get("leak_check")
    t.add_row("leak check", ", ".join(str(c.get("benchmark")) for c in checked if isinstance(c, dict))
              if isinstance(checked, list) and checked else "none (no evaluation split was given)")
    t.add_row("repeated pixels", str(src.get("repeated_content", "not recorded")))
    t.add_row("sha256", calib.content_hash())
    console.print(t)


def show_checkpoint(path: Path) -> None:
    from boq_edge.model import CheckpointError, read_checkpoint_header

    try:
        config, _ = read_checkpoint_header(path)
    except CheckpointError as e:
        fail(str(e))
    model, _, meta = load_model(path, None, None)
    t = Table(show_header=False, title=str(path))
    t.add_row("preset", config.name)
    t.add_row("backbone", config.backbone)
    t.add_row("BoQ", f"proj {config.proj_channels}, {config.num_queries} queries × {config.num_layers} blocks, "
              f"row_dim {config.row_dim}")
    t.add_row("descriptor dim", str(config.descriptor_dim))
    t.add_row("input", f"{config.image_size[0]}×{config.image_size[1]} ({config.preprocessing.interpolation})")
    t.add_row("parameters", f"{sum(p.numel() for p in model.parameters()):,}")
    t.add_row("trainable", f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,}")
    for k, v in meta.items():
        t.add_row(k, str(v))
    console.print(t)


def _quantization_rows(q: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not q:
        return [("quantization", "none")]
    rows = [("quantization", f"{q.get('method')}, scheme {q.get('scheme')}"),
            ("calibration", f"{q.get('calibration_images')} images, sha256 {str(q.get('calibration_sha256'))[:16]}…"),
            ("left in float", f"{len(q.get('float_ops') or [])} ops ({len(q.get('ill_conditioned') or [])} "
                              f"ill-conditioned, {len(q.get('reverted_to_float') or [])} reverted by accuracy "
                              f"control)")]
    if q.get("cosine_to_fp32") is not None:
        rows.append(("cosine to FP32", f"{q['cosine_to_fp32']:.5f} (mean, calibration images)"))
    if q.get("r1_drop_pp") is not None:
        rows.append(("validation R@1", f"FP32 {q.get('r1_fp32'):.2f} → INT8 {q.get('r1_int8'):.2f} on "
                                       f"{q.get('validation')} (drop {q['r1_drop_pp']:.2f} pp)"))
    return rows


def show_bundle(path: Path) -> None:
    """Refuse (one line, exit 2) a bundle whose manifest or any file does not verify; else describe it."""
    from boq_edge.export.targets import get_target
    from boq_edge.runtime.manifest import BundleError, read_manifest

    try:
        m = read_manifest(path, verify=True)
    except BundleError as e:
        fail(str(e))
    t = Table(show_header=False, title=f"bundle {path} (schema v{m.schema_version}, verified)")
    pre = m.preprocessing
    onnx = m.onnx or {}
    rows = [("target", m.target), ("precision", m.precision), ("preset", m.preset),
            ("descriptor dim", str(m.descriptor_dim)),
            ("input", f"{m.input_name} {m.input_shape} float32 → {m.output_name}"),
            ("batch min:opt:max", ":".join(map(str, m.batch_range))),
            ("preprocessing", f"{pre['height']}×{pre['width']} {pre['interpolation']}, mean {pre['mean']}, "
                              f"std {pre['std']}, {pre['layout']}")]
    if m.inference_precision:
        rows.append(("OpenVINO inference precision", m.inference_precision))
    if onnx:
        rows.append(("ONNX", f"{onnx.get('exporter')}, opset {onnx.get('opset')}"))
    fp16 = onnx.get("fp16")
    if fp16:
        kept = len(fp16.get("kept_fp32_large_constant_nodes", [])) + len(fp16.get("kept_fp32_normalize_tail", []))
        rows.append(("kept in FP32", f"{', '.join(fp16.get('kept_fp32_op_types', []))} + {kept} nodes"))
    rows += _quantization_rows(m.quantization)
    rows += [("folding applied", str(m.folding.get("applied"))),
             ("source checkpoint", f"{m.source.get('checkpoint')} sha256 {m.checkpoint_sha256}")]
    rows += get_target(m.target).describe(m)
    rows += [("toolchain", ", ".join(f"{k} {v}" for k, v in m.toolchain.items() if v)),
             ("created (UTC)", str(m.created_utc))]
    for label, value in rows:
        t.add_row(label, value)
    console.print(t)
    files = Table("file", "bytes", "sha256", "check", title="files")
    for rel, sha in sorted(m.files.items()):
        files.add_row(rel, f"{(path / rel).stat().st_size:,}", sha[:16] + "…", "[green]ok[/]")
    console.print(files)
