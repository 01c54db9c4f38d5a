"""OpenVPRLab .npy triplets: <name>_dbImages.npy, <name>_qImages.npy, <name>_gt_25m.npy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from boq_edge.data import BenchmarkFormatError, detect_format, read_benchmark, read_openvprlab


def _triplet(root: Path, name: str, db: list[str], q: list[str], gt: list) -> None:
    np.save(root / f"{name}_dbImages.npy", np.array(db))
    np.save(root / f"{name}_qImages.npy", np.array(q))
    arr = np.empty(len(gt), dtype=object)
    for i, g in enumerate(gt):
        arr[i] = np.asarray(g, dtype=np.int64)
    np.save(root / f"{name}_gt_25m.npy", arr, allow_pickle=True)


@pytest.fixture()
def lab_dir(tmp_path: Path, write_image) -> Path:
    root = tmp_path / "pitts30k-val"
    db = [f"database/000/db{i}.jpg" for i in range(4)]
    q = [f"queries/000/q{i}.jpg" for i in range(3)]
    for i, rel in enumerate(db + q):
        write_image(root / rel, seed=i)
    _triplet(root, "pitts30k_val", db, q, [[0, 3], [], [1]])
    return root


def test_reads_paths_relative_to_root_and_gt(lab_dir: Path) -> None:
    assert detect_format(lab_dir) == "openvprlab"
    b = read_benchmark(lab_dir)
    assert b.name == "pitts30k_val" and b.num_db == 4 and b.num_queries == 3
    assert b.db_paths[3] == lab_dir / "database/000/db3.jpg"
    assert [p.tolist() for p in b.positives] == [[0, 3], [], [1]]
    assert b.queries_without_positives().tolist() == [1]


def test_several_sets_need_a_name(lab_dir: Path) -> None:
    _triplet(lab_dir, "other", ["database/000/db0.jpg"], ["queries/000/q0.jpg"], [[0]])
    with pytest.raises(BenchmarkFormatError, match="other, pitts30k_val"):
        read_openvprlab(lab_dir)
    assert read_benchmark(lab_dir, name="other").num_db == 1


def test_missing_images_and_bad_gt_are_named(lab_dir: Path) -> None:
    (lab_dir / "database/000/db2.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="db2.jpg"):
        read_openvprlab(lab_dir)
    (lab_dir / "database/000/db2.jpg").write_bytes(b"")  # existence is all the reader checks
    _triplet(lab_dir, "pitts30k_val", [f"database/000/db{i}.jpg" for i in range(4)],
             [f"queries/000/q{i}.jpg" for i in range(3)], [[0], [1]])
    with pytest.raises(BenchmarkFormatError, match="2 ground-truth rows for 3 queries"):
        read_openvprlab(lab_dir)
    (lab_dir / "pitts30k_val_gt_25m.npy").unlink()
    with pytest.raises(BenchmarkFormatError, match="pitts30k_val_gt_25m.npy"):
        read_openvprlab(lab_dir)
