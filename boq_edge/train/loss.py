"""Multi-Similarity loss and miner (Wang et al., CVPR 2019), as GSV-Cities and BoQ train with.

Same semantics as pytorch-metric-learning's ``MultiSimilarityMiner(epsilon=0.1)`` +
``MultiSimilarityLoss(alpha=1, beta=50, base=0)`` on cosine/dot similarity, which is what
the official BoQ training uses, written out here (~50 lines) rather than adding a
dependency. Descriptors are expected L2-normalised (the model's output is).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def multi_similarity_mine(sim: torch.Tensor, labels: torch.Tensor, epsilon: float = 0.1
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks (B × B) of the informative positive and negative pairs of each anchor.

    A negative is kept when it is more similar than the anchor's least similar positive
    minus ``epsilon``; a positive when it is less similar than the anchor's most similar
    negative plus ``epsilon``. Easy pairs carry no gradient worth its noise.
    """
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos = same & ~eye
    neg = ~same
    s = sim.detach()
    inf = torch.tensor(float("inf"), dtype=s.dtype, device=s.device)
    hardest_pos = torch.where(pos, s, inf).min(dim=1, keepdim=True).values  # least similar positive
    hardest_neg = torch.where(neg, s, -inf).max(dim=1, keepdim=True).values  # most similar negative
    keep_neg = neg & (s + epsilon > hardest_pos)
    keep_pos = pos & (s - epsilon < hardest_neg)
    return keep_pos, keep_neg


def _log1p_sum_exp(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row-wise log(1 + Σ_mask exp(x)), computed stably (the "+1" is a zero logit)."""
    x = x.masked_fill(~mask, float("-inf"))
    zeros = torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)
    return torch.logsumexp(torch.cat([zeros, x], dim=1), dim=1)


@dataclass
class LossStats:
    loss: float
    batch_accuracy: float  # share of images whose nearest other image shows the same place
    pos_pairs: int
    neg_pairs: int


class MultiSimilarityLoss(nn.Module):
    """MS loss over the mined pairs, averaged over all anchors (pytorch-metric-learning's reduction)."""

    def __init__(self, alpha: float = 1.0, beta: float = 50.0, base: float = 0.0, epsilon: float = 0.1) -> None:
        super().__init__()
        self.alpha, self.beta, self.base, self.epsilon = alpha, beta, base, epsilon

    def forward(self, desc: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, LossStats]:
        sim = desc @ desc.T
        keep_pos, keep_neg = multi_similarity_mine(sim, labels, self.epsilon)
        pos_term = _log1p_sum_exp(-self.alpha * (sim - self.base), keep_pos) / self.alpha
        neg_term = _log1p_sum_exp(self.beta * (sim - self.base), keep_neg) / self.beta
        loss = (pos_term + neg_term).mean()
        with torch.no_grad():
            s = sim.detach().clone()
            s.fill_diagonal_(float("-inf"))
            nearest = s.argmax(dim=1)
            acc = (labels[nearest] == labels).float().mean().item()
        return loss, LossStats(float(loss.detach()), acc, int(keep_pos.sum()), int(keep_neg.sum()))
