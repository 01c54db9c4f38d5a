"""Evaluate one model on one benchmark: extract (cached), search, score, report.

The function behind ``boq-edge eval`` and the recall gates. It takes an ``embed_fn``, not
a torch model, so INT8 artifacts on a device are evaluated by the same code path as the
reference. Unreadable images that were skipped (``skip_corrupt``) are handled openly: a
skipped database image is removed from the index (it can never be retrieved), a skipped
query is left out of the recall denominator; both are counted and listed in the report.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from boq_edge import __version__
from boq_edge.data.benchmark import Benchmark
from boq_edge.evaluate.extract import EmbedFn, Extraction, extract_descriptors
from boq_edge.evaluate.recall import DEFAULT_K, RecallResult, recall_from_predictions, search
from boq_edge.fileio import atomic_write_text
from boq_edge.preprocess import Preprocessing


@dataclass
class EvalReport:
    recall: RecallResult
    queries: Extraction
    database: Extraction
    benchmark: Benchmark
    preprocessing: Preprocessing
    model: dict[str, Any]
    settings: dict[str, Any]
    predictions: np.ndarray  # (evaluated queries, k) original database indices

    @property
    def images_per_second(self) -> float:
        n = self.queries.num_images + self.database.num_images
        s = self.queries.seconds + self.database.seconds
        return n / s if s > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        def ext(e: Extraction) -> dict[str, Any]:
            return {
                "num_images": e.num_images, "num_skipped": len(e.skipped), "seconds": round(e.seconds, 3),
                "embed_seconds": round(e.embed_seconds, 3), "images_per_second": round(e.images_per_second, 2),
                "from_cache": e.from_cache, "loader": e.loader,
                "cache_file": str(e.cache_path) if e.cache_path else None,
            }

        return {
            "boq_edge_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "model": self.model,
            "benchmark": self.benchmark.summary(),
            "preprocessing": self.preprocessing.to_dict(),
            "settings": self.settings,
            "recall": self.recall.to_dict(),
            "extraction": {
                "queries": ext(self.queries),
                "database": ext(self.database),
                "images_per_second": round(self.images_per_second, 2),
                "from_cache": self.queries.from_cache and self.database.from_cache,
            },
            "skipped": {
                "queries": [{"path": p, "reason": r} for p, r in self.queries.skipped],
                "database": [{"path": p, "reason": r} for p, r in self.database.skipped],
            },
        }

    def write_json(self, path: str | os.PathLike) -> Path:
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2, default=str) + "\n")


def score(queries: Extraction, database: Extraction, benchmark: Benchmark,
          k_values: Sequence[int]) -> tuple[RecallResult, np.ndarray]:
    """Recall@k of query descriptors against database descriptors (each from any model: mixing is allowed).

    Skipped database images are left out of the index, skipped queries out of the
    denominator. Returns the result and the predictions in original database indices.
    """
    db_keep = np.flatnonzero(database.ok)
    q_keep = np.flatnonzero(queries.ok)
    ks = list(k_values)
    _, local = search(queries.descriptors[q_keep], database.descriptors[db_keep], max(ks))
    predictions = db_keep[local]
    result = recall_from_predictions(predictions, [benchmark.positives[i] for i in q_keep], ks, num_db=len(db_keep))
    if len(q_keep) != benchmark.num_queries:
        # Report query indices in the benchmark's numbering, not the filtered one.
        result.queries_without_positives = [int(q_keep[i]) for i in result.queries_without_positives]
    return result, predictions


def evaluate_benchmark(
    embed_fn: EmbedFn,
    benchmark: Benchmark,
    preprocessing: Preprocessing,
    *,
    model_hash: str | None = None,
    model_info: dict[str, Any] | None = None,
    k_values: Sequence[int] = DEFAULT_K,
    batch_size: int = 32,
    num_workers: int = 2,
    cache_dir: str | os.PathLike | None = None,
    skip_corrupt: bool = False,
    progress: bool = True,
    loader: str = "auto",
) -> EvalReport:
    """Recall@k of ``embed_fn`` on ``benchmark``.

    Descriptors are cached when both ``model_hash`` and ``cache_dir`` are given.
    """
    use_cache = cache_dir is not None and model_hash is not None
    common = dict(batch_size=batch_size, num_workers=num_workers, skip_corrupt=skip_corrupt, progress=progress,
                  loader=loader, cache_dir=cache_dir if use_cache else None)
    fp = benchmark.fingerprint()
    db = extract_descriptors(embed_fn, benchmark.db_paths, preprocessing, desc="database",
                             cache_key=f"{model_hash}|{fp}|database" if use_cache else None, **common)  # type: ignore[arg-type]
    qs = extract_descriptors(embed_fn, benchmark.query_paths, preprocessing, desc="queries",
                             cache_key=f"{model_hash}|{fp}|queries" if use_cache else None, **common)  # type: ignore[arg-type]

    ks = list(k_values)
    result, predictions = score(qs, db, benchmark, ks)
    settings = {"k_values": ks, "batch_size": batch_size, "num_workers": num_workers, "skip_corrupt": skip_corrupt}
    return EvalReport(result, qs, db, benchmark, preprocessing, {**(model_info or {}), "hash": model_hash},
                      settings, predictions)
