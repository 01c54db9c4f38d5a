"""Training sets as *places*: each place is a list of images that show it.

Training draws P places × K images per batch (GSV-Cities style), so every reader here
returns the same thing — a :class:`PlaceSet` — and the rest of training never sees a
format. Two formats:

- ``gsv-cities``: ``Dataframes/<city>.csv`` + ``Images/<city>/<name>.jpg``, the layout and
  file-naming of the GSV-Cities dataset (one CSV row per image, ``place_id`` groups them).
- ``aligned``: folders of images where the same file name is the same place (Nordland
  summer/winter). Every frame is a place; its images are that frame in every traversal.
  A frame range keeps training off the evaluation frames.

:class:`PlaceImages` turns (place, seed) items into augmented, preprocessed arrays with
the project's one preprocessing (:mod:`boq_edge.preprocess`); it is picklable so
DataLoader workers can use it.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from boq_edge.data.aligned import aligned_groups, frame_number, image_subfolders, parse_frame_range
from boq_edge.data.benchmark import BenchmarkFormatError, natural_key, require_dir
from boq_edge.preprocess import Preprocessing, load_image, preprocess_batch

TRAIN_FORMATS = ("gsv-cities", "aligned")
# Below this many images the whole set is decoded once and kept in memory (uint8): tiny
# datasets such as nordland-64x32 are then bound by compute, not PNG decoding.
CACHE_AUTO_LIMIT = 50_000


@dataclass
class PlaceSet:
    """Places (each a list of image paths) plus what was read and what was left out, for provenance."""

    name: str
    format: str
    root: Path
    places: list[list[Path]]
    place_names: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def num_places(self) -> int:
        return len(self.places)

    @property
    def num_images(self) -> int:
        return sum(len(p) for p in self.places)

    def all_paths(self) -> list[Path]:
        return [p for place in self.places for p in place]

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "format": self.format, "root": str(self.root), "num_places": self.num_places,
                "num_images": self.num_images, "params": self.params, "skipped": self.skipped}


def detect_train_format(root: str | os.PathLike) -> str:
    root = require_dir(root, "training data")
    if (root / "Dataframes").is_dir() and (root / "Images").is_dir():
        return "gsv-cities"
    if aligned_groups(image_subfolders(root)):
        return "aligned"
    raise BenchmarkFormatError(
        f"{root}: not a training set; expected Dataframes/+Images/ (gsv-cities) or two or more folders of "
        "images with the same file names (aligned). Pass --format to choose.")


def read_training_set(root: str | os.PathLike, format: str = "auto", **options: Any) -> PlaceSet:
    """Read a training set in ``format`` (``auto`` detects); ``options`` go to that format's reader."""
    fmt = detect_train_format(root) if format == "auto" else format
    if fmt == "gsv-cities":
        return read_gsv_cities(root, **options)
    if fmt == "aligned":
        return read_aligned_places(root, **options)
    raise ValueError(f"unknown training format {format!r}; choose auto, {', '.join(TRAIN_FORMATS)}")


# ---------------------------------------------------------------- GSV-Cities


def gsv_image_name(row: dict[str, str]) -> str:
    """The GSV-Cities file name of one Dataframe row (the official loader's naming).

    ``city_placeid(7)_year(4)_month(2)_northdeg(3)_lat_lon_panoid.jpg``; lat/lon are written
    as Python floats, as pandas would print them.
    """
    pid = str(int(float(row["place_id"])) % 10**5).zfill(7)
    year = str(int(float(row["year"]))).zfill(4)
    month = str(int(float(row["month"]))).zfill(2)
    north = str(int(float(row["northdeg"]))).zfill(3)
    lat, lon = str(float(row["lat"])), str(float(row["lon"]))
    return f"{row['city_id']}_{pid}_{year}_{month}_{north}_{lat}_{lon}_{row['panoid']}.jpg"


_GSV_COLUMNS = ("place_id", "year", "month", "northdeg", "city_id", "lat", "lon", "panoid")


def read_gsv_cities(root: str | os.PathLike, *, cities: Sequence[str] | None = None,
                    min_images: int = 4, check_files: int = 8) -> PlaceSet:
    """GSV-Cities: places with at least ``min_images`` images, from the listed (default: all) cities.

    Only the first ``check_files`` image paths are checked to exist (the full dataset has
    ~560k files); a wrong layout fails here, a single missing file fails when it is loaded.
    """
    root = require_dir(root, "training data")
    frames_dir, images_dir = root / "Dataframes", root / "Images"
    if not frames_dir.is_dir() or not images_dir.is_dir():
        raise BenchmarkFormatError(f"{root}: GSV-Cities needs Dataframes/<city>.csv and Images/<city>/")
    available = sorted(p.stem for p in frames_dir.glob("*.csv"))
    chosen = list(cities) if cities else available
    missing = [c for c in chosen if c not in available]
    if missing:
        raise BenchmarkFormatError(f"{root}: no Dataframes/{missing[0]}.csv (cities available: {', '.join(available)})")
    if not chosen:
        raise BenchmarkFormatError(f"{root}/Dataframes has no <city>.csv files")
    groups: dict[tuple[str, str], list[Path]] = {}
    for city in chosen:
        with open(frames_dir / f"{city}.csv", newline="") as f:
            reader = csv.DictReader(f)
            absent = [c for c in _GSV_COLUMNS if c not in (reader.fieldnames or [])]
            if absent:
                raise BenchmarkFormatError(f"{frames_dir / city}.csv lacks column(s) {', '.join(absent)}")
            for row in reader:
                path = images_dir / row["city_id"] / gsv_image_name(row)
                groups.setdefault((city, str(int(float(row["place_id"])))), []).append(path)
    keys = sorted(groups, key=lambda k: (k[0], int(k[1])))
    kept = [k for k in keys if len(groups[k]) >= min_images]
    for path in [p for k in kept[:check_files] for p in groups[k][:1]]:
        if not path.is_file():
            raise BenchmarkFormatError(f"{path} is listed in Dataframes/ but missing: is {root} a GSV-Cities folder?")
    places = [sorted(groups[k]) for k in kept]
    return PlaceSet(
        name=f"{root.name}:gsv-cities", format="gsv-cities", root=root, places=places,
        place_names=[f"{c}/{p}" for c, p in kept],
        params={"cities": chosen, "min_images": min_images},
        skipped={"places_with_too_few_images": len(keys) - len(kept)},
    )


# ---------------------------------------------------------------- aligned traversals


def _pixel_digest(path: Path) -> str:
    im = load_image(path)
    return hashlib.sha256(np.asarray(im).tobytes() + str(im.size).encode()).hexdigest()


def read_aligned_places(root: str | os.PathLike, *, traversals: Sequence[str] | None = None,
                        frames: str | tuple[int | None, int | None] | None = None, frames_per_place: int = 1,
                        min_images: int = 2, skip_duplicates: bool = True) -> PlaceSet:
    """Aligned traversals: place = frame (or ``frames_per_place`` consecutive frames).

    ``skip_duplicates`` drops images whose pixels are identical to an image of another place
    in the same traversal: such a file is a placeholder (nordland's 137-byte blank summer
    frames), not an observation of its place, and would teach the model that distinct
    places look the same. Places left with fewer than ``min_images`` images are dropped.
    """
    root = require_dir(root, "training data")
    folders = image_subfolders(root)
    if traversals:
        missing = [t for t in traversals if t not in folders]
        if missing:
            raise BenchmarkFormatError(f"{root}/{missing[0]} is not a folder of images (found: {', '.join(folders)})")
        chosen = list(traversals)
    else:
        groups = aligned_groups(folders)
        if len(groups) != 1:
            raise BenchmarkFormatError(f"{root}: choose the traversals to train on (--traversals A,B); "
                                       f"image folders: {', '.join(folders) or 'none'}")
        chosen = groups[0]
    if len(chosen) < 2:
        raise BenchmarkFormatError(f"{root}: aligned training needs at least two traversals, got {chosen}")
    common = set.intersection(*(folders[t] for t in chosen))
    if any(folders[t] != common for t in chosen):
        raise BenchmarkFormatError(f"{root}: traversals {', '.join(chosen)} do not have the same file names")
    rng = parse_frame_range(frames) if isinstance(frames, str) or frames is None else tuple(frames)
    names = sorted(common, key=natural_key)
    if rng is not None:
        start, stop = rng
        names = [n for n in names
                 if (start is None or frame_number(n) >= start) and (stop is None or frame_number(n) < stop)]
    if not names:
        raise BenchmarkFormatError(f"{root}: no frames in the range {frames}")
    if frames_per_place < 1:
        raise ValueError(f"frames_per_place must be >= 1, got {frames_per_place}")

    dropped: set[Path] = set()
    if skip_duplicates:
        for t in chosen:
            by_digest: dict[str, list[Path]] = {}
            for n in names:
                by_digest.setdefault(_pixel_digest(root / t / n), []).append(root / t / n)
            for paths in by_digest.values():
                if len(paths) > 1:
                    dropped.update(paths)
    places: list[list[Path]] = []
    place_names: list[str] = []
    too_few = 0
    for i in range(0, len(names) - frames_per_place + 1, frames_per_place):
        group = names[i : i + frames_per_place]
        imgs = [root / t / n for n in group for t in chosen if root / t / n not in dropped]
        if len(imgs) >= min_images:
            places.append(imgs)
            place_names.append(group[0])
        else:
            too_few += 1
    frames_text = None if rng is None else ":".join("" if v is None else str(v) for v in rng)
    return PlaceSet(
        name=f"{root.name}:{'+'.join(chosen)}" + ("" if frames_text is None else f"[{frames_text}]"),
        format="aligned", root=root, places=places, place_names=place_names,
        params={"traversals": chosen, "frames": frames_text, "frames_per_place": frames_per_place,
                "min_images": min_images, "skip_duplicates": skip_duplicates},
        skipped={"duplicate_images": len(dropped), "places_with_too_few_images": too_few},
    )


# ---------------------------------------------------------------- items → arrays


class PlaceImages:
    """Map-style dataset: item ``(place, seed)`` → (K × 3 × H × W float32, place).

    The seed comes from the sampler and fixes both which K images are drawn and their
    augmentation, so a batch is the same whichever worker builds it and after a resume.
    Images are resized to the training size first, augmented as PIL images, then go
    through :func:`boq_edge.preprocess.preprocess_batch` like every other input.
    """

    def __init__(self, places: PlaceSet, spec: Preprocessing, images_per_place: int,
                 augment: Any = None, cache: bool | None = None) -> None:
        if images_per_place < 1:
            raise ValueError(f"images_per_place must be >= 1, got {images_per_place}")
        fewest = min(len(p) for p in places.places)
        if fewest < images_per_place:
            raise ValueError(f"{places.name}: some places have only {fewest} images, fewer than "
                             f"images_per_place={images_per_place}")
        self.places = places.places
        self.spec = spec
        self.k = images_per_place
        self.augment = augment
        if cache is None:
            cache = places.num_images <= CACHE_AUTO_LIMIT
        self._cache: dict[Path, np.ndarray] | None = None
        if cache:  # decoded once in the parent; forked workers share the pages
            self._cache = {p: np.asarray(load_image(p)) for p in places.all_paths()}

    def __len__(self) -> int:
        return len(self.places)

    def _load(self, path: Path) -> Image.Image:
        if self._cache is not None:
            return Image.fromarray(self._cache[path])
        return load_image(path)

    def __getitem__(self, item: tuple[int, Sequence[int]]) -> tuple[np.ndarray, int]:
        place, seed = item
        rng = np.random.default_rng(list(seed))
        paths = self.places[place]
        if len(paths) > self.k:
            paths = [paths[i] for i in sorted(rng.choice(len(paths), self.k, replace=False))]
        size = (self.spec.width, self.spec.height)
        images = []
        for p in paths:
            im = self._load(p)
            if im.size != size:
                im = im.resize(size, Image.Resampling[self.spec.interpolation.upper()])
            if self.augment is not None:
                im = self.augment(im, rng)
            images.append(im)
        return preprocess_batch(images, self.spec), place


def collate_places(batch: Sequence[tuple[np.ndarray, int]]) -> tuple[Any, Any]:
    """[(K×3×H×W, place)] → images (P·K × 3 × H × W) and labels (P·K,), as torch tensors."""
    import torch

    images = np.concatenate([b[0] for b in batch], axis=0)
    labels = np.concatenate([np.full(len(b[0]), b[1], dtype=np.int64) for b in batch])
    return torch.from_numpy(images), torch.from_numpy(labels)
