"""``boq-edge export``: a thin wrapper over :func:`boq_edge.export.api.export_model`.

Flags become :class:`~boq_edge.export.options.ExportOptions` (and ``Int8Options``, and
the target's own options); the rules between them are checked there, not here. torch is
imported only inside the command.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from boq_edge.cli.app import app, console, fail
from boq_edge.cli.reports import print_bundle
from boq_edge.export.targets import TARGETS


def _target_options(inference_precision: str | None, workspace_gib: float | None,
                    build_engine: bool | None) -> Any:
    """The target's own options object for the target-specific flags given (ExportOptions checks the match)."""
    from boq_edge.export.targets.openvino import OpenVINOOptions
    from boq_edge.export.targets.tensorrt import TensorRTOptions

    given = []
    if inference_precision is not None:
        given.append(OpenVINOOptions(inference_precision=inference_precision))
    if workspace_gib is not None or build_engine is not None:
        given.append(TensorRTOptions(**({"workspace_gib": workspace_gib} if workspace_gib is not None else {}),
                                     build_engine=build_engine))
    if len(given) > 1:
        fail("--inference-precision is for --target openvino, --workspace-gib/--build-engine for --target "
             "tensorrt: give only one target's options")
    return given[0] if given else None


def _int8_options(int8: bool, calibration: Path | None, calib_root: Path | None, qat_epochs: int,
                  max_r1_drop: float | None, val_data: Path | None, val_format: str, val_frames: str | None,
                  seed: int) -> Any:
    from boq_edge.calibration.options import Int8Options, ValidationSpec

    flags = {"--calibration": calibration is not None, "--calib-root": calib_root is not None,
             "--qat-epochs": qat_epochs > 0, "--max-r1-drop": max_r1_drop is not None,
             "--val-data": val_data is not None}
    if not int8:
        if any(flags.values()):
            fail(f"{', '.join(k for k, v in flags.items() if v)} only apply with --int8")
        return None
    if val_frames is not None and val_data is None:
        fail("--val-frames needs --val-data")
    validation = None if val_data is None else ValidationSpec(
        val_data, val_format, {"frames": val_frames} if val_frames is not None else {})
    return Int8Options(calibration=calibration, calibration_root=calib_root, qat_epochs=qat_epochs,
                       max_r1_drop=max_r1_drop,
                       validation=validation, seed=seed,
                       log=lambda m: console.print(f"[dim]{escape(m)}[/]", highlight=False))


@app.command("export")
def export_cmd(
    ckpt: Path = typer.Argument(..., help="A .boq checkpoint (folded or not; it is folded before export)."),
    target: str = typer.Option(
        ..., "--target", "-t", help=f"{', '.join(TARGETS)} (aliases: "
        f"{', '.join(a for t in TARGETS.values() for a in t.aliases)})."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle directory to write."),
    fp16: bool = typer.Option(False, "--fp16", help="FP16 weights/compute; LayerNorm, Softmax, L2-norm stay FP32."),
    int8: bool = typer.Option(
        False, "--int8", help="INT8: OpenVINO FakeQuantize (NNCF), ONNX Runtime u8s7 Q/DQ, or TensorRT explicit "
        "s8 Q/DQ (checked by lint-qdq). Attention and BN-amplified (ill-conditioned) layers stay float. "
        "Needs --calibration."),
    calibration: Path | None = typer.Option(
        None, "--calibration", "--calib", help="With --int8: calibration manifest from `boq-edge calibrate`."),
    calib_root: Path | None = typer.Option(
        None, "--calib-root", help="With --calib: the folder its image paths are relative to, when the data "
        "moved since the manifest was written."),
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
    """Fold a checkpoint and write an artifact bundle for one target."""
    from boq_edge.export.api import export_model
    from boq_edge.export.options import DEFAULT_BATCH_RANGE, ExportOptions, Precision, parse_batch_range

    if batch is not None and batch_range is not None:
        fail("give --batch N or --batch-range MIN:OPT:MAX, not both")
    if not ckpt.is_file():
        fail(f"{ckpt}: no such checkpoint file")
    with _user_errors():
        precision = Precision.from_flags(fp16, int8)
        int8_options = _int8_options(int8, calibration, calib_root, qat_epochs, max_r1_drop, val_data, val_format,
                                     val_frames, seed)
        target_options = _target_options(inference_precision, workspace_gib, build_engine)
        text = batch_range or (str(batch) if batch is not None else None)
        options = ExportOptions(target=target, precision=precision, int8=int8_options,
                                batch_range=parse_batch_range(text) if text else DEFAULT_BATCH_RANGE,
                                image_size=image_size, opset=opset, target_options=target_options)
        t0 = time.perf_counter()
        path = export_model(ckpt, out, options, overwrite=force)
    print_bundle(path)
    console.print(f"exported in {time.perf_counter() - t0:.1f} s", highlight=False)
    _print_next_step(path)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Errors a user can act on become one line: exit 1 for a missed Recall@1 budget, 2 for bad input."""
    from boq_edge.calibration.pipeline import AccuracyBudgetError
    from boq_edge.export.onnx_export import ExportError
    from boq_edge.model import CheckpointError
    from boq_edge.runtime.manifest import BundleError

    try:
        yield
    except AccuracyBudgetError as e:
        fail(str(e), code=1)
    # ValueError: option and calibration rules; RuntimeError: TensorRT build failures
    except (ExportError, BundleError, CheckpointError, ValueError, RuntimeError) as e:
        fail(str(e))


def _print_next_step(path: Path) -> None:
    from boq_edge.export.targets import get_target
    from boq_edge.runtime.manifest import read_manifest

    m = read_manifest(path, verify=False)
    step = get_target(m.target).next_step(m)
    if step:
        console.print(escape(step), highlight=False, soft_wrap=True)
