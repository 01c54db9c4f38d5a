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
from boq_edge.fileio import atomic_write_bytes, file_sha256
from boq_edge.model import ModelConfig, build_model, get_preset, save_checkpoint
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


def _load_resume(cfg: TrainConfig, resume: str | os.PathLike | None) -> dict[str, Any] | None:
    """The state to resume from, refused when settings that shape the run differ from it."""
    if resume is None:
        return None
    state = load_state(resolve_resume(resume))
    saved = TrainConfig.from_dict(state["config"])
    changed = {k for k, v in cfg.to_dict().items() if saved.to_dict()[k] != v} - _RESUME_FREE
    if changed:
        raise ResumeError(f"resume: setting(s) {', '.join(sorted(changed))} differ from the run being resumed; "
                          "only epochs, out, val*, num_workers, threads, progress, save_every_steps may change")
    return state


def _read_places(cfg: TrainConfig) -> tuple[PlaceSet, int]:
    """The training places (those with at least k images) and k."""
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
    return places, k


def _read_validation(cfg: TrainConfig, places: PlaceSet) -> Any:
    """The validation benchmark, refused when it shares images with the training data."""
    if not cfg.val:
        return None
    from boq_edge.data import read_benchmark
    from boq_edge.train.epoch_recall import overlapping_images

    benchmark = read_benchmark(cfg.val, cfg.val_format, **cfg.val_options)
    shared = overlapping_images(places.all_paths(), benchmark)
    if shared:
        raise TrainError(f"{len(shared)} image(s) are in both the training data and the validation benchmark "
                         f"(e.g. {shared[0]}); separate them, e.g. --frames :25000 with --val-frames 25000:")
    return benchmark


class _Run:
    """One training run: its model, optimizer and counters; each method is one phase of :func:`_train`."""

    def __init__(self, cfg: TrainConfig, di: DistInfo, places: PlaceSet, k: int, benchmark: Any,
                 state: dict[str, Any] | None, log: Log, t_start: float) -> None:
        self.cfg, self.di, self.places, self.k, self.benchmark, self.log = cfg, di, places, k, benchmark, log
        self.t_start = t_start  # the wall-time budget counts from the start of train(), data reading included
        self.device = cfg.device or (f"cuda:{di.local_rank}" if torch.cuda.is_available() else "cpu")
        torch.set_num_threads(cfg.threads or max(1, _cores() // di.local_world_size))
        self.say = log if di.is_main else (lambda m: None)
        self.run_dir = Path(cfg.out)
        self.model_config = resolve_model_config(cfg)
        self.spec = self.model_config.preprocessing
        torch.manual_seed(cfg.seed)
        self.model = build_model(self.model_config, None if state else cfg.backbone_weights).to(self.device)
        if state is not None:
            self.model.load_state_dict(state["model"], strict=True)
        self._build_optimization()
        # counters a resumable state carries
        self.start_epoch, self.start_batch, self.global_step = 0, 0, 0
        self.best: dict[str, Any] = {"r1": None, "epoch": None, "recalls": None}
        self.sums = {"loss": 0.0, "acc": 0.0, "n": 0}
        self.train_seconds = 0.0
        self.weights_info = None
        if cfg.backbone_weights:
            self.weights_info = {"path": str(cfg.backbone_weights), "sha256": file_sha256(cfg.backbone_weights)}
        if state is not None:
            self._restore(state)
        self.last_ckpt: Path | None = None
        self.best_ckpt: Path | None = None
        self.last_recalls: dict[int, float] = {}
        self.metrics: _Metrics | None = None
        self.tb: Any = None
        self.validator: Any = None

    def _build_optimization(self) -> None:
        cfg, di = self.cfg, self.di
        dataset = PlaceImages(self.places, self.spec, self.k,
                              build_augment(cfg.augment, cfg.augment_ops, cfg.augment_magnitude),
                              cache=cfg.cache_images)
        self.sampler = PlaceBatchSampler(self.places.num_places, cfg.batch_places, cfg.seed, di.rank, di.world_size)
        self.steps_per_epoch = self.sampler.batches_per_epoch
        self.loader: torch.utils.data.DataLoader[Any] = torch.utils.data.DataLoader(
            dataset, batch_sampler=self.sampler, num_workers=cfg.num_workers,  # type: ignore[arg-type]
            collate_fn=collate_places, pin_memory=self.device.startswith("cuda"))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # fused: one kernel for all parameters; the per-tensor Python loop cost ~20% of a CPU step.
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        self.schedule = WarmupStepSchedule(cfg.lr, self.steps_per_epoch, cfg.warmup_epochs, cfg.lr_step_epochs,
                                           cfg.lr_gamma)
        self.amp_dtype, self.use_scaler = _amp_settings(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_scaler)
        self.criterion = MultiSimilarityLoss(cfg.ms_alpha, cfg.ms_beta, cfg.ms_base, cfg.miner_epsilon)
        self.ddp_model: torch.nn.Module = self.model
        if di.enabled:
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[di.local_rank] if self.device.startswith("cuda") else None)

    def _restore(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.use_scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.start_batch, self.global_step = (state["epoch"], state["batch_in_epoch"],
                                                                state["schedule_step"])
        self.best = state["best"]
        self.sums = state["extra"].get("sums", self.sums)
        self.train_seconds = float(state["extra"].get("train_seconds", 0.0))
        self.weights_info = state["extra"].get("backbone_weights", self.weights_info)
        restore_rng(state["rng"])
        self.say(f"resuming at epoch {self.start_epoch + 1}, batch {self.start_batch}/{self.steps_per_epoch} "
                 f"(step {self.global_step})")

    def open_outputs(self) -> None:
        """Validator, run folder, config.json, metrics.csv, TensorBoard (rank 0 only); announce the run."""
        cfg, di = self.cfg, self.di
        self.provenance = {
            "source": "train", "train_data": self.places.summary(),
            "val_data": self.benchmark.summary() if self.benchmark is not None else None,
            "images_per_place": self.k, "hyperparameters": cfg.to_dict(), "seed": cfg.seed,
            "world_size": di.world_size, "device": self.device,
            "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off",
            "backbone_weights": self.weights_info, "torch_version": torch.__version__, "boq_edge_version": __version__,
            **git_provenance(),
        }
        if not di.is_main:
            return
        if self.benchmark is not None:
            from boq_edge.train.epoch_recall import Validator

            self.validator = Validator(self.benchmark, self.spec, cfg.val_k, cfg.eval_batch_size, cfg.num_workers,
                                       self.device, cfg.progress)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2).encode())
        self.metrics = _Metrics(self.run_dir / "metrics.csv", cfg.val_k, self.start_epoch)
        self.tb = _tensorboard(self.run_dir)
        self.say(f"training {self.model_config.name} at {self.spec.height}x{self.spec.width} on {self.places.name}: "
                 f"{self.places.num_places} places × {self.k} images ({self.places.skipped}), {self.steps_per_epoch} "
                 f"steps/epoch of {cfg.batch_places} places{f' × {di.world_size} processes' if di.enabled else ''}; "
                 f"device {self.device}, amp {self.provenance['amp']}, {torch.get_num_threads()} threads")

    def save_resume_state(self, path: Path, next_epoch: int, next_batch: int) -> None:
        save_state(path, model=self.model, optimizer=self.optimizer,
                   scaler_state=self.scaler.state_dict() if self.use_scaler else {},
                   schedule_step=self.global_step, epoch=next_epoch, batch_in_epoch=next_batch, best=self.best,
                   config=self.cfg.to_dict(),
                   extra={"sums": self.sums, "train_seconds": self.train_seconds,
                          "backbone_weights": self.weights_info})

    def checkpoint(self, name: str, next_epoch: int, next_batch: int, recalls: dict[int, float] | None) -> Path:
        """``name``.boq + ``name``.state.pt; training continues at (next_epoch, next_batch)."""
        meta = {**self.provenance, "epochs": self.cfg.epochs, "epochs_completed": next_epoch,
                "global_step": self.global_step, "best_r1": self.best["r1"], "best_epoch": self.best["epoch"],
                "recalls": {f"R@{kk}": v for kk, v in (recalls or {}).items()},
                "train_seconds": round(self.train_seconds, 1)}
        path = save_checkpoint(self.model, self.run_dir / f"{name}.boq", meta)
        self.save_resume_state(self.run_dir / f"{name}.state.pt", next_epoch, next_batch)
        return path

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[Any, float]:
        """One optimizer step; returns the loss statistics and the learning rate used."""
        lr = self.schedule.lr(self.global_step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        ctx = torch.autocast(self.device.split(":")[0], dtype=self.amp_dtype) if self.amp_dtype else nullcontext()
        with ctx:
            desc = self.ddp_model(images)
        loss, stats = self.criterion(desc.float(), labels)
        if not math.isfinite(stats.loss):
            raise TrainError(f"loss became {stats.loss} at step {self.global_step}; lower --lr or use --amp off")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.global_step += 1
        self.sums = {"loss": self.sums["loss"] + stats.loss, "acc": self.sums["acc"] + stats.batch_accuracy,
                     "n": self.sums["n"] + 1}
        return stats, lr

    def _should_stop(self, sigint: dict[str, bool], stop_after_steps: int | None) -> bool:
        """Ctrl-C or the step budget, agreed by every rank."""
        stop = sigint["stop"] or (stop_after_steps is not None and self.global_step >= stop_after_steps)
        if self.di.enabled:
            flag = torch.tensor([1.0 if stop else 0.0], device=self.device if self.di.backend == "nccl" else "cpu")
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        return stop

    def train_epoch(self, epoch: int, first: int, sigint: dict[str, bool],
                    stop_after_steps: int | None) -> tuple[int, bool]:
        """Steps from batch ``first`` to the epoch's end (or a stop); returns (batches done, stop asked)."""
        cfg, di = self.cfg, self.di
        self.sampler.set_epoch(epoch, first)
        self.ddp_model.train()
        t_last = time.perf_counter()
        bar = tqdm(total=self.steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                   disable=not (cfg.progress and di.is_main), file=sys.stderr, leave=False, dynamic_ncols=True)
        batch, stopped = first, False
        for images, labels in self.loader:
            stats, lr = self._step(images, labels)
            batch += 1
            now = time.perf_counter()
            self.train_seconds += now - t_last  # includes waiting for data, excludes validation
            t_last = now
            bar.update(1)
            bar.set_postfix(loss=f"{stats.loss:.4f}", acc=f"{stats.batch_accuracy:.2f}", lr=f"{lr:.2e}")
            if cfg.log_every_steps and self.global_step % cfg.log_every_steps == 0:
                self.log(f"[rank {di.rank}] epoch {epoch + 1} step {self.global_step} loss {stats.loss:.4f} "
                         f"acc {stats.batch_accuracy:.3f} lr {lr:.3e}")
            stopped = self._should_stop(sigint, stop_after_steps)
            if stopped and batch < self.steps_per_epoch:
                break
            if di.is_main and cfg.save_every_steps and self.global_step % cfg.save_every_steps == 0 \
                    and batch < self.steps_per_epoch:
                self.save_resume_state(self.run_dir / "last.state.pt", epoch, batch)
            # a stop on the epoch's last batch finishes the epoch (validate, checkpoint), then stops
        bar.close()
        return batch, stopped

    def end_epoch(self, epoch: int, epoch_seconds: float) -> None:
        """Validate (when due), keep the best and last checkpoints, write the metrics row, log."""
        cfg = self.cfg
        mean_loss = all_reduce_mean(self.di, self.sums["loss"] / max(1, self.sums["n"]))
        mean_acc = all_reduce_mean(self.di, self.sums["acc"] / max(1, self.sums["n"]))
        if not self.di.is_main:
            return
        recalls: dict[int, float] = {}
        if self.validator is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
            recalls = self.last_recalls = self.validator(self.model).recalls
            self.model.train()
            if self.best["r1"] is None or recalls[1] > self.best["r1"]:
                self.best = {"r1": recalls[1], "epoch": epoch + 1,
                             "recalls": {str(kk): v for kk, v in recalls.items()}}
                self.best_ckpt = self.checkpoint("best", epoch + 1, 0, recalls)
        self.last_ckpt = self.checkpoint("last", epoch + 1, 0, recalls or None)
        assert self.metrics is not None
        self.metrics.add({"epoch": epoch + 1, "global_step": self.global_step,
                          "lr": f"{self.schedule.lr(self.global_step - 1):.4g}", "loss": f"{mean_loss:.5f}",
                          "batch_accuracy": f"{mean_acc:.4f}", "epoch_seconds": f"{epoch_seconds:.1f}",
                          "train_seconds": f"{self.train_seconds:.1f}",
                          **{f"R@{kk}": f"{v:.2f}" for kk, v in recalls.items()}})
        if self.tb is not None:
            self.tb.add_scalar("train/loss", mean_loss, epoch + 1)
            self.tb.add_scalar("train/batch_accuracy", mean_acc, epoch + 1)
            for kk, v in recalls.items():
                self.tb.add_scalar(f"val/R@{kk}", v, epoch + 1)
        shown = "  ".join(f"R@{kk} {v:.1f}" for kk, v in recalls.items())
        self.say(f"epoch {epoch + 1}/{cfg.epochs}: loss {mean_loss:.4f}, batch acc {mean_acc:.3f}"
                 f"{', ' + shown if shown else ''} ({epoch_seconds:.0f}s, "
                 f"{time.perf_counter() - self.t_start:.0f}s total, {time.process_time():.0f}s CPU)")

    def out_of_time(self, epoch: int, t_epoch: float) -> bool:
        """Predictive: one more epoch like the last (with validation) would end past ``max_minutes``."""
        cfg = self.cfg
        if cfg.max_minutes is None or epoch + 1 >= cfg.epochs:
            return False
        now = time.perf_counter()
        over = bool(broadcast_object(self.di, (now - self.t_start + now - t_epoch) / 60 > cfg.max_minutes))
        if over:
            self.say(f"stopping after epoch {epoch + 1}: another epoch would pass the {cfg.max_minutes:g}-minute "
                     "limit")
        return over


def _train(cfg: TrainConfig, di: DistInfo, resume: str | os.PathLike | None, stop_after_steps: int | None,
           log: Log) -> TrainResult:
    t_start = time.perf_counter()
    state = _load_resume(cfg, resume)
    places, k = _read_places(cfg)
    run = _Run(cfg, di, places, k, _read_validation(cfg, places), state, log, t_start)
    run.open_outputs()
    interrupted = False
    with _graceful_interrupt() as sigint:
        for epoch in range(run.start_epoch, cfg.epochs):
            first = run.start_batch if epoch == run.start_epoch else 0
            if first == 0:
                run.sums = {"loss": 0.0, "acc": 0.0, "n": 0}
            t_epoch = time.perf_counter()
            batch, interrupted = run.train_epoch(epoch, first, sigint, stop_after_steps)
            if interrupted and batch < run.steps_per_epoch:
                if di.is_main:
                    run.last_ckpt = run.checkpoint("last", epoch, batch, None)
                    run.say(f"stopped at epoch {epoch + 1}, batch {batch}/{run.steps_per_epoch}; "
                            f"resume with --resume {run.run_dir}")
                barrier(di)
                break
            run.end_epoch(epoch, time.perf_counter() - t_epoch)
            interrupted = run.out_of_time(epoch, t_epoch) or interrupted
            barrier(di)
            if interrupted:
                break
    if run.tb is not None:
        run.tb.close()
    rows = list(run.metrics.rows) if run.metrics is not None else []
    return TrainResult(run.run_dir, run.last_ckpt, run.best_ckpt, run.best["r1"], run.best["epoch"], run.last_recalls,
                       len(rows), run.global_step, run.train_seconds, interrupted, rows)


_RESUME_FREE = {"epochs", "out", "val", "val_format", "val_options", "val_k", "val_every", "num_workers", "threads",
                "progress", "save_every_steps", "log_every_steps", "eval_batch_size", "cache_images", "device"}

