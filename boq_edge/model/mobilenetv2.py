"""MobileNetV2 feature extractor, truncated at a configurable stage (the edge preset).

Keys follow today's torchvision nesting (``features.N.conv.K.L``). The ImageNet weights
shipped in ``../shared/weights`` use the older flat layout (``features.N.conv.K``);
:func:`remap_flat_mobilenetv2` converts them.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from boq_edge.model.presets import ModelConfig

# (expand_ratio, channels, repeats, stride) — the MobileNetV2 paper's table.
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
             (6, 320, 1, 1))
NUM_FEATURES = 19  # features.0 (stem) … features.18 (1×1 conv to 1280)


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = cin * expand_ratio
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu(cin, hidden, 1))
        layers += [
            _conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2Backbone(nn.Module):
    """``features[:num_stages]`` of MobileNetV2; 14 stages end at 96 channels, stride 16.

    ``trainable_stages`` counts the last feature stages that train; the rest are frozen
    with their BatchNorm held in eval mode.
    """

    input_multiple = 1

    @classmethod
    def from_config(cls, config: ModelConfig) -> MobileNetV2Backbone:
        return cls(config.backbone_stages, config.trainable_stages)

    def __init__(self, num_stages: int = 14, trainable_stages: int = 4) -> None:
        super().__init__()
        if not 2 <= num_stages <= NUM_FEATURES:
            raise ValueError(f"num_stages must be in 2..{NUM_FEATURES}, got {num_stages}")
        feats: list[nn.Module] = [_conv_bn_relu(3, 32, 3, 2)]
        cin, stride_total, strides = 32, 2, [2]
        for t, c, n, s in _SETTINGS:
            for i in range(n):
                stride = s if i == 0 else 1
                feats.append(InvertedResidual(cin, c, stride, t))
                cin = c
                stride_total *= stride
                strides.append(stride_total)
        feats.append(_conv_bn_relu(cin, 1280, 1))
        strides.append(stride_total)
        self.features = nn.Sequential(*feats[:num_stages])
        self.num_stages = num_stages
        last = self.features[-1]
        self.out_channels = last.out_channels if isinstance(last, InvertedResidual) else (
            1280 if num_stages == NUM_FEATURES else 32)
        self.stride = strides[num_stages - 1]
        if not 0 <= trainable_stages <= num_stages:
            raise ValueError(f"trainable_stages must be in 0..{num_stages}, got {trainable_stages}")
        self.trainable_stages = trainable_stages
        for m in list(self.features)[: num_stages - trainable_stages]:
            m.requires_grad_(False)

    def train(self, mode: bool = True) -> MobileNetV2Backbone:
        super().train(mode)
        for m in list(self.features)[: self.num_stages - self.trainable_stages]:
            m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def remap_pretrained(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """torchvision keys in either layout → the stages this backbone keeps."""
        return {k: v for k, v in remap_flat_mobilenetv2(state).items()
                if k.startswith("features.") and int(k.split(".")[1]) < self.num_stages}

    def fold(self, image_size: tuple[int, int]) -> MobileNetV2Backbone:
        """Nothing to fold (BatchNorm folding is the exporter's); a copy, so the source stays untouched."""
        return copy.deepcopy(self)


def remap_flat_mobilenetv2(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Old flat torchvision keys (``features.N.conv.K``) → nested ones (``features.N.conv.K.L``).

    Expanding blocks: 0,1 → 0.0,0.1 (expand); 3,4 → 1.0,1.1 (depthwise); 6,7 → 2,3 (project).
    Non-expanding block (features.1): 0,1 → 0.0,0.1; 3,4 → 1,2. Stem and head keep their keys.
    Keys that already use the nested layout are returned unchanged.
    """
    expanding = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
    plain = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}
    if any(re.match(r"features\.\d+\.conv\.\d+\.\d+\.", k) for k in state):
        return dict(state)  # already nested
    block_has_six = {k.split(".")[1] for k in state if ".conv.6." in k or ".conv.7." in k}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if len(parts) >= 5 and parts[0] == "features" and parts[2] == "conv":
            table = expanding if parts[1] in block_has_six else plain
            if parts[3] not in table:
                raise ValueError(f"unexpected MobileNetV2 key {key!r}")
            key = ".".join(parts[:3] + [table[parts[3]]] + parts[4:])
        out[key] = value
    return out
