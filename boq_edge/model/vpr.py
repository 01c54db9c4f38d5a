"""The full place-recognition model: backbone → BoQ aggregator → L2-normalised descriptor."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from boq_edge.model.boq import BoQ
from boq_edge.model.presets import BACKBONES, Backbone, ModelConfig, get_preset


class VPRModel(nn.Module):
    """``backbone`` + ``aggregator``, the official top-level names; forward returns descriptors."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone: Backbone = build_backbone(config)
        self.aggregator = BoQ(self.backbone.out_channels, config.proj_channels, config.num_queries,
                              config.num_layers, config.row_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aggregator(self.backbone(x))[0]

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Descriptors plus each block's cross-attention map (B × queries × tokens)."""
        return self.aggregator(self.backbone(x), need_attn=True)


def build_backbone(config: ModelConfig) -> Backbone:
    return BACKBONES[config.backbone].from_config(config)


def load_backbone_weights(model: VPRModel, path: str | Path) -> None:
    """Load ImageNet-style backbone weights from a local file (nothing is downloaded).

    Accepts a torchvision-style state_dict for the backbone alone (``conv1.*``/``layer1.*``
    for ResNet, ``features.*`` for MobileNetV2 in either key layout, hub keys for DINOv2).
    Keys the cropped backbone does not have (``layer4``, ``fc``, later MobileNetV2 stages)
    are ignored; any weight the backbone needs but the file lacks is an error.
    """
    from boq_edge.model.checkpoint import CheckpointError, read_torch_state_dict

    bb = model.backbone
    state = bb.remap_pretrained(read_torch_state_dict(path))
    own = bb.state_dict()
    missing = sorted(set(own) - set(state))
    wrong = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or wrong:
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} keys (e.g. {', '.join(missing[:4])})")
        if wrong:
            detail.append("shape mismatch: " + ", ".join(
                f"{k} {tuple(state[k].shape)} vs expected {tuple(own[k].shape)}" for k in wrong[:4]))
        raise CheckpointError(f"{path} does not fit the {model.config.backbone} backbone: " + "; ".join(detail))
    bb.load_state_dict({k: state[k] for k in own}, strict=True)


def build_model(config: ModelConfig | str, backbone_weights: str | Path | None = None) -> VPRModel:
    """A model for a preset name or config, optionally with pretrained backbone weights."""
    cfg = get_preset(config) if isinstance(config, str) else config
    model = VPRModel(cfg)
    if backbone_weights is not None:
        load_backbone_weights(model, backbone_weights)
    return model.eval()
