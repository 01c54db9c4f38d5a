"""--format auto: each layout is recognised; unknown and ambiguous directories are clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from boq_edge.data import BenchmarkFormatError, detect_format, read_benchmark


def test_folder_layouts(tmp_path: Path, write_image) -> None:
    vpr = tmp_path / "vpr"
    write_image(vpr / "database" / "@1@2@.jpg")
    write_image(vpr / "queries" / "@1@2@.jpg")
    assert detect_format(vpr) == "vpr-folder"  # same names in two folders, but the vpr layout wins

    seq = tmp_path / "seq"
    for side in ("a", "b"):
        write_image(seq / side / "0001.png")
    write_image(seq / "c" / "other.png")  # an unrelated folder does not prevent detection
    assert detect_format(seq) == "aligned"
    b = read_benchmark(seq)
    assert b.params["queries"] == "a" and b.params["database"] == "b"


def test_unknown_and_ambiguous(tmp_path: Path, write_image) -> None:
    write_image(tmp_path / "x" / "a" / "1.png")
    write_image(tmp_path / "x" / "b" / "2.png")
    with pytest.raises(BenchmarkFormatError, match="cannot tell the dataset format"):
        detect_format(tmp_path / "x")
    both = tmp_path / "both"
    for d in ("query", "ref"):
        write_image(both / d / "0.jpg")
    np.save(both / "ground_truth_new.npy", np.array([[0, 0]]))
    np.save(both / "s_dbImages.npy", np.array(["ref/0.jpg"]))
    with pytest.raises(BenchmarkFormatError, match="several formats"):
        detect_format(both)
    assert read_benchmark(both, format="vpr-bench").positives[0].tolist() == [0]
    with pytest.raises(FileNotFoundError):
        detect_format(tmp_path / "nope")
    with pytest.raises(ValueError, match="unknown dataset format"):
        read_benchmark(both, format="kitti")
