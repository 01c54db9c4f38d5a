"""Recall@k of the model being trained (train-time validation; artifact validation is ``boq_edge.validate``).

It uses the evaluation stage's own extraction and faiss search: it must measure exactly
what ``boq-edge eval`` will report later, so it reuses
:func:`boq_edge.evaluate.extract_descriptors` (same preprocessing) and
:func:`boq_edge.evaluate.compute_recall` rather than a private shortcut.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from boq_edge.data.benchmark import Benchmark
from boq_edge.evaluate import RecallResult, compute_recall, extract_descriptors, torch_embed_fn
from boq_edge.preprocess import Preprocessing


def epoch_recall(model: torch.nn.Module, benchmark: Benchmark, preprocessing: Preprocessing,
             k_values: Sequence[int] = (1, 5, 10), batch_size: int = 64, num_workers: int = 0,
             device: str = "cpu", progress: bool = False) -> RecallResult:
    """Recall@k (percent) on ``benchmark``; leaves the model in eval mode (the caller resets it)."""
    embed = torch_embed_fn(model, device)
    loader = "threads" if num_workers else "auto"
    q = extract_descriptors(embed, benchmark.query_paths, preprocessing, batch_size, num_workers, progress=progress,
                            desc="val queries", loader=loader)
    db = extract_descriptors(embed, benchmark.db_paths, preprocessing, batch_size, num_workers, progress=progress,
                             desc="val database", loader=loader)
    result, _ = compute_recall(q.descriptors, db.descriptors, benchmark.positives, k_values)
    return result


def overlapping_images(train_paths: Sequence[Path], benchmark: Benchmark) -> list[Path]:
    """Images that are both trained on and validated on (must be none: no training on the test set)."""
    val = {p.resolve() for p in [*benchmark.query_paths, *benchmark.db_paths]}
    return sorted(p for p in {Path(p).resolve() for p in train_paths} if p in val)


def split_frozen_prefix(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(frozen prefix, trainable rest) of a ResNet/MobileNetV2 backbone, or None when it has no frozen prefix.

    Both backbones are one ``nn.Sequential`` (``net`` / ``features``) whose first
    ``len - trainable_stages`` entries are frozen and held in eval mode, so their output for
    a fixed image never changes during training.
    """
    bb = getattr(model, "backbone", None)
    seq = getattr(bb, "features", None) if getattr(bb, "features", None) is not None else getattr(bb, "net", None)
    trainable = getattr(bb, "trainable_stages", None)
    if not isinstance(seq, torch.nn.Sequential) or trainable is None:
        return None
    n_frozen = len(seq) - int(trainable)
    if n_frozen <= 0 or any(p.requires_grad for p in seq[:n_frozen].parameters()):
        return None
    return seq[:n_frozen], seq[n_frozen:]


class Validator:
    """Recall@k of the model in training, computed each epoch with the frozen part done once.

    The frozen backbone prefix (most of a CPU forward pass at small sizes) sees the same
    validation images every epoch, so its outputs are extracted once — through the
    evaluation stage's own extraction and preprocessing — and kept in memory; each epoch
    runs only the trainable stages and the aggregator. Falls back to full extraction when
    the backbone has no frozen prefix or its outputs would exceed ``max_cache_bytes``.
    """

    def __init__(self, benchmark: Benchmark, preprocessing: Preprocessing, k_values: Sequence[int] = (1, 5, 10),
                 batch_size: int = 64, num_workers: int = 0, device: str = "cpu", progress: bool = False,
                 max_cache_bytes: int = 1 << 30) -> None:
        self.benchmark, self.spec, self.k_values = benchmark, preprocessing, tuple(k_values)
        self.batch_size, self.num_workers, self.device, self.progress = batch_size, num_workers, device, progress
        self.max_cache_bytes = max_cache_bytes
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self._shape: tuple[int, ...] | None = None
        self._usable: bool | None = None

    def _prefix_features(self, prefix: torch.nn.Module) -> bool:
        with torch.inference_mode():
            probe = prefix.eval()(torch.zeros(1, 3, self.spec.height, self.spec.width, device=self.device))
        n = self.benchmark.num_queries + self.benchmark.num_db
        if probe.numel() * 4 * n > self.max_cache_bytes:
            return False
        self._shape = tuple(probe.shape[1:])
        embed = torch_embed_fn(_Flatten(prefix), self.device)
        loader = "threads" if self.num_workers else "auto"
        feats = [torch.from_numpy(extract_descriptors(
            embed, paths, self.spec, self.batch_size, self.num_workers, progress=self.progress, desc=desc,
            loader=loader).descriptors) for paths, desc in ((self.benchmark.query_paths, "val queries (frozen part)"),
                                                          (self.benchmark.db_paths, "val database (frozen part)"))]
        self._cache = (feats[0], feats[1])
        return True

    def __call__(self, model: torch.nn.Module) -> RecallResult:
        """Recall@k now; leaves the model in eval mode (the caller resets it)."""
        split = split_frozen_prefix(model)
        if self._usable is None:
            self._usable = split is not None and self._prefix_features(split[0])
        if not self._usable or split is None or self._cache is None:
            return epoch_recall(model, self.benchmark, self.spec, self.k_values, self.batch_size,
                                self.num_workers, self.device, self.progress)
        _, rest = split
        model.eval()
        aggregator: torch.nn.Module = model.aggregator  # type: ignore[assignment]
        out = []
        with torch.inference_mode():
            for feats in self._cache:
                descs = []
                for i in range(0, len(feats), self.batch_size):
                    x = feats[i : i + self.batch_size].to(self.device).view(-1, *self._shape)  # type: ignore[misc]
                    descs.append(aggregator(rest(x))[0].float().cpu())
                out.append(torch.cat(descs).numpy())
        result, _ = compute_recall(out[0], out[1], self.benchmark.positives, self.k_values)
        return result


class _Flatten(torch.nn.Module):
    """Prefix output (B × C × H × W) as (B × C·H·W) rows, the shape ``extract_descriptors`` stores."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).flatten(1)
