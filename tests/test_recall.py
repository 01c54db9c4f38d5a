"""Recall@k against hand-computed cases, and against the VPR-methods-evaluation loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from boq_edge.evaluate.recall import compute_recall, recall_from_predictions, search


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_hand_computed_from_predictions() -> None:
    preds = np.array([[5, 1, 2], [0, 3, 4], [0, 1, 2], [0, 1, 2]])
    positives = [np.array([5]), np.array([3]), np.array([9]), np.array([], dtype=np.int64)]
    r = recall_from_predictions(preds, positives, k_values=[1, 2, 3])
    assert r.recalls == {1: 25.0, 2: 50.0, 3: 50.0}  # divided by ALL 4 queries, like the field
    assert r.num_queries_without_positives == 1 and r.queries_without_positives == [3]
    assert r.recalls_over_queries_with_positives == pytest.approx({1: 100 / 3, 2: 200 / 3, 3: 200 / 3})
    assert r.k_clamped == {}


def test_hand_computed_with_faiss() -> None:
    db = np.array([_unit(0), _unit(90), _unit(180), _unit(45)], dtype=np.float32)
    q = np.array([_unit(10), _unit(80), _unit(170)], dtype=np.float32) * np.array([[1.0], [7.0], [0.1]], np.float32)
    # rankings: q0 → 0, 3, 1, 2   q1 → 1, 3, 0, 2   q2 → 2, 1, 3, 0   (norms do not matter)
    positives = [np.array([3]), np.array([1]), np.array([0])]
    r, preds = compute_recall(q, db, positives, k_values=[1, 2, 3, 4])
    assert preds.tolist() == [[0, 3, 1, 2], [1, 3, 0, 2], [2, 1, 3, 0]]
    assert r.recalls == pytest.approx({1: 100 / 3, 2: 200 / 3, 3: 200 / 3, 4: 100.0})


def test_ties_rank_lower_database_index_first() -> None:
    db = np.array([_unit(0), _unit(90), _unit(0), _unit(0), _unit(30)], dtype=np.float32)
    q = np.array([_unit(0)], dtype=np.float32)
    scores, idx = search(q, db, 5)
    assert idx.tolist() == [[0, 2, 3, 4, 1]]
    assert scores[0, 0] == scores[0, 1] == scores[0, 2]
    # The positive is the last of three tied images: a miss at 1 and 2, a hit at 3.
    r, _ = compute_recall(q, db, [np.array([3])], k_values=[1, 2, 3])
    assert r.recalls == {1: 0.0, 2: 0.0, 3: 100.0}
    # Ties straddling the cut-off: k=2 keeps the two lowest indices of the tied three.
    assert search(q, db, 2)[1].tolist() == [[0, 2]]


def test_k_larger_than_database_is_clamped_and_reported() -> None:
    db = np.array([_unit(0), _unit(90), _unit(180)], dtype=np.float32)
    q = np.array([_unit(0), _unit(0)], dtype=np.float32)
    r, preds = compute_recall(q, db, [np.array([2]), np.array([], dtype=np.int64)], k_values=[1, 5, 10])
    assert preds.shape == (2, 3)
    assert r.k_clamped == {5: 3, 10: 3} and r.num_db == 3
    assert r.recalls == {1: 0.0, 5: 50.0, 10: 50.0}
    assert r.to_dict()["k_clamped"] == {"5": 3, "10": 3}


def _vpr_methods_evaluation(preds: np.ndarray, positives: list, recall_values: list[int]) -> np.ndarray:
    """The loop of gmberton/VPR-methods-evaluation main.py, verbatim in logic."""
    recalls = np.zeros(len(recall_values))
    for query_index, p in enumerate(preds):
        for i, n in enumerate(recall_values):
            if np.any(np.isin(p[:n], positives[query_index])):
                recalls[i:] += 1
                break
    return recalls / len(preds) * 100


def test_matches_reference_loop_on_random_data() -> None:
    rng = np.random.default_rng(0)
    db = rng.normal(size=(200, 16)).astype(np.float32)
    q = (db[:150] + 0.8 * rng.normal(size=(150, 16))).astype(np.float32)
    positives = [np.unique(rng.integers(0, 200, rng.integers(0, 4))) for _ in range(150)]
    for i in range(150):  # make many queries answerable
        if i % 3:
            positives[i] = np.union1d(positives[i], [i])
    ks = [1, 5, 10, 20]
    r, preds = compute_recall(q, db, positives, ks)
    # faiss inner product on normalised vectors ranks exactly like a numpy cosine sort
    qn, dn = q / np.linalg.norm(q, axis=1, keepdims=True), db / np.linalg.norm(db, axis=1, keepdims=True)
    np.testing.assert_array_equal(preds, np.argsort(-(qn @ dn.T), axis=1, kind="stable")[:, :20])
    np.testing.assert_allclose([r.recalls[k] for k in ks], _vpr_methods_evaluation(preds, positives, ks))
    assert r.num_queries_without_positives == sum(p.size == 0 for p in positives)


@pytest.mark.parametrize(
    ("q", "db", "ks", "match"),
    [
        (np.full((1, 2), np.nan, np.float32), np.ones((2, 2), np.float32), [1], "NaN"),
        (np.ones((1, 3), np.float32), np.ones((2, 2), np.float32), [1], "dimension"),
        (np.ones((1, 2), np.float32), np.ones((2, 2), np.float32), [5, 1], "increasing"),
        (np.ones((1, 2), np.float32), np.ones((2, 2), np.float32), [0], ">= 1"),
        (np.ones((1, 2), np.int64), np.ones((2, 2), np.float32), [1], "floating"),
    ],
)
def test_bad_inputs_are_errors(q, db, ks, match) -> None:
    with pytest.raises(ValueError, match=match):
        compute_recall(q, db, [np.array([0])], ks)
