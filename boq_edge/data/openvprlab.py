"""OpenVPRLab validation sets: ``<name>_dbImages.npy``, ``<name>_qImages.npy``, ``<name>_gt_25m.npy``.

The two image arrays hold paths relative to the dataset directory; the ground truth is
an object array with, per query, the database indices within 25 m (precomputed by the
dataset's authors, so no threshold option here).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from boq_edge.data.benchmark import Benchmark, BenchmarkFormatError, require_dir
from boq_edge.data.safe_npy import load_npy

FORMAT = "openvprlab"
DB_SUFFIX = "_dbImages.npy"
Q_SUFFIX = "_qImages.npy"
GT_SUFFIX = "_gt_25m.npy"


def find_names(root: Path) -> list[str]:
    """Set names that have a ``<name>_dbImages.npy`` in ``root``."""
    return sorted(p.name[: -len(DB_SUFFIX)] for p in root.glob(f"*{DB_SUFFIX}") if p.is_file())


def _image_list(path: Path, root: Path) -> list[Path]:
    arr = load_npy(path)
    if arr.ndim != 1 or arr.size == 0:
        raise BenchmarkFormatError(f"{path}: expected a non-empty 1-D array of image paths, got shape {arr.shape}")
    paths = [root / str(x) for x in arr.tolist()]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{path} lists {len(missing)} image(s) missing under {root}, e.g. {missing[0]}")
    return paths


def read_openvprlab(root: str | os.PathLike, *, name: str | None = None) -> Benchmark:
    """Read one OpenVPRLab set from ``root``; ``name`` picks it when several live there."""
    root = require_dir(root, "dataset")
    names = find_names(root)
    if name is None:
        if len(names) != 1:
            found = ", ".join(names) if names else "none"
            raise BenchmarkFormatError(
                f"{root}: expected exactly one *{DB_SUFFIX}, found {found}; choose one with name=/--set-name"
            )
        name = names[0]
    files = {s: root / f"{name}{s}" for s in (DB_SUFFIX, Q_SUFFIX, GT_SUFFIX)}
    for f in files.values():
        if not f.is_file():
            need = ", ".join(p.name for p in files.values())
            raise BenchmarkFormatError(f"{root}: missing {f.name} (OpenVPRLab sets need {need})")
    db_paths = _image_list(files[DB_SUFFIX], root)
    q_paths = _image_list(files[Q_SUFFIX], root)
    gt = load_npy(files[GT_SUFFIX])
    if gt.ndim == 0 or len(gt) != len(q_paths):
        raise BenchmarkFormatError(
            f"{files[GT_SUFFIX]}: {0 if gt.ndim == 0 else len(gt)} ground-truth rows for {len(q_paths)} queries"
        )
    positives = []
    for q, row in enumerate(gt):
        try:
            arr = np.atleast_1d(np.asarray(row)).reshape(-1)
            positives.append(arr.astype(np.int64) if arr.size else np.zeros(0, np.int64))
        except (TypeError, ValueError):
            raise BenchmarkFormatError(f"{files[GT_SUFFIX]}: row {q} is not a list of database indices") from None
    return Benchmark(
        name=name,
        format=FORMAT,
        root=root,
        query_paths=q_paths,
        db_paths=db_paths,
        positives=positives,
        params={"set": name},
    )
