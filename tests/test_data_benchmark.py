"""The Benchmark interface itself: validation, fingerprints, safe .npy loading."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from boq_edge.data import Benchmark, BenchmarkFormatError
from boq_edge.data.safe_npy import UnsafeNpyError, load_npy


def _bench(root: Path, positives, **kw) -> Benchmark:
    return Benchmark(
        name="t", format="test", root=root,
        query_paths=[root / "q" / f"{i}.png" for i in range(len(positives))],
        db_paths=[root / "db" / f"{i}.png" for i in range(4)],
        positives=positives, **kw,
    )


def test_positives_are_normalised_to_sorted_unique_int64(tmp_path: Path) -> None:
    b = _bench(tmp_path, [[3, 1, 1], np.array([], dtype=float), (2,)])
    assert [p.tolist() for p in b.positives] == [[1, 3], [], [2]]
    assert all(p.dtype == np.int64 for p in b.positives)
    assert b.queries_without_positives().tolist() == [1]
    assert b.summary()["num_queries_without_positives"] == 1


@pytest.mark.parametrize("bad", [[[4]], [[-1]], [[0.5]]])
def test_out_of_range_or_fractional_positives_are_errors(tmp_path: Path, bad) -> None:
    with pytest.raises(BenchmarkFormatError):
        _bench(tmp_path, bad)


def test_ground_truth_rows_must_match_queries(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkFormatError, match="2 rows for 1 queries"):
        Benchmark("t", "test", tmp_path, [tmp_path / "a.png"], [tmp_path / "b.png"], [[0], [0]])


def test_fingerprint_is_stable_relocatable_and_sensitive(tmp_path: Path) -> None:
    a = _bench(tmp_path / "one", [[0], [1, 2]], params={"tolerance": 1})
    moved = _bench(tmp_path / "elsewhere", [[0], [1, 2]], params={"tolerance": 1})
    assert a.fingerprint() == _bench(tmp_path / "one", [[0], [1, 2]], params={"tolerance": 1}).fingerprint()
    assert a.fingerprint() == moved.fingerprint()  # the dataset moved: cache still valid
    assert a.fingerprint() != _bench(tmp_path / "one", [[0], [1]], params={"tolerance": 1}).fingerprint()
    assert a.fingerprint() != _bench(tmp_path / "one", [[0], [1, 2]], params={"tolerance": 2}).fingerprint()
    # Positives [0],[1,2] vs [0,1],[2] have the same flat concatenation; the fingerprint must differ.
    assert a.fingerprint() != _bench(tmp_path / "one", [[0, 1], [2]], params={"tolerance": 1}).fingerprint()


def test_safe_npy_reads_object_arrays_and_refuses_code(tmp_path: Path) -> None:
    rows = np.empty(2, dtype=object)
    rows[0], rows[1] = np.array([1, 2]), [np.int64(3)]
    np.save(tmp_path / "ok.npy", rows, allow_pickle=True)
    got = load_npy(tmp_path / "ok.npy")
    assert got[0].tolist() == [1, 2] and [int(x) for x in got[1]] == [3]

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    bad = np.empty(1, dtype=object)
    bad[0] = Evil()
    np.save(tmp_path / "evil.npy", bad, allow_pickle=True)
    with pytest.raises(UnsafeNpyError, match="evil.npy"):
        load_npy(tmp_path / "evil.npy")
    (tmp_path / "junk.npy").write_bytes(b"not an npy file")
    with pytest.raises(ValueError, match="junk.npy"):
        load_npy(tmp_path / "junk.npy")
