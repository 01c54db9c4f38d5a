"""Recall@k exactly as VPR-methods-evaluation computes it, with faiss.

A query counts at N when any of its top-N retrieved database images is a positive; the
count is divided by the number of *all* queries, so a query without positives is a miss
at every N (that is what VPR-methods-evaluation does). Such queries are also counted and
listed in the result, so nothing is silent. Retrieval is exact inner product on
L2-normalised descriptors (``faiss.IndexFlatIP``). Equal scores rank the lower database
index first (a documented, tested tie rule rather than heap order).

faiss + numpy only: this runs on devices, which have no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

DEFAULT_K = (1, 5, 10, 20)


@dataclass
class RecallResult:
    """Recall@k in percent, plus everything needed to trust the number."""

    k_values: list[int]
    recalls: dict[int, float]
    num_queries: int
    num_db: int
    num_queries_without_positives: int
    queries_without_positives: list[int]
    # Recall over only the queries that have at least one positive (secondary; the
    # headline ``recalls`` divides by all queries, like the field does).
    recalls_over_queries_with_positives: dict[int, float]
    k_clamped: dict[int, int] = field(default_factory=dict)  # requested k -> k used (> num_db)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("recalls", "recalls_over_queries_with_positives", "k_clamped"):
            d[key] = {str(k): v for k, v in d[key].items()}
        return d


def _check_k(k_values: Sequence[int]) -> list[int]:
    ks = [int(k) for k in k_values]
    if not ks:
        raise ValueError("need at least one k")
    if any(k < 1 for k in ks):
        raise ValueError(f"k values must be >= 1, got {ks}")
    if ks != sorted(set(ks)):
        raise ValueError(f"k values must be strictly increasing, got {ks}")
    return ks


def _as_descriptors(x: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{what} descriptors must be 2-D (N, D), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{what} descriptors must be floating point, got {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise ValueError(f"{what} descriptors contain NaN or inf")
    return a


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation (a zero row stays zero)."""
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(n > 0, n, 1)).astype(np.float32)


def search(query_desc: np.ndarray, db_desc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` database indices per query by inner product on L2-normalised descriptors.

    ``k`` is clamped to the database size. Returns (scores, indices), both (Nq, k), best first,
    ties ordered by database index.
    """
    import faiss

    q = l2_normalize(_as_descriptors(query_desc, "query"))
    db = l2_normalize(_as_descriptors(db_desc, "database"))
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"query descriptors have dimension {q.shape[1]}, database {db.shape[1]}")
    if len(db) == 0:
        raise ValueError("empty database")
    k = min(int(k), len(db))
    index = faiss.IndexFlatIP(db.shape[1])
    index.add(db)
    scores, idx = index.search(q, k)
    # faiss keeps the lowest indices among tied scores but returns them in heap order;
    # re-sort each row by (-score, index) so the tie rule is explicit and stable.
    order = np.lexsort((idx, -scores), axis=1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(idx, order, 1)


def recall_from_predictions(
    predictions: np.ndarray,
    positives: Sequence[np.ndarray],
    k_values: Sequence[int] = DEFAULT_K,
    num_db: int | None = None,
) -> RecallResult:
    """Recall@k from ranked predictions (Nq, K) and per-query positive database indices.

    Mirrors VPR-methods-evaluation: for each query, the first N in ``k_values`` whose top-N
    holds a positive counts for that N and every larger N; divide by all queries × 100.
    A k larger than the number of ranked columns (``num_db`` when given) is clamped and
    recorded in ``k_clamped``.
    """
    ks = _check_k(k_values)
    preds = np.asarray(predictions)
    if preds.ndim != 2:
        raise ValueError(f"predictions must be 2-D (num_queries, K), got shape {preds.shape}")
    if len(positives) != len(preds):
        raise ValueError(f"{len(preds)} prediction rows but positives for {len(positives)} queries")
    available = preds.shape[1] if num_db is None else min(int(num_db), preds.shape[1])
    if num_db is not None and preds.shape[1] < min(ks[-1], int(num_db)):
        raise ValueError(f"predictions rank {preds.shape[1]} images; k={ks[-1]} needs {min(ks[-1], int(num_db))}")
    clamped = {k: available for k in ks if k > available}
    eff = [min(k, available) for k in ks]

    nq = len(preds)
    hits = np.zeros(len(ks))
    hits_pos = np.zeros(len(ks))
    no_pos: list[int] = []
    for q in range(nq):
        pos = np.asarray(positives[q]).reshape(-1)
        if pos.size == 0:
            no_pos.append(q)
            continue
        for i, n in enumerate(eff):
            if np.any(np.isin(preds[q, :n], pos)):
                hits[i:] += 1
                hits_pos[i:] += 1
                break
    n_with = nq - len(no_pos)
    recalls = {k: float(h / nq * 100) if nq else 0.0 for k, h in zip(ks, hits, strict=True)}
    recalls_pos = {k: float(h / n_with * 100) if n_with else 0.0 for k, h in zip(ks, hits_pos, strict=True)}
    return RecallResult(
        k_values=ks,
        recalls=recalls,
        num_queries=nq,
        num_db=int(num_db) if num_db is not None else preds.shape[1],
        num_queries_without_positives=len(no_pos),
        queries_without_positives=no_pos,
        recalls_over_queries_with_positives=recalls_pos,
        k_clamped=clamped,
    )


def compute_recall(
    query_desc: np.ndarray,
    db_desc: np.ndarray,
    positives: Sequence[np.ndarray],
    k_values: Sequence[int] = DEFAULT_K,
) -> tuple[RecallResult, np.ndarray]:
    """Search with faiss, then score: returns (result, predictions (Nq, min(max k, Ndb)))."""
    ks = _check_k(k_values)
    _, preds = search(query_desc, db_desc, ks[-1])
    return recall_from_predictions(preds, positives, ks, num_db=len(db_desc)), preds
