"""The training loop: place-balanced batches → Multi-Similarity loss → AdamW, validated every epoch.

One function, :func:`train`, used by ``boq-edge train`` and by tests. It writes into
``RUN_DIR``:

- ``best.boq`` (highest validation R@1) and ``last.boq``: full checkpoints in the project
  format (weights + model config + training provenance) that every later stage reads;
- ``best.state.pt`` / ``last.state.pt``: the resumable state (:mod:`boq_edge.train.state`);
- ``metrics.csv`` (one row per epoch) and ``config.json`` (the resolved settings).

Under ``torchrun`` every rank trains on its shard of each batch (DDP averages gradients)
and only rank 0 validates and writes. A run resumed from a state file reproduces the
uninterrupted run's weights: the data order and augmentation are functions of
(seed, epoch, batch), and the optimizer, schedule and RNG states are restored.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from boq_edge import __version__
from boq_edge.fileio import atomic_write_bytes
from boq_edge.model import ModelConfig, build_model, file_sha256, get_preset, save_checkpoint
from boq_edge.train.augment import build_augment
from boq_edge.train.config import TrainConfig
from boq_edge.train.datasets import PlaceImages, PlaceSet, collate_places, read_training_set
from boq_edge.train.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    broadcast_object,
    init_distributed,
    shutdown,
)
from boq_edge.train.loss import MultiSimilarityLoss
from boq_edge.train.sampler import PlaceBatchSampler
from boq_edge.train.state import ResumeError, load_state, resolve_resume, restore_rng, save_state

Log = Callable[[str], None]


class TrainError(ValueError):
    """A training set-up that cannot work; the message says what to change."""


class WarmupStepSchedule:
    """Linear warm-up over ``warmup_epochs``, then lr × ``gamma`` every ``step_epochs`` epochs (per step)."""

    def __init__(self, base_lr: float, steps_per_epoch: int, warmup_epochs: float, step_epochs: int,
                 gamma: float) -> None:
        self.base_lr, self.steps_per_epoch = base_lr, steps_per_epoch
        self.warmup_steps = round(warmup_epochs * steps_per_epoch)
        self.step_epochs, self.gamma = step_epochs, gamma

    def lr(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        return self.base_lr * self.gamma ** ((step // self.steps_per_epoch) // self.step_epochs)


@dataclass
class TrainResult:
    run_dir: Path
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    best_r1: float | None
    best_epoch: int | None
    last_recalls: dict[int, float]
    epochs_completed: int
    global_step: int
    train_seconds: float
    interrupted: bool
    history: list[dict[str, Any]] = field(default_factory=list)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (non-Linux)
        return os.cpu_count() or 1


def git_provenance() -> dict[str, Any]:
    """Commit and dirty flag of the boq-edge source tree, when it is a git checkout."""
    src = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip() != ""
        return {"git_commit": commit, "git_dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def resolve_model_config(cfg: TrainConfig) -> ModelConfig:
    """The preset with the training image size and trainable stages actually used, recorded in checkpoints."""
    preset = get_preset(cfg.preset)
    h, w = cfg.image_size or preset.train_image_size or preset.image_size
    mc = preset.with_image_size(h, w)
    changes: dict[str, Any] = {"train_image_size": (h, w)}
    if cfg.trainable_stages is not None:
        changes["trainable_stages"] = cfg.trainable_stages
    return replace(mc, **changes)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere it is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _amp_settings(amp: str, device: str) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use a GradScaler).

    ``auto`` picks bf16 on CPUs with native bf16: there it was ~2× faster than FP32 for the
    MobileNetV2 recipe, while on an AVX2-only CPU bf16 autocast is emulated and made an
    epoch several times slower than FP32 (both measured here).
    """
    cuda = device.startswith("cuda")
    if amp == "off":
        return None, False
    if amp == "auto":
        if cuda:
            return (torch.bfloat16, False) if torch.cuda.is_bf16_supported() else (torch.float16, True)
        return (torch.bfloat16, False) if cpu_has_native_bf16() else (None, False)
    if amp == "fp16":
        if not cuda:
            raise TrainError("--amp fp16 needs a CUDA GPU; on CPU use --amp bf16 or --amp off")
        return torch.float16, True
    if not cuda and not cpu_has_native_bf16():
        warnings.warn("--amp bf16 on a CPU without native bf16 (no avx512_bf16/amx_bf16): autocast is emulated "
                      "and much slower than FP32; use --amp auto or off", stacklevel=2)
    return torch.bfloat16, False


@contextmanager
def _graceful_interrupt() -> Iterator[dict[str, bool]]:
    """First Ctrl-C: finish the current step, save a resumable state, stop. Second: abort."""
    flag = {"stop": False}
    if threading_main():
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum: int, frame: Any) -> None:
            if flag["stop"]:
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            flag["stop"] = True

        signal.signal(signal.SIGINT, handler)
        try:
            yield flag
        finally:
            signal.signal(signal.SIGINT, previous)
    else:
        yield flag


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class _Metrics:
    """metrics.csv, rewritten on resume so rows after the resume point disappear."""

    def __init__(self, path: Path, k_values: tuple[int, ...], completed_epochs: int) -> None:
        self.path = path
        self.fields = ["epoch", "global_step", "lr", "loss", "batch_accuracy",
                       *[f"R@{k}" for k in k_values], "epoch_seconds", "train_seconds"]
        rows: list[dict[str, str]] = []
        if completed_epochs and path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= completed_epochs]
        self.rows: list[dict[str, Any]] = list(rows)
        self._write()

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self._write()

    def _write(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_bytes(self.path, buf.getvalue().encode())


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def train(cfg: TrainConfig, *, resume: str | os.PathLike | None = None, stop_after_steps: int | None = None,
          log: Log | None = None) -> TrainResult:
    """Train per ``cfg``; resume from a run dir / ``.boq`` / state file when ``resume`` is given.

    ``stop_after_steps`` stops (with a resumable state written) after that many optimizer
    steps in total — an interruption on purpose, used to test that resuming is exact.
    """
    dist_info = init_distributed(cfg.device)
    try:
        return _train(cfg, dist_info, resume, stop_after_steps, log or (lambda m: print(m, file=sys.stderr)))
    finally:
        shutdown(dist_info)


def _train(cfg: TrainConfig, di: DistInfo, resume: str | os.PathLike | None, stop_after_steps: int | None,
           log: Log) -> TrainResult:
    t_start = time.perf_counter()
    device = cfg.device or (f"cuda:{di.local_rank}" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(cfg.threads or max(1, _cores() // di.local_world_size))
    say = log if di.is_main else (lambda m: None)

    state = None
    if resume is not None:
        state = load_state(resolve_resume(resume))
        saved = TrainConfig.from_dict(state["config"])
        changed = {k for k, v in cfg.to_dict().items() if saved.to_dict()[k] != v} - _RESUME_FREE
        if changed:
            raise ResumeError(f"resume: setting(s) {', '.join(sorted(changed))} differ from the run being resumed; "
                              "only epochs, out, val*, num_workers, threads, progress, save_every_steps may change")
    run_dir = Path(cfg.out)

    # ---- data
    try:
        opts: dict[str, Any] = {}
        fmt = cfg.format
        if fmt == "auto":
            from boq_edge.train.datasets import detect_train_format

            fmt = detect_train_format(cfg.data)
        if fmt == "aligned":
            opts = {"traversals": cfg.traversals, "frames": cfg.frames, "frames_per_place": cfg.frames_per_place,
                    "skip_duplicates": cfg.skip_duplicates}
        elif fmt == "gsv-cities":
            opts = {"cities": cfg.cities}
            if cfg.frames or cfg.traversals:
                raise TrainError("--frames/--traversals apply to aligned training data, not gsv-cities")
        places = read_training_set(cfg.data, fmt, **opts)
    except FileNotFoundError as e:
        raise TrainError(str(e)) from None
    k = cfg.images_per_place or min(4, max(len(p) for p in places.places))
    if fmt == "gsv-cities" and cfg.images_per_place is None:
        k = 4
    usable = [p for p in places.places if len(p) >= k]
    if len(usable) < len(places.places):
        names = [n for n, p in zip(places.place_names, places.places, strict=True) if len(p) >= k]
        places = PlaceSet(places.name, places.format, places.root, usable, names, places.params,
                          {**places.skipped, "places_with_fewer_than_k": len(places.places) - len(usable)})
    if places.num_places < 2:
        raise TrainError(f"{places.name}: only {places.num_places} place(s) with >= {k} images; need at least 2")

    benchmark = None
    if cfg.val:
        from boq_edge.data import read_benchmark

        benchmark = read_benchmark(cfg.val, cfg.val_format, **cfg.val_options)
        from boq_edge.train.validate import overlapping_images

        shared = overlapping_images(places.all_paths(), benchmark)
        if shared:
            raise TrainError(f"{len(shared)} image(s) are in both the training data and the validation benchmark "
                             f"(e.g. {shared[0]}); separate them, e.g. --frames :25000 with --val-frames 25000:")

    model_config = resolve_model_config(cfg)
    spec = model_config.preprocessing
    torch.manual_seed(cfg.seed)
    model = build_model(model_config, None if state else cfg.backbone_weights).to(device)
    if state is not None:
        model.load_state_dict(state["model"], strict=True)
    dataset = PlaceImages(places, spec, k, build_augment(cfg.augment, cfg.augment_ops, cfg.augment_magnitude),
                          cache=cfg.cache_images)
    sampler = PlaceBatchSampler(places.num_places, cfg.batch_places, cfg.seed, di.rank, di.world_size)
    steps_per_epoch = sampler.batches_per_epoch
    loader: torch.utils.data.DataLoader[Any] = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=cfg.num_workers, collate_fn=collate_places,  # type: ignore[arg-type]
        pin_memory=device.startswith("cuda"))

    params = [p for p in model.parameters() if p.requires_grad]
    # fused: one kernel for all parameters; the per-tensor Python loop cost ~20% of a CPU step.
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    schedule = WarmupStepSchedule(cfg.lr, steps_per_epoch, cfg.warmup_epochs, cfg.lr_step_epochs, cfg.lr_gamma)
    amp_dtype, use_scaler = _amp_settings(cfg.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    criterion = MultiSimilarityLoss(cfg.ms_alpha, cfg.ms_beta, cfg.ms_base, cfg.miner_epsilon)
    ddp_model: torch.nn.Module = model
    if di.enabled:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[di.local_rank] if device.startswith("cuda") else None)

    start_epoch, start_batch, global_step = 0, 0, 0
    best: dict[str, Any] = {"r1": None, "epoch": None, "recalls": None}
    sums = {"loss": 0.0, "acc": 0.0, "n": 0}
    train_seconds = 0.0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        if use_scaler and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        start_epoch, start_batch, global_step = state["epoch"], state["batch_in_epoch"], state["schedule_step"]
        best = state["best"]
        sums = state["extra"].get("sums", sums)
        train_seconds = float(state["extra"].get("train_seconds", 0.0))
        restore_rng(state["rng"])
        say(f"resuming at epoch {start_epoch + 1}, batch {start_batch}/{steps_per_epoch} (step {global_step})")

    train_summary = places.summary()
    val_summary = benchmark.summary() if benchmark is not None else None
    weights_info = None
    if cfg.backbone_weights:
        weights_info = {"path": str(cfg.backbone_weights), "sha256": file_sha256(cfg.backbone_weights)}
    if state is not None:
        weights_info = state["extra"].get("backbone_weights", weights_info)
    provenance_static = {
        "source": "train", "train_data": train_summary, "val_data": val_summary,
        "images_per_place": k, "hyperparameters": cfg.to_dict(), "seed": cfg.seed, "world_size": di.world_size,
        "device": device, "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "off",
        "backbone_weights": weights_info, "torch_version": torch.__version__, "boq_edge_version": __version__,
        **git_provenance(),
    }
    metrics = None
    tb = None
    validator = None
    if benchmark is not None and di.is_main:
        from boq_edge.train.validate import Validator

        validator = Validator(benchmark, spec, cfg.val_k, cfg.eval_batch_size, cfg.num_workers, device, cfg.progress)
    if di.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2).encode())
        metrics = _Metrics(run_dir / "metrics.csv", cfg.val_k, start_epoch)
        tb = _tensorboard(run_dir)
        say(f"training {model_config.name} at {spec.height}x{spec.width} on {places.name}: {places.num_places} places "
            f"× {k} images ({places.skipped}), {steps_per_epoch} steps/epoch of {cfg.batch_places} places"
            f"{f' × {di.world_size} processes' if di.enabled else ''}; device {device}, amp "
            f"{provenance_static['amp']}, {torch.get_num_threads()} threads")

    last_ckpt = best_ckpt = None
    last_recalls: dict[int, float] = {}
    interrupted = False

    def save_resume_state(path: Path, next_epoch: int, next_batch: int) -> None:
        save_state(path, model=model, optimizer=optimizer, scaler_state=scaler.state_dict() if use_scaler else {},
                   schedule_step=global_step, epoch=next_epoch, batch_in_epoch=next_batch, best=best,
                   config=cfg.to_dict(),
                   extra={"sums": sums, "train_seconds": train_seconds, "backbone_weights": weights_info})

    def checkpoint(name: str, next_epoch: int, next_batch: int, recalls: dict[int, float] | None) -> Path:
        """``name``.boq + ``name``.state.pt; training continues at (next_epoch, next_batch)."""
        meta = {**provenance_static, "epochs": cfg.epochs, "epochs_completed": next_epoch,
                "global_step": global_step, "best_r1": best["r1"], "best_epoch": best["epoch"],
                "recalls": {f"R@{kk}": v for kk, v in (recalls or {}).items()},
                "train_seconds": round(train_seconds, 1)}
        path = save_checkpoint(model, run_dir / f"{name}.boq", meta)
        save_resume_state(run_dir / f"{name}.state.pt", next_epoch, next_batch)
        return path

    with _graceful_interrupt() as sigint:
        for epoch in range(start_epoch, cfg.epochs):
            first = start_batch if epoch == start_epoch else 0
            if first == 0:
                sums = {"loss": 0.0, "acc": 0.0, "n": 0}
            sampler.set_epoch(epoch, first)
            ddp_model.train()
            t_epoch = t_last = time.perf_counter()
            bar = tqdm(total=steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                       disable=not (cfg.progress and di.is_main), file=sys.stderr, leave=False, dynamic_ncols=True)
            batch = first
            for images, labels in loader:
                lr = schedule.lr(global_step)
                for g in optimizer.param_groups:
                    g["lr"] = lr
                images = images.to(device, non_blocking=True)
                labels = labels.to(device, non_blocking=True)
                ctx = torch.autocast(device.split(":")[0], dtype=amp_dtype) if amp_dtype else nullcontext()
                with ctx:
                    desc = ddp_model(images)
                loss, stats = criterion(desc.float(), labels)
                if not math.isfinite(stats.loss):
                    raise TrainError(f"loss became {stats.loss} at step {global_step}; lower --lr or use --amp off")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                global_step += 1
                batch += 1
                sums = {"loss": sums["loss"] + stats.loss, "acc": sums["acc"] + stats.batch_accuracy,
                        "n": sums["n"] + 1}
                now = time.perf_counter()
                train_seconds += now - t_last  # includes waiting for data, excludes validation
                t_last = now
                bar.update(1)
                bar.set_postfix(loss=f"{stats.loss:.4f}", acc=f"{stats.batch_accuracy:.2f}", lr=f"{lr:.2e}")
                if cfg.log_every_steps and global_step % cfg.log_every_steps == 0:
                    log(f"[rank {di.rank}] epoch {epoch + 1} step {global_step} loss {stats.loss:.4f} "
                        f"acc {stats.batch_accuracy:.3f} lr {lr:.3e}")
                stop = sigint["stop"] or (stop_after_steps is not None and global_step >= stop_after_steps)
                if di.enabled:
                    flag = torch.tensor([1.0 if stop else 0.0], device=device if di.backend == "nccl" else "cpu")
                    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                    stop = bool(flag.item())
                if stop and batch < steps_per_epoch:
                    interrupted = True
                    break
                if di.is_main and cfg.save_every_steps and global_step % cfg.save_every_steps == 0 \
                        and batch < steps_per_epoch:
                    save_resume_state(run_dir / "last.state.pt", epoch, batch)
                if stop:  # on the epoch's last batch: finish the epoch (validate, checkpoint), then stop
                    interrupted = True
            bar.close()
            epoch_seconds = time.perf_counter() - t_epoch
            if interrupted and batch < steps_per_epoch:
                if di.is_main:
                    last_ckpt = checkpoint("last", epoch, batch, None)
                    say(f"stopped at epoch {epoch + 1}, batch {batch}/{steps_per_epoch}; "
                        f"resume with --resume {run_dir}")
                barrier(di)
                break

            mean_loss = all_reduce_mean(di, sums["loss"] / max(1, sums["n"]))
            mean_acc = all_reduce_mean(di, sums["acc"] / max(1, sums["n"]))
            recalls: dict[int, float] = {}
            if di.is_main and benchmark is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                assert validator is not None
                res = validator(model)
                recalls = res.recalls
                last_recalls = recalls
                model.train()
                if best["r1"] is None or recalls[1] > best["r1"]:
                    best = {"r1": recalls[1], "epoch": epoch + 1, "recalls": {str(kk): v for kk, v in recalls.items()}}
                    best_ckpt = checkpoint("best", epoch + 1, 0, recalls)
            if di.is_main:
                last_ckpt = checkpoint("last", epoch + 1, 0, recalls or None)
                row = {"epoch": epoch + 1, "global_step": global_step, "lr": f"{schedule.lr(global_step - 1):.4g}",
                       "loss": f"{mean_loss:.5f}", "batch_accuracy": f"{mean_acc:.4f}",
                       "epoch_seconds": f"{epoch_seconds:.1f}", "train_seconds": f"{train_seconds:.1f}",
                       **{f"R@{kk}": f"{v:.2f}" for kk, v in recalls.items()}}
                assert metrics is not None
                metrics.add(row)
                if tb is not None:
                    tb.add_scalar("train/loss", mean_loss, epoch + 1)
                    tb.add_scalar("train/batch_accuracy", mean_acc, epoch + 1)
                    for kk, v in recalls.items():
                        tb.add_scalar(f"val/R@{kk}", v, epoch + 1)
                shown = "  ".join(f"R@{kk} {v:.1f}" for kk, v in recalls.items())
                say(f"epoch {epoch + 1}/{cfg.epochs}: loss {mean_loss:.4f}, batch acc {mean_acc:.3f}"
                    f"{', ' + shown if shown else ''} ({epoch_seconds:.0f}s, "
                    f"{time.perf_counter() - t_start:.0f}s total, {time.process_time():.0f}s CPU)")
            if cfg.max_minutes is not None and epoch + 1 < cfg.epochs:
                # Predictive: stop when one more epoch like the last (with validation) would end past the limit.
                now = time.perf_counter()
                over = (now - t_start + now - t_epoch) / 60 > cfg.max_minutes
                if bool(broadcast_object(di, over)):
                    say(f"stopping after epoch {epoch + 1}: another epoch would pass the {cfg.max_minutes:g}-minute "
                        "limit")
                    interrupted = True
            barrier(di)
            if interrupted:
                break
    if tb is not None:
        tb.close()
    epochs_done = len(metrics.rows) if metrics is not None else 0
    return TrainResult(run_dir, last_ckpt, best_ckpt, best["r1"], best["epoch"], last_recalls, epochs_done,
                       global_step, train_seconds, interrupted, list(metrics.rows) if metrics else [])


_RESUME_FREE = {"epochs", "out", "val", "val_format", "val_options", "val_k", "val_every", "num_workers", "threads",
                "progress", "save_every_steps", "log_every_steps", "eval_batch_size", "cache_images", "device"}

