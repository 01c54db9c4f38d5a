"""VPR-Bench format: ``query/``, ``ref/`` and ``ground_truth_new.npy``.

The ground truth is an object array of rows ``[query_idx, [ref indices]]``. Indices refer
to images in numeric order of their file stems (``0.jpg, 1.jpg, …, 10.jpg``) — VPR-Bench
names images by index — and to natural order when stems are not all numbers. Queries
missing from the ground truth get no positives (reported downstream, never dropped).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from boq_edge.data.benchmark import (
    Benchmark,
    BenchmarkFormatError,
    is_image_file,
    natural_key,
    require_dir,
)
from boq_edge.data.safe_npy import load_npy

FORMAT = "vpr-bench"
GT_FILE = "ground_truth_new.npy"


def list_indexed_images(folder: Path) -> list[Path]:
    """Images directly in ``folder``, ordered by integer stem when all stems are integers."""
    require_dir(folder, "image folder")
    paths = [p for p in folder.iterdir() if is_image_file(p)]
    if not paths:
        raise BenchmarkFormatError(f"{folder} contains no images")
    if all(p.stem.isdigit() for p in paths):
        stems = [int(p.stem) for p in paths]
        if len(set(stems)) != len(stems):
            raise BenchmarkFormatError(f"{folder}: two images share the same numeric index")
        return [p for _, p in sorted(zip(stems, paths, strict=True))]
    return sorted(paths, key=lambda p: natural_key(p.name))


def parse_ground_truth(gt: np.ndarray, num_queries: int, num_db: int, source: Path) -> list[np.ndarray]:
    """Rows ``[query_idx, refs]`` → one sorted int64 array of ref indices per query."""
    positives: list[np.ndarray | None] = [None] * num_queries
    for r, row in enumerate(gt):
        try:
            q_raw, refs = row[0], row[1]
            q = int(q_raw)
            if q != q_raw:
                raise ValueError
            arr = np.atleast_1d(np.asarray(refs)).reshape(-1)
            ref_idx = arr.astype(np.int64) if arr.size else np.zeros(0, np.int64)
        except (TypeError, ValueError, IndexError):
            raise BenchmarkFormatError(f"{source}: row {r} is not [query_idx, [ref indices]]") from None
        if not 0 <= q < num_queries:
            raise BenchmarkFormatError(f"{source}: row {r} names query {q}, but there are {num_queries} queries")
        if positives[q] is not None:
            raise BenchmarkFormatError(f"{source}: query {q} appears in more than one row")
        if ref_idx.size and (ref_idx.min() < 0 or ref_idx.max() >= num_db):
            raise BenchmarkFormatError(
                f"{source}: row {r} has a ref index outside 0..{num_db - 1} (the ref/ folder has {num_db} images)"
            )
        positives[q] = np.unique(ref_idx)
    return [p if p is not None else np.zeros(0, np.int64) for p in positives]


def read_vpr_bench(root: str | os.PathLike, *, name: str | None = None) -> Benchmark:
    """Read a VPR-Bench dataset directory."""
    root = require_dir(root, "dataset")
    gt_path = root / GT_FILE
    if not gt_path.is_file():
        raise BenchmarkFormatError(f"{root} has no {GT_FILE} (VPR-Bench ground truth)")
    q_paths = list_indexed_images(root / "query")
    db_paths = list_indexed_images(root / "ref")
    gt = load_npy(gt_path)
    if gt.ndim == 0:
        raise BenchmarkFormatError(f"{gt_path}: expected rows [query_idx, [ref indices]], got a scalar")
    positives = parse_ground_truth(gt, len(q_paths), len(db_paths), gt_path)
    return Benchmark(
        name=name or root.name,
        format=FORMAT,
        root=root,
        query_paths=q_paths,
        db_paths=db_paths,
        positives=positives,
        params={},
    )
