"""Multi-Similarity miner and loss: the pytorch-metric-learning semantics, checked by brute force."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from boq_edge.train.loss import MultiSimilarityLoss, multi_similarity_mine


def _brute_force(desc: torch.Tensor, labels: torch.Tensor, alpha: float, beta: float, base: float, eps: float) -> float:
    sim = (desc @ desc.T).tolist()
    lab = labels.tolist()
    n = len(lab)
    total = 0.0
    for i in range(n):
        pos = [sim[i][j] for j in range(n) if j != i and lab[j] == lab[i]]
        neg = [sim[i][j] for j in range(n) if lab[j] != lab[i]]
        hard_pos = [s for s in pos if neg and s - eps < max(neg)]
        hard_neg = [s for s in neg if pos and s + eps > min(pos)]
        total += math.log(1 + sum(math.exp(-alpha * (s - base)) for s in hard_pos)) / alpha
        total += math.log(1 + sum(math.exp(beta * (s - base)) for s in hard_neg)) / beta
    return total / n


def test_loss_matches_brute_force() -> None:
    torch.manual_seed(0)
    desc = F.normalize(torch.randn(12, 8, dtype=torch.float64), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 4])
    loss, stats = MultiSimilarityLoss(1.0, 50.0, 0.0, 0.1)(desc, labels)
    assert abs(loss.item() - _brute_force(desc, labels, 1.0, 50.0, 0.0, 0.1)) < 1e-9
    assert 0.0 <= stats.batch_accuracy <= 1.0


def test_miner_keeps_only_informative_pairs() -> None:
    # Place 0: two near-identical images; place 1: far away. Nothing is hard.
    desc = F.normalize(torch.tensor([[1.0, 0.0], [0.99, 0.01], [0.0, 1.0], [0.01, 0.99]]), dim=1)
    labels = torch.tensor([0, 0, 1, 1])
    pos, neg = multi_similarity_mine(desc @ desc.T, labels, epsilon=0.1)
    assert not pos.any() and not neg.any()
    loss, stats = MultiSimilarityLoss()(desc, labels)
    assert loss.item() == 0.0 and stats.batch_accuracy == 1.0
    # Swap one image of each place: each positive is now far and every negative is hard.
    labels = torch.tensor([0, 1, 1, 0])
    pos, neg = multi_similarity_mine(desc @ desc.T, labels, epsilon=0.1)
    assert pos.sum() == 4 and neg.sum() == 8
    assert not pos.diagonal().any()


def test_gradient_pulls_positives_together() -> None:
    torch.manual_seed(1)
    x = torch.randn(8, 16, requires_grad=True)
    labels = torch.arange(4).repeat_interleave(2)
    opt = torch.optim.SGD([x], lr=0.5)
    crit = MultiSimilarityLoss()
    first = None
    for _ in range(200):
        loss, _ = crit(F.normalize(x, dim=1), labels)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    final, stats = crit(F.normalize(x, dim=1), labels)
    assert final.item() < first * 0.5
    assert stats.batch_accuracy == 1.0
