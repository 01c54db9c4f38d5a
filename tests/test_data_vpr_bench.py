"""VPR-Bench: query/, ref/, ground_truth_new.npy rows [query_idx, [ref indices]]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from boq_edge.data import BenchmarkFormatError, detect_format, read_benchmark, read_vpr_bench


def _gt(path: Path, rows: list) -> None:
    arr = np.empty((len(rows), 2), dtype=object)
    for i, (q, refs) in enumerate(rows):
        arr[i, 0], arr[i, 1] = q, refs
    np.save(path, arr, allow_pickle=True)


@pytest.fixture()
def bench_dir(tmp_path: Path, write_image) -> Path:
    root = tmp_path / "GardensPoint_mini"
    for i in range(12):  # numeric order must be 0,1,2,…,10,11 — not 0,1,10,11,2,…
        write_image(root / "ref" / f"{i}.jpg", seed=i)
    for i in range(3):
        write_image(root / "query" / f"{i}.jpg", seed=100 + i)
    # query 2 deliberately absent from the ground truth; a scalar ref for query 1
    _gt(root / "ground_truth_new.npy", [(0, [10, 11]), (1, np.int64(2))])
    return root


def test_reads_rows_in_numeric_image_order(bench_dir: Path) -> None:
    assert detect_format(bench_dir) == "vpr-bench"
    b = read_benchmark(bench_dir)
    assert [p.name for p in b.db_paths][:3] == ["0.jpg", "1.jpg", "2.jpg"]
    assert b.db_paths[10].name == "10.jpg"
    assert [p.tolist() for p in b.positives] == [[10, 11], [2], []]
    assert b.queries_without_positives().tolist() == [2]
    assert b.name == "GardensPoint_mini" and b.format == "vpr-bench"


def test_bad_ground_truth_is_named(bench_dir: Path) -> None:
    gt = bench_dir / "ground_truth_new.npy"
    _gt(gt, [(0, [12])])
    with pytest.raises(BenchmarkFormatError, match="ref index outside"):
        read_vpr_bench(bench_dir)
    _gt(gt, [(5, [0])])
    with pytest.raises(BenchmarkFormatError, match="names query 5"):
        read_vpr_bench(bench_dir)
    _gt(gt, [(0, [0]), (0, [1])])
    with pytest.raises(BenchmarkFormatError, match="more than one row"):
        read_vpr_bench(bench_dir)
    gt.unlink()
    with pytest.raises(BenchmarkFormatError, match="ground_truth_new.npy"):
        read_vpr_bench(bench_dir)
