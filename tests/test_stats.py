"""Paired bootstrap interval and McNemar's exact p-value against independent computations (scipy)."""

from __future__ import annotations

import numpy as np
import pytest

from boq_edge.evaluate.stats import budget_in_queries, hits_at_k, mcnemar_exact, paired_bootstrap, paired_drop

scipy_stats = pytest.importorskip("scipy.stats")


def _hits(n: int, ref_rate: float, lost: int, gained: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hand-made paired hits: ``lost`` reference hits the artifact misses, ``gained`` the reverse."""
    rng = np.random.default_rng(seed)
    ref = (rng.random(n) < ref_rate).astype(np.int8)
    art = ref.copy()
    art[rng.choice(np.flatnonzero(ref == 1), lost, replace=False)] = 0
    art[rng.choice(np.flatnonzero(ref == 0), gained, replace=False)] = 1
    return ref, art


@pytest.mark.parametrize("n,lost,gained", [(1077, 14, 5), (1077, 3, 3), (400, 0, 6), (2000, 40, 10)])
def test_bootstrap_interval_matches_scipy(n: int, lost: int, gained: int) -> None:
    ref, art = _hits(n, 0.45, lost, gained, seed=n + lost)
    drop, lo, hi = paired_bootstrap(ref, art, resamples=4000)
    diff = (ref.astype(float) - art) * 100
    assert drop == pytest.approx(diff.mean()) == pytest.approx((lost - gained) / n * 100)
    ci = scipy_stats.bootstrap((diff,), np.mean, n_resamples=20000, method="percentile", confidence_level=0.95,
                               random_state=np.random.default_rng(123)).confidence_interval
    # Two Monte Carlo estimates of the same percentiles: they agree to a fraction of one query.
    one_query = 100 / n
    assert lo == pytest.approx(ci.low, abs=max(0.6 * one_query, 0.05))
    assert hi == pytest.approx(ci.high, abs=max(0.6 * one_query, 0.05))
    assert lo <= drop <= hi


@pytest.mark.parametrize("lost,gained", [(14, 5), (0, 0), (3, 3), (0, 9), (25, 2), (1, 0)])
def test_mcnemar_exact_matches_binomial_test(lost: int, gained: int) -> None:
    expected = 1.0 if lost + gained == 0 else scipy_stats.binomtest(lost, lost + gained, 0.5).pvalue
    assert mcnemar_exact(lost, gained) == pytest.approx(expected, rel=1e-12)


def test_paired_drop_counts_flips_and_is_seeded() -> None:
    ref, art = _hits(1077, 0.45, 14, 5, seed=1)
    a, b = paired_drop(ref, art), paired_drop(ref, art)
    assert a == b and (a.lost, a.gained, a.queries) == (14, 5, 1077)
    assert a.drop_pp == pytest.approx(9 / 1077 * 100)
    assert a.upper > a.drop_pp > a.lower
    with pytest.raises(ValueError, match="at least 1000"):
        paired_bootstrap(ref, art, resamples=10)
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap(ref, art[:-1])


def test_hits_at_k_and_budget_wording() -> None:
    preds = np.array([[3, 1, 2], [0, 2, 1], [5, 6, 7]])
    pos = [np.array([1]), np.array([0]), np.array([], dtype=int)]
    assert hits_at_k(preds, pos, 1).tolist() == [0, 1, 0]
    assert hits_at_k(preds, pos, 2).tolist() == [1, 1, 0]
    assert budget_in_queries(0.5, 1077) == "0.5 pp = 5.4 of 1077 queries"
