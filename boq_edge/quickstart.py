"""The whole chain on data at hand, in minutes: train (or take a checkpoint) → export → validate.

``boq-edge quickstart`` is the README's main job. On a fresh clone beside ``../shared``
it trains the MobileNetV2 edge preset briefly on Nordland frames < 25000, builds a
calibration set from those same training frames, exports an ONNX FP32 bundle and INT8
bundles (OpenVINO, ONNX Runtime), validates every bundle against the FP32 checkpoint on
frames ≥ 25000 and writes the report. Every step is the public API a user would call;
nothing here is special to the quickstart except the defaults.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path("../shared/data/nordland-64x32")
DEFAULT_WEIGHTS = Path("../shared/weights/mobilenetv2_imagenet_features.pt")
TRAIN_FRAMES = ":25000"
EVAL_FRAMES = "25000:"


class QuickstartError(ValueError):
    """A missing input the user can supply (data folder, weights, checkpoint)."""


@dataclass
class QuickstartConfig:
    data: Path = DEFAULT_DATA
    out: Path = Path("runs/quickstart")
    checkpoint: Path | None = None  # skip training and use this FP32 checkpoint
    backbone_weights: Path | None = DEFAULT_WEIGHTS
    image_size: tuple[int, int] = (48, 96)
    epochs: int = 3
    max_minutes: float = 6.0
    calibration_images: int = 300
    threads: int | None = None
    targets: tuple[str, ...] = ("onnx-fp32", "openvino-int8", "onnx-int8")
    latency_iters: int = 50
    seed: int = 0
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


Log = Callable[[str], None]


def _check_inputs(cfg: QuickstartConfig) -> None:
    if not (cfg.data / "summer").is_dir() or not (cfg.data / "winter").is_dir():
        raise QuickstartError(
            f"{cfg.data} is not an aligned-traversal dataset with summer/ and winter/ folders; pass --data DIR "
            f"(two traversals with the same file names, frame numbers in the names)")
    if cfg.checkpoint is None and cfg.backbone_weights is not None and not cfg.backbone_weights.is_file():
        raise QuickstartError(f"backbone weights {cfg.backbone_weights} not found; pass --backbone-weights FILE, "
                              f"--no-backbone-weights to start from random, or --checkpoint CKPT to skip training")
    if cfg.checkpoint is not None and not cfg.checkpoint.is_file():
        raise QuickstartError(f"checkpoint {cfg.checkpoint} not found")


def train_step(cfg: QuickstartConfig, log: Log) -> Path:
    from boq_edge.train import TrainConfig, train

    tc = TrainConfig(
        preset="mobilenetv2-edge", backbone_weights=str(cfg.backbone_weights) if cfg.backbone_weights else None,
        image_size=cfg.image_size, data=str(cfg.data), format="aligned", frames=TRAIN_FRAMES,
        val=str(cfg.data), val_format="aligned", val_options={"frames": EVAL_FRAMES}, val_every=cfg.epochs,
        epochs=cfg.epochs, batch_places=64, lr=4e-4, warmup_epochs=0.5, lr_step_epochs=max(1, cfg.epochs - 1),
        out=str(cfg.out / "train"), seed=cfg.seed, threads=cfg.threads, progress=cfg.progress,
        max_minutes=cfg.max_minutes,
    )
    result = train(tc, log=log)
    ckpt = result.best_checkpoint or result.last_checkpoint
    if ckpt is None:
        raise QuickstartError("training wrote no checkpoint")
    return Path(ckpt)


def export_step(cfg: QuickstartConfig, ckpt: Path, log: Log) -> list[Path]:
    from boq_edge.calibration import Int8Options, build_calibration_set, save_calibration_set
    from boq_edge.data import read_benchmark
    from boq_edge.export.api import export_model
    from boq_edge.export.options import ExportOptions

    bundles = []
    calib_file = cfg.out / "calibration.json"
    for spec in cfg.targets:
        target, _, precision = spec.partition("-")
        out = cfg.out / "bundles" / spec
        int8 = None
        if precision == "int8":
            if not calib_file.is_file():
                eval_split = read_benchmark(cfg.data, "aligned", frames=EVAL_FRAMES)
                calib = build_calibration_set(cfg.data, cfg.calibration_images, seed=cfg.seed, format="aligned",
                                              options={"frames": TRAIN_FRAMES}, exclude=[eval_split])
                save_calibration_set(calib, calib_file)
                log(f"calibration set: {cfg.calibration_images} training-split images → {calib_file}")
            int8 = Int8Options(calibration=calib_file)
        t0 = time.perf_counter()
        options = ExportOptions(target=target, precision=precision, int8=int8)
        bundles.append(export_model(ckpt, out, options, overwrite=True))
        log(f"exported {spec} in {time.perf_counter() - t0:.1f} s → {out}")
    return bundles


def run_quickstart(cfg: QuickstartConfig, log: Log | None = None) -> dict[str, Any]:
    """Run the chain; returns the validation report (also written under ``cfg.out / 'validation'``)."""
    from boq_edge.data import read_benchmark
    from boq_edge.validate import validate, write_report

    say: Log = log or (lambda m: None)
    _check_inputs(cfg)
    t0 = time.perf_counter()
    ckpt = cfg.checkpoint or train_step(cfg, say)
    t_train = time.perf_counter() - t0
    bundles = export_step(cfg, ckpt, say)
    bench = read_benchmark(cfg.data, "aligned", frames=EVAL_FRAMES)
    report = validate(bundles, ckpt, bench, threads=cfg.threads, latency_iters=cfg.latency_iters,
                      progress=cfg.progress, num_workers=min(2, os.cpu_count() or 1))
    report["quickstart"] = {"checkpoint": str(ckpt), "trained": cfg.checkpoint is None,
                            "train_seconds": round(t_train, 1), "total_seconds": round(time.perf_counter() - t0, 1)}
    write_report(report, cfg.out / "validation")
    return report
