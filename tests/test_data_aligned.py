"""Aligned traversals: same file name = same place, ±tolerance files, frame-range split; Nordland."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from boq_edge.data import BenchmarkFormatError, detect_format, parse_frame_range, read_aligned, read_benchmark


@pytest.fixture()
def seq_dir(tmp_path: Path, write_image) -> Path:
    root = tmp_path / "seq"
    frames = [10, 20, 30, 40, 50, 100]  # natural order must put 100 last
    for season, s in (("summer", 0), ("winter", 50)):
        for i, f in enumerate(frames):
            write_image(root / season / f"images-{f:03d}.png", seed=s + i)
    return root


def test_tolerance_counts_files(seq_dir: Path) -> None:
    b = read_aligned(seq_dir, tolerance=1)
    assert [p.name for p in b.query_paths] == [f"images-{f:03d}.png" for f in (10, 20, 30, 40, 50, 100)]
    assert all(q.parent.name == "summer" for q in b.query_paths)
    assert all(d.parent.name == "winter" for d in b.db_paths)
    assert [p.tolist() for p in b.positives] == [[0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5]]
    assert [p.tolist() for p in read_aligned(seq_dir, tolerance=0).positives] == [[i] for i in range(6)]
    assert read_aligned(seq_dir, tolerance=2).positives[0].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="non-negative"):
        read_aligned(seq_dir, tolerance=-1)


def test_frame_range_filters_both_sides(seq_dir: Path) -> None:
    b = read_aligned(seq_dir, frames="30:")
    assert [p.name for p in b.db_paths] == ["images-030.png", "images-040.png", "images-050.png", "images-100.png"]
    assert b.positives[0].tolist() == [0, 1]  # frame 20 is outside the split: never a positive
    assert b.params["frames"] == [30, None] and b.name.endswith("[30:]")
    assert [p.name for p in read_aligned(seq_dir, frames=":30").query_paths] == ["images-010.png", "images-020.png"]
    assert read_aligned(seq_dir, frames=(20, 40)).num_queries == 2
    with pytest.raises(BenchmarkFormatError, match="no files"):
        read_aligned(seq_dir, frames="200:")


@pytest.mark.parametrize(("text", "expected"), [("25000:", (25000, None)), (":25000", (None, 25000)),
                                                ("1:5", (1, 5)), (":", None), ("", None), (None, None)])
def test_parse_frame_range(text, expected) -> None:
    assert parse_frame_range(text) == expected


@pytest.mark.parametrize("text", ["5:1", "a:", "1:2:3"])
def test_parse_frame_range_rejects(text) -> None:
    with pytest.raises(ValueError):
        parse_frame_range(text)


def test_choosing_folders(seq_dir: Path, write_image) -> None:
    assert detect_format(seq_dir) == "aligned"
    swapped = read_benchmark(seq_dir, queries="winter")
    assert swapped.query_paths[0].parent.name == "winter" and swapped.db_paths[0].parent.name == "summer"
    # A third aligned traversal: the defaults still pick summer→winter, and any pair can be chosen.
    for i, f in enumerate((10, 20, 30, 40, 50, 100)):
        write_image(seq_dir / "autumn" / f"images-{f:03d}.png", seed=200 + i)
    assert read_aligned(seq_dir).params["queries"] == "summer"
    b = read_aligned(seq_dir, queries="autumn", database="winter")
    assert b.query_paths[0].parent.name == "autumn"
    with pytest.raises(BenchmarkFormatError, match="choose the query and database"):
        read_aligned(seq_dir, queries="autumn")


def test_misaligned_folders_are_an_error(seq_dir: Path) -> None:
    (seq_dir / "winter" / "images-050.png").unlink()
    with pytest.raises(BenchmarkFormatError, match=r"1 file\(s\) only in summer/.*images-050.png"):
        read_aligned(seq_dir)


def test_nordland_split_ge_25000(nordland_dir: Path) -> None:
    b = read_benchmark(nordland_dir, frames="25000:", tolerance=1)
    assert b.format == "aligned" and b.num_queries == 1077 and b.num_db == 1077
    assert b.query_paths[0].name == "images-25000.png" and b.query_paths[-1].name == "images-35760.png"
    assert [q.name for q in b.query_paths] == [d.name for d in b.db_paths]
    assert b.query_paths[0].parent.name == "summer" and b.db_paths[0].parent.name == "winter"
    assert b.positives[0].tolist() == [0, 1] and b.positives[500].tolist() == [499, 500, 501]
    assert all(len(p) == 3 for p in b.positives[1:-1]) and b.queries_without_positives().size == 0
    train = read_benchmark(nordland_dir, frames=":25000")
    assert train.num_queries == 2499 and train.query_paths[-1].name == "images-24990.png"
    assert read_benchmark(nordland_dir).num_queries == 3576


def test_nordland_blank_frames_are_valid_images(nordland_dir: Path) -> None:
    from boq_edge.preprocess import Preprocessing, preprocess_batch

    blank = sorted(p for p in (nordland_dir / "summer").iterdir() if p.stat().st_size == 137)
    assert len(blank) == 17
    x = preprocess_batch(blank, Preprocessing(32, 64))
    assert x.shape == (17, 3, 32, 64) and np.isfinite(x).all()
