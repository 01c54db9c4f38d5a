from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from boq_edge.model import build_model, get_preset, load_backbone_weights
from boq_edge.model.dinov2 import DinoV2Backbone
from boq_edge.model.mobilenetv2 import MobileNetV2Backbone, remap_flat_mobilenetv2
from boq_edge.model.resnet import ResNetBackbone


@pytest.mark.parametrize(("name", "channels", "block3_conv"), [
    ("resnet18", 256, "conv2"), ("resnet34", 256, "conv2"), ("resnet50", 1024, "conv3"), ("resnet101", 1024, "conv3"),
])
def test_resnet_cropped_after_layer3(name: str, channels: int, block3_conv: str) -> None:
    bb = ResNetBackbone(name)
    keys = bb.state_dict().keys()
    assert "net.0.weight" in keys and "net.4.0.conv1.weight" in keys and "net.6.0.downsample.0.weight" in keys
    assert f"net.6.0.{block3_conv}.weight" in keys and not any(k.startswith("net.7") for k in keys)
    out = bb.eval()(torch.randn(1, 3, 64, 96))
    assert out.shape == (1, channels, 4, 6) and bb.out_channels == channels


def test_resnet_frozen_stages_and_bn_stay_in_eval() -> None:
    bb = ResNetBackbone("resnet18", trainable_stages=1)
    trainable = {n.split(".")[1] for n, p in bb.named_parameters() if p.requires_grad}
    assert trainable == {"6"}
    bb.train()
    assert not bb.net[1].training and bb.net[6].training


def test_mobilenetv2_imagenet_weights_load_without_missing_or_unexpected(mobilenet_weights) -> None:
    state = remap_flat_mobilenetv2(torch.load(mobilenet_weights, map_location="cpu", weights_only=True))
    full = MobileNetV2Backbone(num_stages=19)
    result = full.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert sum(v.numel() for k, v in state.items() if "num_batches" not in k and "running" not in k) == 2_223_872


def test_mobilenetv2_edge_preset_uses_imagenet_weights(mobilenet_weights) -> None:
    model = build_model("mobilenetv2-edge", backbone_weights=mobilenet_weights)
    ref = remap_flat_mobilenetv2(torch.load(mobilenet_weights, map_location="cpu", weights_only=True))
    got = model.state_dict()
    for k, v in got.items():
        if k.startswith("backbone."):
            torch.testing.assert_close(v, ref[k.removeprefix("backbone.")])


def test_remap_is_identity_on_nested_layout() -> None:
    nested = MobileNetV2Backbone(num_stages=19).state_dict()
    assert remap_flat_mobilenetv2(nested).keys() == nested.keys()


def test_backbone_weights_with_wrong_shapes_are_named(tmp_path) -> None:
    bad = {k: torch.zeros(1) for k in MobileNetV2Backbone(num_stages=19).state_dict()}
    p = tmp_path / "bad.pt"
    torch.save(bad, p)
    model = build_model("mobilenetv2-edge")
    with pytest.raises(ValueError, match="shape mismatch: features.0.0.weight"):
        load_backbone_weights(model, p)


def _reference_pos_interp(pos: torch.Tensor, h0: int, w0: int) -> torch.Tensor:
    """The hub DINOv2 recipe, written independently: scale factor with the +0.1 offset."""
    n = pos.shape[1] - 1
    m = int(math.sqrt(n))
    grid = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
    out = F.interpolate(grid, scale_factor=((h0 + 0.1) / m, (w0 + 0.1) / m), mode="bicubic", antialias=False)
    return torch.cat([pos[:, :1], out.permute(0, 2, 3, 1).reshape(1, h0 * w0, -1)], dim=1)


def test_dinov2_position_embedding_interpolation_matches_hub_recipe() -> None:
    bb = DinoV2Backbone("dinov2_vits14")
    pos = bb.dino.pos_embed.detach()
    torch.testing.assert_close(bb.dino.interpolate_pos_encoding(23, 23), _reference_pos_interp(pos, 23, 23))
    torch.testing.assert_close(bb.dino.interpolate_pos_encoding(16, 30), _reference_pos_interp(pos, 16, 30))
    assert bb.dino.interpolate_pos_encoding(37, 37) is bb.dino.pos_embed  # native grid: untouched


def test_dinov2_map_shape_drops_cls_and_freezes_early_blocks() -> None:
    bb = DinoV2Backbone("dinov2_vits14", trainable_blocks=2).eval()
    out = bb(torch.randn(1, 3, 28, 42))
    assert out.shape == (1, 384, 2, 3)
    trainable = {n.split(".")[2] for n, p in bb.named_parameters() if p.requires_grad}
    assert trainable == {"10", "11"}
    with pytest.raises(ValueError, match="multiple of the patch size"):
        bb(torch.randn(1, 3, 30, 42))


def test_cross_attention_maps_are_returned() -> None:
    model = build_model(get_preset("resnet18-edge").with_image_size(64, 64))
    desc, attns = model.forward_with_attention(torch.randn(2, 3, 64, 64))
    assert desc.shape == (2, 4096) and len(attns) == 2
    assert attns[0].shape == (2, 32, 16)  # batch × queries × tokens
    torch.testing.assert_close(attns[0].sum(-1), torch.ones(2, 32))
