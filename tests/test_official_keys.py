"""State-dict keys are a public contract: official BoQ checkpoints must load unchanged.

The key lists below are written out independently of the model code, from the layout of
the official repository (torchvision ResNet cropped after layer3 under ``backbone.net``,
the DINOv2 hub model under ``backbone.dino``, the BoQ aggregator's names).
"""

from __future__ import annotations

import torch

from boq_edge.model import VPRModel, get_preset
from boq_edge.model.checkpoint import check_state_dict


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def official_resnet50_backbone() -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {"backbone.net.0.weight": (64, 3, 7, 7)}
    keys |= _bn("backbone.net.1", 64)
    cin = 64
    for idx, planes, blocks in ((4, 64, 3), (5, 128, 4), (6, 256, 6)):
        for b in range(blocks):
            p = f"backbone.net.{idx}.{b}"
            keys[f"{p}.conv1.weight"] = (planes, cin, 1, 1)
            keys |= _bn(f"{p}.bn1", planes)
            keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            keys |= _bn(f"{p}.bn2", planes)
            keys[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            keys |= _bn(f"{p}.bn3", planes * 4)
            if b == 0:
                keys[f"{p}.downsample.0.weight"] = (planes * 4, cin, 1, 1)
                keys |= _bn(f"{p}.downsample.1", planes * 4)
            cin = planes * 4
    return keys


def official_dinov2_vitb14_backbone() -> dict[str, tuple[int, ...]]:
    d = 768
    keys: dict[str, tuple[int, ...]] = {
        "backbone.dino.cls_token": (1, 1, d), "backbone.dino.pos_embed": (1, 1370, d),
        "backbone.dino.mask_token": (1, d), "backbone.dino.patch_embed.proj.weight": (d, 3, 14, 14),
        "backbone.dino.patch_embed.proj.bias": (d,), "backbone.dino.norm.weight": (d,),
        "backbone.dino.norm.bias": (d,),
    }
    for n in range(12):
        p = f"backbone.dino.blocks.{n}"
        keys |= {
            f"{p}.norm1.weight": (d,), f"{p}.norm1.bias": (d,),
            f"{p}.attn.qkv.weight": (3 * d, d), f"{p}.attn.qkv.bias": (3 * d,),
            f"{p}.attn.proj.weight": (d, d), f"{p}.attn.proj.bias": (d,),
            f"{p}.ls1.gamma": (d,), f"{p}.norm2.weight": (d,), f"{p}.norm2.bias": (d,),
            f"{p}.mlp.fc1.weight": (4 * d, d), f"{p}.mlp.fc1.bias": (4 * d,),
            f"{p}.mlp.fc2.weight": (d, 4 * d), f"{p}.mlp.fc2.bias": (d,), f"{p}.ls2.gamma": (d,),
        }
    return keys


def official_aggregator(cin: int, d: int, m: int = 64, layers: int = 2, row: int = 32) -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {
        "aggregator.proj_c.weight": (d, cin, 3, 3), "aggregator.proj_c.bias": (d,),
        "aggregator.norm_input.weight": (d,), "aggregator.norm_input.bias": (d,),
        "aggregator.fc.weight": (row, layers * m), "aggregator.fc.bias": (row,),
    }
    for i in range(layers):
        p = f"aggregator.boqs.{i}"
        for mha in ("encoder.self_attn", "self_attn", "cross_attn"):
            keys |= {f"{p}.{mha}.in_proj_weight": (3 * d, d), f"{p}.{mha}.in_proj_bias": (3 * d,),
                     f"{p}.{mha}.out_proj.weight": (d, d), f"{p}.{mha}.out_proj.bias": (d,)}
        keys |= {
            f"{p}.encoder.linear1.weight": (4 * d, d), f"{p}.encoder.linear1.bias": (4 * d,),
            f"{p}.encoder.linear2.weight": (d, 4 * d), f"{p}.encoder.linear2.bias": (d,),
            f"{p}.queries": (1, m, d),
        }
        for norm in ("encoder.norm1", "encoder.norm2", "norm_q", "norm_out"):
            keys |= {f"{p}.{norm}.weight": (d,), f"{p}.{norm}.bias": (d,)}
    return keys


def _random_state(keys: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for k, shape in keys.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(shape, generator=g) * 0.02
    return out


def _check(preset: str, keys: dict[str, tuple[int, ...]], dim: int) -> None:
    model = VPRModel(get_preset(preset))
    state = _random_state(keys)
    check_state_dict(model, state, "official layout")  # names every mismatch if any
    model.load_state_dict(state, strict=True)
    assert model.config.descriptor_dim == dim
    h, w = 56, 56  # small input: any multiple of 14 works for both backbones
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 3, h, w))
    assert out.shape == (2, dim)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_resnet50_16384_official_keys_load_strictly() -> None:
    _check("resnet50-16384", official_resnet50_backbone() | official_aggregator(1024, 512), 16384)


def test_dinov2_12288_official_keys_load_strictly() -> None:
    _check("dinov2-12288", official_dinov2_vitb14_backbone() | official_aggregator(768, 384), 12288)


def test_official_presets_match_release() -> None:
    r = get_preset("resnet50-16384")
    assert (r.proj_channels, r.num_queries, r.num_layers, r.row_dim, r.image_size) == (512, 64, 2, 32, (384, 384))
    d = get_preset("dinov2-12288")
    assert (d.proj_channels, d.num_queries, d.num_layers, d.row_dim, d.image_size) == (384, 64, 2, 32, (322, 322))
    assert d.preprocessing.interpolation == r.preprocessing.interpolation == "bicubic"
