"""``boq-edge export`` and ``boq-edge build-engine``: thin wrappers over export_model / build_engine_for_bundle.

``build-engine`` runs on the GPU device and never imports torch; ``export`` imports it
only inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from boq_edge.cli.app import app, console, fail


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value, unit = float(n) / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


def _print_bundle(path: Path) -> None:
    from boq_edge.runtime.manifest import read_manifest

    m = read_manifest(path, verify=True)
    t = Table(show_header=False, title=f"bundle {path}")
    t.add_row("target / precision", f"{m.target} / {m.precision}")
    t.add_row("preset", f"{m.preset} ({m.descriptor_dim}-D descriptors)")
    t.add_row("input", f"{m.input_name} {'×'.join(map(str, m.input_shape))}, batch {':'.join(map(str, m.batch_range))}")
    if m.inference_precision:
        t.add_row("OpenVINO CPU precision", m.inference_precision)
    for rel in sorted(m.files):
        t.add_row(rel, _size((path / rel).stat().st_size))
    console.print(t)


def _int8_options(calibration: Path | None, qat_epochs: int, max_r1_drop: float | None, val_data: Path | None,
                  val_format: str, val_frames: str | None, seed: int) -> dict[str, Any]:
    opts: dict[str, Any] = {"calibration": calibration, "qat_epochs": qat_epochs, "seed": seed,
                            "log": lambda m: console.print(f"[dim]{escape(m)}[/]", highlight=False)}
    if max_r1_drop is not None:
        opts["max_r1_drop"] = max_r1_drop
    if val_data is not None:
        opts["validation"] = {"path": val_data, "format": val_format,
                              **({"frames": val_frames} if val_frames is not None else {})}
    return opts


@app.command("export")
def export_cmd(
    ckpt: Path = typer.Argument(..., help="A .boq checkpoint (folded or not; it is folded before export)."),
    target: str = typer.Option(
        ..., "--target", "-t", help="onnx, openvino or tensorrt (aliases: ort, ov, trt, engine)."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle directory to write."),
    fp16: bool = typer.Option(False, "--fp16", help="FP16 weights/compute; LayerNorm, Softmax, L2-norm stay FP32."),
    int8: bool = typer.Option(
        False, "--int8", help="INT8: OpenVINO FakeQuantize (NNCF), ONNX Runtime u8s8 Q/DQ, or TensorRT explicit "
        "s8 Q/DQ (checked by lint-qdq). Attention and BN-amplified (ill-conditioned) layers stay float. "
        "Needs --calibration."),
    calibration: Path | None = typer.Option(
        None, "--calibration", "--calib", help="With --int8: calibration manifest from `boq-edge calibrate`."),
    qat_epochs: int = typer.Option(
        0, "--qat-epochs", min=0, help="With --int8: quantization-aware tuning epochs (FP32 teacher distillation "
        "on the calibration images); 0 = post-training quantization."),
    max_r1_drop: float | None = typer.Option(
        None, "--max-r1-drop", min=0.0, help="With --int8: Recall@1 budget in percentage points on --val-data. "
        "Alone it runs accuracy control (quantizers reverted to float until it holds); with --qat-epochs it is "
        "checked. A miss fails and writes nothing."),
    val_data: Path | None = typer.Option(
        None, "--val-data", help="With --int8: validation split for the measured Recall@1 drop (never the "
        "evaluation split)."),
    val_format: str = typer.Option("auto", "--val-format", help="Format of --val-data."),
    val_frames: str | None = typer.Option(None, "--val-frames", help="Aligned --val-data: frame range, e.g. "
                                          "20000:25000."),
    seed: int = typer.Option(0, "--seed", help="With --qat-epochs: tuning seed."),
    batch: int | None = typer.Option(None, "--batch", help="Fixed batch size N (same as --batch-range N:N:N)."),
    batch_range: str | None = typer.Option(None, "--batch-range", help="MIN:OPT:MAX batch sizes (default 1:1:8)."),
    image_size: tuple[int, int] | None = typer.Option(
        None, "--image-size", help="Input H W (default: the model's)."),
    opset: int = typer.Option(18, help="ONNX opset (>= 18)."),
    inference_precision: str | None = typer.Option(
        None, help="OpenVINO only: CPU inference precision to record, f32 (default), f16 or bf16."),
    workspace_gib: float | None = typer.Option(None, help="TensorRT only: builder workspace limit in GiB."),
    build_engine: bool | None = typer.Option(
        None, "--build-engine/--no-build-engine",
        help="TensorRT only: build the engine now (default: when TensorRT and a GPU are present)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing bundle."),
) -> None:
    """Fold a checkpoint and write an ONNX / OpenVINO / TensorRT artifact bundle."""
    from boq_edge.export.api import DEFAULT_BATCH_RANGE, ExportError, export_model, parse_batch_range, resolve_target
    from boq_edge.export.bundle import BundleError
    from boq_edge.export.tensorrt_export import TensorRTOptions, build_engine_command, tensorrt_status
    from boq_edge.model import CheckpointError

    try:
        tgt = resolve_target(target)
    except ExportError as e:
        fail(str(e))
    if batch is not None and batch_range is not None:
        fail("give --batch N or --batch-range MIN:OPT:MAX, not both")
    if fp16 and int8:
        fail("--fp16 and --int8 are exclusive: an INT8 bundle keeps its float parts in FP32")
    int8_flags = {"--calibration": calibration is not None, "--qat-epochs": qat_epochs > 0,
                  "--max-r1-drop": max_r1_drop is not None, "--val-data": val_data is not None}
    if not int8 and any(int8_flags.values()):
        fail(f"{', '.join(k for k, v in int8_flags.items() if v)} only apply with --int8")
    if int8 and calibration is None:
        fail("--int8 needs --calibration FILE: make one with `boq-edge calibrate --data DIR -n 512 -o calib.json` "
             "from training images (not the evaluation split)")
    if max_r1_drop is not None and val_data is None:
        fail("--max-r1-drop needs --val-data DIR: Recall@1 is measured on a validation split")
    if val_frames is not None and val_data is None:
        fail("--val-frames needs --val-data")
    if tgt != "tensorrt" and (workspace_gib is not None or build_engine is not None):
        fail("--workspace-gib and --build-engine apply to --target tensorrt only")
    if inference_precision is not None and tgt != "openvino":
        fail("--inference-precision applies to --target openvino only")
    if not ckpt.is_file():
        fail(f"{ckpt}: no such checkpoint file")
    try:
        br = parse_batch_range(batch_range) if batch_range else parse_batch_range(str(batch)) if batch \
            else DEFAULT_BATCH_RANGE
        trt_opts = TensorRTOptions(workspace_gib=workspace_gib) if workspace_gib is not None else None
        path = export_model(
            ckpt, tgt, out, fp16=fp16, batch_range=br, image_size=image_size,
            int8=_int8_options(calibration, qat_epochs, max_r1_drop, val_data, val_format, val_frames, seed)
            if int8 else None, opset=opset,
            inference_precision=inference_precision, tensorrt=trt_opts, build_engine=build_engine, overwrite=force)
    except (ExportError, BundleError, CheckpointError, ValueError) as e:
        fail(str(e))
    except RuntimeError as e:  # INT8 budget misses (AccuracyBudgetError), TensorRT build failures
        fail(str(e))
    _print_bundle(path)
    if tgt == "tensorrt" and not (path / "model.engine").is_file():
        _, why = tensorrt_status()
        console.print(f"[bold]engine pending[/]: {escape(why)}. Copy {path} to the GPU device and run there:\n"
                      f"    {build_engine_command(path)}", highlight=False, soft_wrap=True)


@app.command("build-engine")
def build_engine_cmd(
    bundle: Path = typer.Argument(..., help="A TensorRT bundle written by `boq-edge export --target tensorrt`."),
    workspace_gib: float = typer.Option(4.0, help="Builder workspace limit in GiB."),
    timing_cache: Path | None = typer.Option(None, help="Also read/update this timing cache file."),
    tf32: bool = typer.Option(False, "--tf32", help="Allow TF32 in FP32 layers (faster, ~1e-3 relative error)."),
    opt_level: int | None = typer.Option(None, help="TensorRT builder optimization level (0-5)."),
    force: bool = typer.Option(False, "--force", help="Rebuild an existing engine."),
    verbose: bool = typer.Option(False, "--verbose", help="Show TensorRT's build log."),
) -> None:
    """Build the TensorRT engine of a bundle on this GPU device (torch is not needed)."""
    from boq_edge.export.tensorrt_export import TensorRTOptions, build_engine_for_bundle
    from boq_edge.runtime.base import RuntimeUnavailable
    from boq_edge.runtime.manifest import BundleError

    opts = TensorRTOptions(workspace_gib=workspace_gib, timing_cache=timing_cache, tf32=tf32,
                           builder_optimization_level=opt_level, verbose=verbose)
    try:
        m = build_engine_for_bundle(bundle, opts, force=force)
    except (RuntimeUnavailable, BundleError, RuntimeError) as e:
        fail(str(e))
    info = m.raw.get("tensorrt", {})
    console.print(f"built {bundle / 'model.engine'} with TensorRT {info.get('version')} on {info.get('gpu')} "
                  f"(batch {':'.join(map(str, m.batch_range))})", highlight=False)
    _print_bundle(bundle)
