"""VPR folder format (gmberton/VPR-datasets-downloader): ``database/`` + ``queries/``.

File names carry UTM coordinates, ``@UTM_east@UTM_north@…@.jpg``; a database image is a
positive of a query when it lies within ``positive_dist_threshold`` metres (25 m in the
literature; boundary included, like scikit-learn's ``radius_neighbors`` that
VPR-methods-evaluation uses). An optional ``<folder>_images_paths.txt`` next to a folder
lists its files (relative to that folder) so huge folders need not be walked.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from boq_edge.data.benchmark import IMAGE_EXTENSIONS, Benchmark, BenchmarkFormatError, require_dir

FORMAT = "vpr-folder"


def read_images_paths(folder: Path) -> list[Path]:
    """Images of one side, from ``<folder>_images_paths.txt`` when present, else a sorted walk.

    Sorted by path text, like ``sorted(glob(...))`` in VPR-methods-evaluation, so database
    indices agree with descriptors saved by that tool.
    """
    listing = folder.parent / f"{folder.name}_images_paths.txt"
    if listing.is_file():
        names = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
        if not names:
            raise BenchmarkFormatError(f"{listing} lists no images")
        paths = [folder / n for n in names]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{listing} lists {len(missing)} file(s) that do not exist under {folder}, e.g. {missing[0]}"
            )
        return paths
    require_dir(folder, "image folder")
    paths = sorted(
        (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
        key=lambda p: p.as_posix(),
    )
    if not paths:
        raise BenchmarkFormatError(f"{folder} contains no images ({', '.join(IMAGE_EXTENSIONS)})")
    return paths


def parse_utm(path: Path) -> tuple[float, float]:
    """(east, north) from ``@east@north@…`` in the file name (not the directories)."""
    fields = path.name.split("@")
    try:
        return float(fields[1]), float(fields[2])
    except (IndexError, ValueError):
        raise BenchmarkFormatError(
            f"{path}: file name must look like @UTM_east@UTM_north@...@.jpg to carry coordinates"
        ) from None


def radius_positives(query_xy: np.ndarray, db_xy: np.ndarray, radius: float) -> list[np.ndarray]:
    """For each query, the sorted database indices within ``radius`` (inclusive), exact float64.

    Brute force in chunks so memory stays bounded (~32 MB per chunk) without a KD-tree
    dependency; tens of thousands of images take a second or two.
    """
    if radius < 0:
        raise ValueError(f"positive distance threshold must be >= 0, got {radius}")
    q = np.asarray(query_xy, dtype=np.float64)
    db = np.asarray(db_xy, dtype=np.float64)
    r2 = float(radius) ** 2
    chunk = max(1, 4_000_000 // max(1, len(db)))
    out: list[np.ndarray] = []
    for s in range(0, len(q), chunk):
        d2 = ((q[s : s + chunk, None, :] - db[None, :, :]) ** 2).sum(-1)
        out.extend(np.flatnonzero(row <= r2).astype(np.int64) for row in d2)
    return out


def read_vpr_folder(
    root: str | os.PathLike,
    *,
    positive_dist_threshold: float = 25.0,
    queries_folder: str = "queries",
    database_folder: str = "database",
    name: str | None = None,
) -> Benchmark:
    """Read a VPR-datasets-downloader style test set rooted at ``root``."""
    root = require_dir(root, "dataset")
    db_paths = read_images_paths(root / database_folder)
    q_paths = read_images_paths(root / queries_folder)
    db_xy = np.array([parse_utm(p) for p in db_paths], dtype=np.float64)
    q_xy = np.array([parse_utm(p) for p in q_paths], dtype=np.float64)
    positives = radius_positives(q_xy, db_xy, positive_dist_threshold)
    return Benchmark(
        name=name or root.name,
        format=FORMAT,
        root=root,
        query_paths=q_paths,
        db_paths=db_paths,
        positives=positives,
        params={
            "positive_dist_threshold": float(positive_dist_threshold),
            "queries_folder": queries_folder,
            "database_folder": database_folder,
        },
    )
