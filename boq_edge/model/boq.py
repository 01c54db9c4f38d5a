"""The Bag-of-Queries aggregator, with the official repository's names and semantics.

Each block runs a Transformer encoder over the local features, lets its learnable
queries self-attend (a training-time stabiliser whose output is input-independent, hence
foldable into a constant for deployment), then cross-attends the queries to the
features. The blocks' outputs are concatenated, reduced by ``fc`` along the query axis,
flattened and L2-normalised.

Folding (:meth:`BoQBlock.fold`, :meth:`BoQ.fold`) is the deploy-time rewrite of these
modules, timm ``fuse()``-style: in every block ``norm_q(Q + SelfAttn(Q))`` depends on
weights only (the official code notes it can be cached at inference), so the queries, the
query self-attention and ``norm_q`` become one constant, and the cross-attention becomes
explicit Linear projections + ``scaled_dot_product_attention`` whose query side (the
constant times the query projection, already split into heads) is folded in too. The
Transformer encoder is written the same explicit way. Besides removing work, this is what
makes the model quantizable: NNCF cannot place quantizers on ``nn.MultiheadAttention``
when queries differ from keys, and an exported graph of plain MatMul/Softmax is what
TensorRT's explicit-precision rules and OpenVINO's INT8 fusions understand.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class BoQBlock(nn.Module):
    def __init__(self, dim: int, num_queries: int, heads: int) -> None:
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(
            d_model=dim, nhead=heads, dim_feedforward=4 * dim, dropout=0.0, batch_first=True)
        self.queries = nn.Parameter(torch.randn(1, num_queries, dim))
        self.self_attn = nn.MultiheadAttention(dim, num_heads=heads, batch_first=True)
        self.norm_q = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads=heads, batch_first=True)
        self.norm_out = nn.LayerNorm(dim)

    def learned_queries(self) -> torch.Tensor:
        """norm_q(Q + SelfAttn(Q)): depends on weights only, never on the image."""
        q = self.queries
        return self.norm_q(q + self.self_attn(q, q, q, need_weights=False)[0])

    def forward(self, x: torch.Tensor, need_attn: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        x = self.encoder(x)
        q = self.learned_queries().expand(x.shape[0], -1, -1)
        out, attn = self.cross_attn(q, x, x, need_weights=need_attn)
        return x, self.norm_out(out), attn

    def fold(self) -> FoldedBoQBlock:
        """The deploy block: learned queries as one constant, attention as explicit ops."""
        return FoldedBoQBlock(self)


class BoQ(nn.Module):
    """``aggregator`` of the official model: proj_c → norm_input → L BoQ blocks → fc."""

    def __init__(self, in_channels: int, proj_channels: int = 512, num_queries: int = 64,
                 num_layers: int = 2, row_dim: int = 32) -> None:
        super().__init__()
        if proj_channels % 64:
            raise ValueError(f"proj_channels must be a multiple of 64 (heads = d/64), got {proj_channels}")
        self.proj_c = nn.Conv2d(in_channels, proj_channels, kernel_size=3, padding=1)
        self.norm_input = nn.LayerNorm(proj_channels)
        self.boqs = nn.ModuleList(
            BoQBlock(proj_channels, num_queries, proj_channels // 64) for _ in range(num_layers))
        self.fc = nn.Linear(num_layers * num_queries, row_dim)
        self.descriptor_dim = proj_channels * row_dim

    def forward(self, x: torch.Tensor, need_attn: bool = False
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.proj_c(x).flatten(2).permute(0, 2, 1)
        x = self.norm_input(x)
        outs, attns = [], []
        for block in self.boqs:
            x, out, attn = block(x, need_attn)
            outs.append(out)
            if attn is not None:
                attns.append(attn.detach())
        out = self.fc(torch.cat(outs, dim=1).permute(0, 2, 1)).flatten(1)
        return F.normalize(out, p=2, dim=-1), attns

    def fold(self) -> FoldedBoQ:
        """The deploy aggregator: every block folded, same descriptors (to float rounding)."""
        return FoldedBoQ(self)


def _split_in_proj(mha: nn.MultiheadAttention) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
    d = mha.embed_dim
    w, b = mha.in_proj_weight.detach(), mha.in_proj_bias.detach()
    out = []
    for i in range(3):
        lin = nn.Linear(d, d)
        lin.weight.data.copy_(w[i * d:(i + 1) * d])
        lin.bias.data.copy_(b[i * d:(i + 1) * d])
        out.append(lin)
    return out[0], out[1], out[2]


def _copy_linear(src: nn.Linear) -> nn.Linear:
    lin = nn.Linear(src.in_features, src.out_features, bias=src.bias is not None)
    lin.load_state_dict(src.state_dict())
    return lin


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, d = t.shape
    return t.reshape(b, n, heads, d // heads).transpose(1, 2)


class ExplicitEncoderLayer(nn.Module):
    """``nn.TransformerEncoderLayer`` (post-norm, ReLU, no dropout) as plain ops."""

    def __init__(self, layer: nn.TransformerEncoderLayer) -> None:
        super().__init__()
        if layer.norm_first:
            raise ValueError("only post-norm encoder layers (norm_first=False) are folded")
        attn = layer.self_attn
        self.heads = attn.num_heads
        self.q_proj, self.k_proj, self.v_proj = _split_in_proj(attn)
        self.out_proj = _copy_linear(attn.out_proj)
        self.norm1 = copy.deepcopy(layer.norm1)
        self.linear1 = _copy_linear(layer.linear1)
        self.linear2 = _copy_linear(layer.linear2)
        self.norm2 = copy.deepcopy(layer.norm2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        a = F.scaled_dot_product_attention(
            _heads(self.q_proj(x), self.heads), _heads(self.k_proj(x), self.heads), _heads(self.v_proj(x), self.heads))
        x = self.norm1(x + self.out_proj(a.transpose(1, 2).reshape(b, n, d)))
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class FoldedBoQBlock(nn.Module):
    """A BoQ block whose queries side is one constant: (1, heads, M, head_dim)."""

    query_const: torch.Tensor

    def __init__(self, block: BoQBlock) -> None:
        super().__init__()
        self.encoder = ExplicitEncoderLayer(block.encoder)
        cross = block.cross_attn
        self.heads = cross.num_heads
        q_proj, self.k_proj, self.v_proj = _split_in_proj(cross)
        with torch.no_grad():
            q = q_proj(block.learned_queries())  # (1, M, d)
            m, d = q.shape[1], q.shape[2]
            q = q.reshape(1, m, self.heads, d // self.heads).transpose(1, 2).contiguous()
        self.register_buffer("query_const", q)
        self.out_proj = _copy_linear(cross.out_proj)
        self.norm_out = copy.deepcopy(block.norm_out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.encoder(x)
        b, n, d = x.shape
        k = self.k_proj(x).reshape(b, n, self.heads, d // self.heads).transpose(1, 2)
        v = self.v_proj(x).reshape(b, n, self.heads, d // self.heads).transpose(1, 2)
        q = self.query_const.expand(b, -1, -1, -1)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(b, -1, d)
        return x, self.norm_out(self.out_proj(out))


class FoldedBoQ(nn.Module):
    def __init__(self, agg: BoQ) -> None:
        super().__init__()
        self.proj_c = copy.deepcopy(agg.proj_c)
        self.norm_input = copy.deepcopy(agg.norm_input)
        self.boqs = nn.ModuleList(b.fold() for b in agg.boqs if isinstance(b, BoQBlock))
        self.fc = _copy_linear(agg.fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_input(self.proj_c(x).flatten(2).transpose(1, 2))
        outs = []
        for block in self.boqs:
            x, out = block(x)
            outs.append(out)
        out = self.fc(torch.cat(outs, dim=1).transpose(1, 2)).flatten(1)
        return F.normalize(out, p=2.0, dim=-1)
