"""Place-balanced sampler: distinct places per batch, deterministic, disjoint shards, exact resume."""

from __future__ import annotations

import pytest

from boq_edge.train.sampler import PlaceBatchSampler


def _places(batches: list) -> list[list[int]]:
    return [[p for p, _ in b] for b in batches]


def test_batches_hold_distinct_places_and_are_deterministic() -> None:
    s = PlaceBatchSampler(50, 8, seed=3)
    s.set_epoch(0)
    a = list(s)
    assert len(a) == len(s) == 6
    assert all(len(set(b)) == 8 for b in _places(a))
    assert len({p for b in _places(a) for p in b}) == 48  # no place twice in an epoch
    s2 = PlaceBatchSampler(50, 8, seed=3)
    s2.set_epoch(0)
    assert list(s2) == a
    s.set_epoch(1)
    assert _places(list(s)) != _places(a)  # a new order each epoch


def test_ranks_get_disjoint_shards_of_the_same_global_batches() -> None:
    single = PlaceBatchSampler(40, 8, seed=0, world_size=1)
    r0 = PlaceBatchSampler(40, 4, seed=0, rank=0, world_size=2)
    r1 = PlaceBatchSampler(40, 4, seed=0, rank=1, world_size=2)
    for s in (single, r0, r1):
        s.set_epoch(2)
    b0, b1, bs = _places(list(r0)), _places(list(r1)), _places(list(single))
    assert len(b0) == len(b1) == 5
    for x, y, z in zip(b0, b1, bs, strict=True):
        assert not set(x) & set(y)
        assert x + y == z  # the same global batch, split between the ranks


def test_start_batch_skips_exactly_the_trained_batches() -> None:
    s = PlaceBatchSampler(30, 5, seed=1)
    s.set_epoch(4)
    full = list(s)
    s.set_epoch(4, start_batch=2)
    assert len(s) == len(full) - 2
    assert list(s) == full[2:]


def test_item_seeds_depend_on_epoch_batch_and_place() -> None:
    s = PlaceBatchSampler(10, 5, seed=9)
    s.set_epoch(1)
    seeds = [seed for b in s for _, seed in b]
    assert len(set(seeds)) == len(seeds)
    assert all(seed[:2] == (9, 1) for seed in seeds)


def test_too_few_places_is_an_actionable_error() -> None:
    with pytest.raises(ValueError, match="lower --batch-places"):
        PlaceBatchSampler(5, 4, world_size=2)
