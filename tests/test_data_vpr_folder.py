"""VPR folder format: UTM names, 25 m radius (inclusive), threshold option, *_images_paths.txt."""

from __future__ import annotations

from pathlib import Path

import pytest

from boq_edge.data import BenchmarkFormatError, detect_format, read_benchmark, read_vpr_folder

E0, N0 = 500000.0, 4000000.0  # realistic UTM magnitudes: float32 would be off by ~0.5 m here


def _name(de: float, dn: float, tag: str) -> str:
    return f"@{E0 + de:.2f}@{N0 + dn:.2f}@33@T@{tag}@.jpg"


@pytest.fixture()
def vpr_dir(tmp_path: Path, write_image) -> Path:
    root = tmp_path / "tiny_vpr"
    db = [(0, 0), (15, 20), (15.01, 20), (100, 0), (100, 30)]  # (15,20) is exactly 25 m from the origin
    for i, (de, dn) in enumerate(db):
        write_image(root / "database" / _name(de, dn, f"db{i}"), seed=i)
    queries = [(0, 0), (100, 10), (1000, 1000)]
    for i, (de, dn) in enumerate(queries):
        write_image(root / "queries" / _name(de, dn, f"q{i}"), seed=10 + i)
    return root


def test_positives_within_25m_boundary_included(vpr_dir: Path) -> None:
    b = read_vpr_folder(vpr_dir)
    names = [p.name for p in b.db_paths]
    assert names == sorted(names)  # sorted by path text, like sorted(glob()) in VPR-methods-evaluation
    q0 = [b.db_paths[i].name for i in b.positives[0]]
    assert sorted(q0) == sorted([_name(0, 0, "db0"), _name(15, 20, "db1")])  # 25.00 m in, 25.008 m out
    q1 = {b.db_paths[i].name for i in b.positives[1]}
    assert q1 == {_name(100, 0, "db3"), _name(100, 30, "db4")}
    assert b.positives[2].size == 0 and b.queries_without_positives().tolist() == [2]
    assert b.params["positive_dist_threshold"] == 25.0 and b.format == "vpr-folder"


def test_threshold_option_and_auto_detection(vpr_dir: Path) -> None:
    assert detect_format(vpr_dir) == "vpr-folder"
    b = read_benchmark(vpr_dir, positive_dist_threshold=5.0)
    assert [p.size for p in b.positives] == [1, 0, 0]
    assert b.fingerprint() != read_benchmark(vpr_dir).fingerprint()
    with pytest.raises(ValueError, match="tolerance"):
        read_benchmark(vpr_dir, tolerance=1)


def test_images_paths_txt_lists_files(vpr_dir: Path) -> None:
    keep = sorted(p.name for p in (vpr_dir / "database").iterdir())[:2]
    (vpr_dir / "database_images_paths.txt").write_text("\n".join(keep) + "\n")
    b = read_vpr_folder(vpr_dir)
    assert [p.name for p in b.db_paths] == keep
    (vpr_dir / "database_images_paths.txt").write_text("missing.jpg\n")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        read_vpr_folder(vpr_dir)


def test_name_without_coordinates_is_named(tmp_path: Path, write_image) -> None:
    write_image(tmp_path / "d" / "database" / "plain.jpg")
    write_image(tmp_path / "d" / "queries" / _name(0, 0, "q"))
    with pytest.raises(BenchmarkFormatError, match="plain.jpg"):
        read_vpr_folder(tmp_path / "d")


def test_empty_folder_is_an_error(tmp_path: Path, write_image) -> None:
    (tmp_path / "d" / "database").mkdir(parents=True)
    write_image(tmp_path / "d" / "queries" / _name(0, 0, "q"))
    with pytest.raises(BenchmarkFormatError, match="no images"):
        read_vpr_folder(tmp_path / "d")
