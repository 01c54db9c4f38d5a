"""Model configurations: what a checkpoint needs to rebuild its network, and the presets.

A preset fixes the architecture, the inference input size and the preprocessing; the
two official ones match the released ``resnet50_16384.pth`` and ``dinov2_12288.pth``.
The config is stored as JSON inside every checkpoint, so a checkpoint alone says how to
build, feed and export its model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from boq_edge.model.dinov2 import DinoV2Backbone
from boq_edge.model.mobilenetv2 import MobileNetV2Backbone
from boq_edge.model.resnet import ResNetBackbone
from boq_edge.preprocess import Preprocessing

Backbone = ResNetBackbone | MobileNetV2Backbone | DinoV2Backbone
# Backbone name → its class. A backbone class builds itself from a config (``from_config``), maps
# pretrained keys to its own (``remap_pretrained``) and folds itself for export (``fold(image_size)``):
# adding one touches its own file and this table.
BACKBONES: dict[str, type[Backbone]] = {
    "resnet18": ResNetBackbone, "resnet34": ResNetBackbone, "resnet50": ResNetBackbone,
    "resnet101": ResNetBackbone, "mobilenetv2": MobileNetV2Backbone,
    "dinov2_vits14": DinoV2Backbone, "dinov2_vitb14": DinoV2Backbone,
}


# Bounds on what a config may ask for, so an edited header fails with the field's name instead of
# allocating until memory runs out (num_layers = 1e7). Far above every real BoQ model.
LIMITS = {"proj_channels": 4096, "num_queries": 1024, "num_layers": 16, "row_dim": 1024, "trainable_stages": 64,
          "backbone_stages": 64}
POSITIVE = ("proj_channels", "num_queries", "num_layers", "row_dim")
MAX_AGGREGATOR_PARAMETERS = 200_000_000  # the released ResNet-50 BoQ head has 2.7 M, DINOv2's 2.6 M


@dataclass(frozen=True)
class ModelConfig:
    name: str
    backbone: str
    proj_channels: int
    num_queries: int
    num_layers: int
    row_dim: int
    preprocessing: Preprocessing
    # Stages (ResNet: entries of backbone.net; MobileNetV2: feature stages; DINOv2: blocks)
    # that train; the rest are frozen.
    trainable_stages: int = 1
    # MobileNetV2 only: how many ``features`` stages to keep.
    backbone_stages: int = 14
    train_image_size: tuple[int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"model config name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.backbone, str) or self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose from {list(BACKBONES)}")
        if not isinstance(self.preprocessing, Preprocessing):
            raise ValueError("preprocessing must be a Preprocessing record")
        for k, hi in LIMITS.items():  # checked before any allocation: a header is untrusted input
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi or (v == 0 and k in POSITIVE):
                raise ValueError(f"model config {k} = {v!r} is outside {1 if k in POSITIVE else 0}..{hi}")
        if self.proj_channels % 64:
            raise ValueError(f"proj_channels must be a multiple of 64, got {self.proj_channels}")
        if self.aggregator_parameters > MAX_AGGREGATOR_PARAMETERS:
            raise ValueError(f"model config asks for a {self.aggregator_parameters / 1e6:.0f} M-parameter BoQ "
                             f"aggregator (proj_channels {self.proj_channels}, num_queries {self.num_queries}, "
                             f"num_layers {self.num_layers}); the limit is {MAX_AGGREGATOR_PARAMETERS / 1e6:.0f} M")
        m = BACKBONES[self.backbone].input_multiple
        h, w = self.image_size
        if h % m or w % m:
            raise ValueError(f"{self.backbone} input size must be a multiple of {m}, got {h}x{w}")

    @property
    def aggregator_parameters(self) -> int:
        """An upper bound of the parameters the BoQ aggregator allocates, known before building it."""
        d, m, n = self.proj_channels, self.num_queries, self.num_layers
        per_block = 12 * d * d + 4 * d * d + 4 * d * d + m * d + 32 * d  # encoder, self/cross attention, Q, biases
        return n * per_block + n * m * self.row_dim + 9 * 1280 * d  # blocks, fc, proj_c (3×3 from ≤ 1280 channels)

    @property
    def descriptor_dim(self) -> int:
        return self.proj_channels * self.row_dim

    @property
    def image_size(self) -> tuple[int, int]:
        return self.preprocessing.size

    def with_image_size(self, height: int, width: int) -> ModelConfig:
        return replace(self, preprocessing=self.preprocessing.with_size(height, width))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["preprocessing"] = self.preprocessing.to_dict()
        d["train_image_size"] = list(self.train_image_size) if self.train_image_size else None
        d["descriptor_dim"] = self.descriptor_dim
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        d = dict(d)
        d.pop("descriptor_dim", None)
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config fields: {sorted(unknown)}")
        d["preprocessing"] = Preprocessing.from_dict(d["preprocessing"])
        if d.get("train_image_size"):
            size = d["train_image_size"]
            if not (isinstance(size, (list, tuple)) and len(size) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 4096 for v in size)):
                raise ValueError(f"model config train_image_size must be [height, width] in 1..4096, got {size!r}")
            d["train_image_size"] = tuple(size)
        if not isinstance(d.get("extra", {}), dict):
            raise ValueError("model config extra must be a mapping")
        return cls(**d)


def _bicubic(h: int, w: int) -> Preprocessing:
    return Preprocessing(height=h, width=w, interpolation="bicubic")


PRESETS: dict[str, ModelConfig] = {
    # The official releases (hubconf.py of the BoQ repository).
    "resnet50-16384": ModelConfig(
        name="resnet50-16384", backbone="resnet50", proj_channels=512, num_queries=64, num_layers=2,
        row_dim=32, preprocessing=_bicubic(384, 384), trainable_stages=1, train_image_size=(320, 320)),
    "dinov2-12288": ModelConfig(
        name="dinov2-12288", backbone="dinov2_vitb14", proj_channels=384, num_queries=64, num_layers=2,
        row_dim=32, preprocessing=_bicubic(322, 322), trainable_stages=2, train_image_size=(224, 224)),
    # Edge presets: smaller backbones, fewer queries, shorter descriptors.
    "resnet18-4096": ModelConfig(
        name="resnet18-4096", backbone="resnet18", proj_channels=256, num_queries=32, num_layers=2,
        row_dim=16, preprocessing=_bicubic(320, 320), trainable_stages=1, train_image_size=(320, 320)),
    "mobilenetv2-2048": ModelConfig(
        name="mobilenetv2-2048", backbone="mobilenetv2", proj_channels=128, num_queries=32, num_layers=2,
        row_dim=16, preprocessing=_bicubic(224, 224), trainable_stages=4, backbone_stages=14,
        train_image_size=(224, 224)),
}
ALIASES = {"mobilenetv2-edge": "mobilenetv2-2048", "resnet18-edge": "resnet18-4096",
           "resnet50": "resnet50-16384", "dinov2": "dinov2-12288"}


def get_preset(name: str) -> ModelConfig:
    """A preset by name or alias; the error lists what exists."""
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        names = sorted(PRESETS) + sorted(ALIASES)
        raise KeyError(f"unknown preset {name!r}; available: {', '.join(names)}")
    return PRESETS[key]
