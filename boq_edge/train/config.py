"""Every training setting in one record, readable from a JSON/TOML file with the CLI's keys.

The defaults are the paper's recipe (section 4.2: AdamW 2e-4…4e-4 with weight decay 1e-3,
3 epochs of linear warm-up, lr × 0.3 every few epochs, 4 images per place, RandAugment,
preset's training size). The resolved record is written to ``RUN_DIR/config.json`` and
into the checkpoint provenance, so a run says exactly how it was made.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

AMP_MODES = ("auto", "off", "bf16", "fp16")


@dataclass
class TrainConfig:
    # model
    preset: str = "mobilenetv2-edge"
    backbone_weights: str | None = None
    image_size: tuple[int, int] | None = None  # H, W; default: the preset's train_image_size
    trainable_stages: int | None = None  # default: the preset's
    # training data
    data: str = ""
    format: str = "auto"  # gsv-cities | aligned | auto
    frames: str | None = None  # aligned: frame range START:STOP of the training frames
    traversals: list[str] | None = None  # aligned: folders (default: the one aligned group)
    cities: list[str] | None = None  # gsv-cities: default all
    frames_per_place: int = 1  # aligned: consecutive frames grouped into one place
    skip_duplicates: bool = True  # aligned: drop placeholder images (pixel-identical across places)
    # validation
    val: str | None = None
    val_format: str = "auto"
    val_options: dict[str, Any] = field(default_factory=dict)  # reader options, e.g. {"frames": "25000:"}
    val_k: tuple[int, ...] = (1, 5, 10)
    val_every: int = 1
    # batches and schedule
    epochs: int = 40
    batch_places: int = 120
    images_per_place: int | None = None  # default: min(4, images available per place)
    lr: float = 2e-4
    weight_decay: float = 1e-3
    warmup_epochs: float = 3.0
    lr_step_epochs: int = 10
    lr_gamma: float = 0.3
    grad_clip: float | None = 1.0
    amp: str = "auto"
    # loss
    ms_alpha: float = 1.0
    ms_beta: float = 50.0
    ms_base: float = 0.0
    miner_epsilon: float = 0.1
    # augmentation
    augment: str = "randaugment"
    augment_ops: int = 3
    augment_magnitude: int = 9
    # runtime
    out: str = "runs/train"
    seed: int = 0
    num_workers: int = 1
    threads: int | None = None  # torch threads per process; default: cores / local processes
    eval_batch_size: int = 64
    cache_images: bool | None = None  # default: cache sets of <= 50k images in memory
    save_every_steps: int = 0  # also write the resume state every N steps (0: at epoch ends)
    max_minutes: float | None = None  # stop before an epoch that would end past this wall time
    log_every_steps: int = 0  # every rank prints a step line every N steps (0: never)
    device: str | None = None  # default: cuda if available, else cpu
    progress: bool = True

    def __post_init__(self) -> None:
        if self.image_size is not None:
            if len(self.image_size) != 2 or min(self.image_size) <= 0:
                raise ValueError(f"image_size is H W (two positive ints), got {self.image_size}")
            self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.val_k = tuple(int(k) for k in self.val_k)
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        for name in ("epochs", "batch_places", "val_every", "lr_step_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.images_per_place is not None and self.images_per_place < 2:
            raise ValueError("images_per_place must be >= 2 (a place needs a positive pair)")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_size"] = list(self.image_size) if self.image_size else None
        d["val_k"] = list(self.val_k)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        d = dict(d)
        if d.get("image_size") is not None:
            d["image_size"] = tuple(d["image_size"])
        if d.get("val_k") is not None:
            d["val_k"] = tuple(d["val_k"])
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Settings from a ``.json`` or ``.toml`` file (keys as in :class:`TrainConfig`, ``-`` or ``_``)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {p} does not exist")
    text = p.read_text()
    if p.suffix == ".toml":
        import tomllib

        data = tomllib.loads(text)
    elif p.suffix == ".json":
        data = json.loads(text)
    else:
        raise ValueError(f"config file {p}: use .json or .toml")
    if not isinstance(data, dict):
        raise ValueError(f"config file {p} must hold a table/object of settings")
    out = {k.replace("-", "_"): v for k, v in data.items()}
    TrainConfig.from_dict({**TrainConfig().to_dict(), **out})  # validate names and values now
    return out
