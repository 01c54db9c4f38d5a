"""The Bag-of-Queries aggregator, with the official repository's names and semantics.

Each block runs a Transformer encoder over the local features, lets its learnable
queries self-attend (a training-time stabiliser whose output is input-independent, hence
foldable into a constant for deployment — see ``boq_edge.export.fold``), then
cross-attends the queries to the features. The blocks' outputs are concatenated, reduced
by ``fc`` along the query axis, flattened and L2-normalised.
"""

from __future__ import annotations

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
