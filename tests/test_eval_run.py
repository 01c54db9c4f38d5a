"""evaluate_benchmark: end to end on a tiny aligned set, with skipped images handled openly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from boq_edge.data import read_benchmark
from boq_edge.evaluate import evaluate_benchmark
from boq_edge.preprocess import Preprocessing

SPEC = Preprocessing(height=12, width=16)


def _embed(batch: np.ndarray) -> np.ndarray:
    return batch.reshape(len(batch), -1)  # raw pixels: identical images → identical descriptors


@pytest.fixture()
def seq(tmp_path: Path, write_image) -> Path:
    """Six places; winter is an exact copy of summer, so a pixel 'model' retrieves perfectly."""
    for i in range(6):
        for side in ("summer", "winter"):
            write_image(tmp_path / "seq" / side / f"images-{(i + 1) * 10:05d}.png", seed=i)
    return tmp_path / "seq"


def test_perfect_retrieval_and_report(seq: Path, tmp_path: Path) -> None:
    b = read_benchmark(seq, tolerance=0)
    rep = evaluate_benchmark(_embed, b, SPEC, k_values=[1, 5, 10], num_workers=0, progress=False,
                             model_hash="pixels", cache_dir=tmp_path / "cache")
    assert rep.recall.recalls == {1: 100.0, 5: 100.0, 10: 100.0}
    assert rep.recall.k_clamped == {10: 6} and rep.predictions[:, 0].tolist() == list(range(6))
    d = json.loads(rep.write_json(tmp_path / "r.json").read_text())
    assert d["recall"]["recalls"]["1"] == 100.0 and d["benchmark"]["num_queries"] == 6
    assert d["benchmark"]["params"]["tolerance_files"] == 0 and d["model"]["hash"] == "pixels"
    assert d["extraction"]["queries"]["num_images"] == 6 and d["extraction"]["images_per_second"] > 0
    assert d["preprocessing"]["height"] == 12
    cached = evaluate_benchmark(_embed, b, SPEC, k_values=[1, 5, 10], num_workers=0, progress=False,
                                model_hash="pixels", cache_dir=tmp_path / "cache")
    assert cached.queries.from_cache and cached.database.from_cache
    assert cached.to_dict()["extraction"]["from_cache"] is True


def test_skipped_images_are_counted_not_hidden(seq: Path) -> None:
    (seq / "winter" / "images-00020.png").write_bytes(b"broken")  # database image 1
    (seq / "summer" / "images-00040.png").write_bytes(b"broken")  # query 3
    b = read_benchmark(seq, tolerance=0)
    with pytest.raises(ValueError, match="images-000[24]0.png"):
        evaluate_benchmark(_embed, b, SPEC, num_workers=0, progress=False)
    rep = evaluate_benchmark(_embed, b, SPEC, k_values=[1, 2], num_workers=0, progress=False, skip_corrupt=True)
    r = rep.recall
    assert r.num_queries == 5 and r.num_db == 5  # query 3 left out; database image 1 out of the index
    assert 1 not in rep.predictions  # a skipped database image is never retrieved
    # Query 1's only positive is the skipped database image: it is a miss, not dropped.
    assert r.recalls[1] == pytest.approx(80.0)
    d = rep.to_dict()
    assert [Path(s["path"]).name for s in d["skipped"]["queries"]] == ["images-00040.png"]
    assert [Path(s["path"]).name for s in d["skipped"]["database"]] == ["images-00020.png"]
    assert d["extraction"]["database"]["num_skipped"] == 1
