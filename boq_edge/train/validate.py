"""Recall@k of the model being trained, with the evaluation stage's own extraction and faiss search.

Validation must measure exactly what ``boq-edge eval`` will report later, so it reuses
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


def validate(model: torch.nn.Module, benchmark: Benchmark, preprocessing: Preprocessing,
             k_values: Sequence[int] = (1, 5, 10), batch_size: int = 64, num_workers: int = 0,
             device: str = "cpu", progress: bool = False) -> RecallResult:
    """Recall@k (percent) on ``benchmark``; leaves the model in eval mode (the caller resets it)."""
    embed = torch_embed_fn(model, device)
    kw = {"batch_size": batch_size, "num_workers": num_workers, "progress": progress,
          "loader": "threads" if num_workers else "auto"}
    q = extract_descriptors(embed, benchmark.query_paths, preprocessing, desc="val queries", **kw)
    db = extract_descriptors(embed, benchmark.db_paths, preprocessing, desc="val database", **kw)
    result, _ = compute_recall(q.descriptors, db.descriptors, benchmark.positives, k_values)
    return result


def overlapping_images(train_paths: Sequence[Path], benchmark: Benchmark) -> list[Path]:
    """Images that are both trained on and validated on (must be none: no training on the test set)."""
    val = {p.resolve() for p in [*benchmark.query_paths, *benchmark.db_paths]}
    return sorted(p for p in {Path(p).resolve() for p in train_paths} if p in val)
