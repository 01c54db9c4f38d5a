"""Training sets: GSV-Cities layout, aligned traversals (frame range, placeholder frames), item determinism."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from boq_edge.data.benchmark import BenchmarkFormatError
from boq_edge.preprocess import Preprocessing
from boq_edge.train.augment import RandAugment
from boq_edge.train.datasets import (
    PlaceImages,
    collate_places,
    gsv_image_name,
    read_aligned_places,
    read_gsv_cities,
    read_training_set,
)


def _img(path: Path, seed: int, size: tuple[int, int] = (24, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def _gsv(root: Path, city: str, counts: dict[int, int]) -> None:
    rows = []
    for pid, n in counts.items():
        for j in range(n):
            rows.append({"place_id": pid, "year": 2015 + j, "month": 3, "northdeg": 90, "city_id": city,
                         "lat": 51.5, "lon": -0.125, "panoid": f"pano{pid}x{j}"})
    (root / "Dataframes").mkdir(parents=True, exist_ok=True)
    with open(root / "Dataframes" / f"{city}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        _img(root / "Images" / city / gsv_image_name({k: str(v) for k, v in r.items()}), hash(r["panoid"]) % 1000)


def test_gsv_image_name_follows_the_official_naming() -> None:
    row = {"place_id": "105", "year": "2017", "month": "6", "northdeg": "45", "city_id": "London",
           "lat": "51.50", "lon": "-0.1", "panoid": "abc_DEF"}
    assert gsv_image_name(row) == "London_0000105_2017_06_045_51.5_-0.1_abc_DEF.jpg"


def test_gsv_cities_groups_rows_into_places(tmp_path: Path) -> None:
    _gsv(tmp_path, "London", {0: 4, 1: 5, 2: 3})
    _gsv(tmp_path, "Boston", {0: 4})
    ps = read_training_set(tmp_path)  # auto-detects gsv-cities
    assert ps.format == "gsv-cities"
    assert ps.place_names == ["Boston/0", "London/0", "London/1"]  # London/2 has only 3 images
    assert [len(p) for p in ps.places] == [4, 4, 5]
    assert ps.skipped == {"places_with_too_few_images": 1}
    assert all(p.is_file() for p in ps.all_paths())
    assert read_gsv_cities(tmp_path, cities=["Boston"]).num_places == 1
    with pytest.raises(BenchmarkFormatError, match="Paris"):
        read_gsv_cities(tmp_path, cities=["Paris"])


def test_aligned_places_frame_range_and_placeholders(tmp_path: Path) -> None:
    for i in range(1, 11):
        for t, off in (("summer", 0), ("winter", 100)):
            _img(tmp_path / t / f"images-{i * 10:05d}.png", i + off)
    _img(tmp_path / "summer" / "images-00020.png", 999)  # two identical placeholders in summer
    _img(tmp_path / "summer" / "images-00030.png", 999)
    ps = read_aligned_places(tmp_path, frames=":80")
    assert ps.params["traversals"] == ["summer", "winter"]
    assert ps.place_names == ["images-00010.png", "images-00040.png", "images-00050.png", "images-00060.png",
                              "images-00070.png"]
    assert all(len(p) == 2 and p[0].name == p[1].name for p in ps.places)
    assert ps.skipped == {"duplicate_images": 2, "places_with_too_few_images": 2}
    kept = read_aligned_places(tmp_path, frames=":80", skip_duplicates=False)
    assert kept.num_places == 7
    pairs = read_aligned_places(tmp_path, frames="40:", frames_per_place=2)
    assert [len(p) for p in pairs.places] == [4, 4, 4]  # 2 frames × 2 traversals


def test_nordland_training_split_skips_blank_frames(nordland_dir: Path) -> None:
    ps = read_aligned_places(nordland_dir, frames=":25000")
    frames = [int(p.stem.split("-")[1]) for p in ps.all_paths()]
    assert max(frames) < 25000
    assert ps.num_places == 2482  # 2499 frames < 25000, minus 17 placeholder (blank/duplicate) frames
    blank = nordland_dir / "summer" / "images-00070.png"
    assert blank.stat().st_size == 137 and blank not in set(ps.all_paths())


def test_place_images_are_a_function_of_the_item_seed(tmp_path: Path) -> None:
    for i in range(4):
        for t in ("a", "b", "c"):
            _img(tmp_path / t / f"f{i}.png", hash((i, t)) % 1000)
    ps = read_aligned_places(tmp_path, traversals=["a", "b", "c"])
    ds = PlaceImages(ps, Preprocessing(16, 32), images_per_place=2, augment=RandAugment(3, 9))
    x1, p1 = ds[(1, (0, 0, 0, 1))]
    x2, _ = ds[(1, (0, 0, 0, 1))]
    x3, _ = ds[(1, (0, 0, 1, 1))]
    assert p1 == 1 and x1.shape == (2, 3, 16, 32) and x1.dtype == np.float32
    assert np.array_equal(x1, x2) and not np.array_equal(x1, x3)
    images, labels = collate_places([ds[(0, (0, 0, 0, 0))], ds[(3, (0, 0, 0, 3))]])
    assert tuple(images.shape) == (4, 3, 16, 32) and labels.tolist() == [0, 0, 3, 3]
    with pytest.raises(ValueError, match="fewer than images_per_place"):
        PlaceImages(ps, Preprocessing(16, 32), images_per_place=4)
