"""ResNet backbones cropped after ``layer3``, in the official BoQ wrapping.

The official repository stores the cropped torchvision ResNet as
``nn.Sequential(conv1, bn1, relu, maxpool, layer1, layer2, layer3)`` under
``backbone.net``, so its checkpoints read ``backbone.net.4.0.conv1.weight``. The block
classes below keep torchvision's attribute names so those keys load unchanged.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from boq_edge.model.presets import ModelConfig

# torchvision's top-level ResNet names, in the order the official BoQ wrapper keeps them as ``net.N``.
_NET_NAMES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's ResNet V1.5 bottleneck: the stride sits on the 3×3 convolution."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_LAYOUTS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6)),
    "resnet50": (Bottleneck, (3, 4, 6)),
    "resnet101": (Bottleneck, (3, 4, 23)),
}


def _make_layer(block: type[BasicBlock] | type[Bottleneck], cin: int, planes: int, blocks: int,
                stride: int) -> tuple[nn.Sequential, int]:
    downsample = None
    cout = planes * block.expansion
    if stride != 1 or cin != cout:
        downsample = nn.Sequential(_conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))
    layers: list[nn.Module] = [block(cin, planes, stride, downsample)]
    layers += [block(cout, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers), cout


class ResNetBackbone(nn.Module):
    """A ResNet cropped after layer3 (stride 16), returning a B×C×H/16×W/16 feature map.

    ``trainable_stages`` counts from the end of ``net`` as in the official code: 1 trains
    only ``layer3``. Frozen stages also keep their BatchNorm in eval mode while training,
    so their running statistics do not drift on small place-recognition batches.
    """

    input_multiple = 1

    @classmethod
    def from_config(cls, config: ModelConfig) -> ResNetBackbone:
        return cls(config.backbone, config.trainable_stages)

    def __init__(self, name: str = "resnet50", trainable_stages: int = 1) -> None:
        super().__init__()
        if name not in _LAYOUTS:
            raise ValueError(f"unknown ResNet {name!r}; choose from {sorted(_LAYOUTS)}")
        block, counts = _LAYOUTS[name]
        stem_conv = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        layer1, c = _make_layer(block, 64, 64, counts[0], 1)
        layer2, c = _make_layer(block, c, 128, counts[1], 2)
        layer3, c = _make_layer(block, c, 256, counts[2], 2)
        self.net = nn.Sequential(
            stem_conv, nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1), layer1, layer2, layer3,
        )
        self.name = name
        self.out_channels = c
        self.stride = 16
        if not 0 <= trainable_stages <= len(self.net):
            raise ValueError(f"trainable_stages must be in 0..{len(self.net)}, got {trainable_stages}")
        self.trainable_stages = trainable_stages
        for m in list(self.net)[: len(self.net) - trainable_stages]:
            m.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNetBackbone:
        super().train(mode)
        for m in list(self.net)[: len(self.net) - self.trainable_stages]:
            m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def remap_pretrained(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """torchvision keys (``conv1.*``, ``layer1.*``…) → ``net.N.*``; ``layer4``/``fc`` are dropped."""
        mapped = {}
        for k, v in state.items():
            head, _, rest = k.partition(".")
            if head in _NET_NAMES:
                mapped[f"net.{_NET_NAMES.index(head)}.{rest}"] = v
        return mapped

    def fold(self, image_size: tuple[int, int]) -> ResNetBackbone:
        """Nothing to fold (BatchNorm folding is the exporter's); a copy, so the source stays untouched."""
        return copy.deepcopy(self)
