"""DINOv2 ViT-S/14 and ViT-B/14 in plain torch, with the official hub model's key names.

The official BoQ wrapper stores the hub model under ``backbone.dino``; its checkpoints
carry ``cls_token``, ``pos_embed`` (for 518×518 = 37×37 patches), ``mask_token``,
``patch_embed.proj``, ``blocks.N.*`` and ``norm``. BoQ never applies ``norm`` (the keys
exist but are unused) and trains only the last blocks. Position embeddings are resized
exactly like the hub model (bicubic, no antialias, the historical +0.1 offset on the
scale factor), because any other resampling changes the features of a released model.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from boq_edge.model.presets import ModelConfig

_VARIANTS = {
    "dinov2_vits14": (384, 12, 6),
    "dinov2_vitb14": (768, 12, 12),
}
PATCH = 14
PRETRAIN_GRID = 37  # 518 / 14
INTERPOLATE_OFFSET = 0.1


class PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """The parts of the hub ``DinoVisionTransformer`` that BoQ uses, same parameter names."""

    def __init__(self, dim: int, depth: int, heads: int) -> None:
        super().__init__()
        self.embed_dim = dim
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + PRETRAIN_GRID**2, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # used in pre-training only
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)  # present in checkpoints; BoQ does not apply it
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def interpolate_pos_encoding(self, h0: int, w0: int) -> torch.Tensor:
        """Position embeddings for an h0×w0 patch grid, as the hub model computes them."""
        n = self.pos_embed.shape[1] - 1
        if h0 * w0 == n and h0 == w0:
            return self.pos_embed
        pos = self.pos_embed.float()
        m = int(math.sqrt(n))
        dim = pos.shape[-1]
        patch_pos = F.interpolate(
            pos[:, 1:].reshape(1, m, m, dim).permute(0, 3, 1, 2),
            scale_factor=((h0 + INTERPOLATE_OFFSET) / m, (w0 + INTERPOLATE_OFFSET) / m),
            mode="bicubic", antialias=False,
        )
        assert patch_pos.shape[-2:] == (h0, w0)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((pos[:, :1], patch_pos), dim=1).to(self.pos_embed.dtype)

    def prepare_tokens(self, x: torch.Tensor, pos_embed: torch.Tensor | None = None) -> torch.Tensor:
        _, _, h, w = x.shape
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1), tokens), dim=1)
        if pos_embed is None:
            pos_embed = self.interpolate_pos_encoding(h // PATCH, w // PATCH)
        return tokens + pos_embed


class DinoV2Backbone(nn.Module):
    """DINOv2 tokens (CLS dropped) reshaped to a B×C×H/14×W/14 map, as the official wrapper."""

    input_multiple = PATCH  # the input must tile into patches

    @classmethod
    def from_config(cls, config: ModelConfig) -> DinoV2Backbone:
        return cls(config.backbone, config.trainable_stages)

    def __init__(self, name: str = "dinov2_vitb14", trainable_blocks: int = 2) -> None:
        super().__init__()
        if name not in _VARIANTS:
            raise ValueError(f"unknown DINOv2 variant {name!r}; choose from {sorted(_VARIANTS)}")
        dim, depth, heads = _VARIANTS[name]
        self.dino = DinoVisionTransformer(dim, depth, heads)
        self.name = name
        self.out_channels = dim
        self.stride = PATCH
        if not 0 <= trainable_blocks <= depth:
            raise ValueError(f"trainable_blocks must be in 0..{depth}, got {trainable_blocks}")
        self.trainable_blocks = trainable_blocks
        self.dino.requires_grad_(False)
        for blk in self.dino.blocks[depth - trainable_blocks:]:
            blk.requires_grad_(True)

    def forward(self, x: torch.Tensor, pos_embed: torch.Tensor | None = None) -> torch.Tensor:
        b, _, h, w = x.shape
        if h % PATCH or w % PATCH:
            raise ValueError(f"DINOv2 input {h}x{w} is not a multiple of the patch size {PATCH}")
        split = len(self.dino.blocks) - self.trainable_blocks
        with torch.set_grad_enabled(torch.is_grad_enabled() and split == 0):
            t = self.dino.prepare_tokens(x, pos_embed)
            for blk in self.dino.blocks[:split]:
                t = blk(t)
        for blk in self.dino.blocks[split:]:
            t = blk(t)
        t = t[:, 1:]
        return t.transpose(1, 2).reshape(b, self.out_channels, h // PATCH, w // PATCH)

    def remap_pretrained(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Hub keys (with or without ``dino.``) → this backbone's; the classification head is dropped."""
        state = {k.removeprefix("dino."): v for k, v in state.items()}
        return {f"dino.{k}": v for k, v in state.items() if not k.startswith("head.")}

    def fold(self, image_size: tuple[int, int]) -> FoldedDinoV2:
        """The deploy backbone for one input size: the interpolated position embedding as a constant."""
        return FoldedDinoV2(self, image_size)


class FoldedDinoV2(nn.Module):
    """DINOv2 with the position embedding for one input size stored as a constant.

    No bicubic resize of constants is left in the exported graph.
    """

    pos_const: torch.Tensor

    def __init__(self, bb: DinoV2Backbone, image_size: tuple[int, int]) -> None:
        super().__init__()
        h, w = image_size
        if h % PATCH or w % PATCH:
            raise ValueError(f"DINOv2 export size {h}x{w} is not a multiple of {PATCH}")
        self.inner = copy.deepcopy(bb)
        with torch.no_grad():
            pos = bb.dino.interpolate_pos_encoding(h // PATCH, w // PATCH).detach().clone()
        self.register_buffer("pos_const", pos)
        self.image_size = (h, w)
        # Unused at inference; dropped so they are not exported or counted.
        del self.inner.dino.pos_embed, self.inner.dino.mask_token, self.inner.dino.norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"this folded model takes {self.image_size} inputs, got {tuple(x.shape[-2:])}")
        return self.inner(x, self.pos_const)
