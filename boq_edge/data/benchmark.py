"""The one benchmark interface every reader returns: queries, database, positives.

Evaluation, training validation and the INT8 recall gates all consume a
:class:`Benchmark`, never a reader's private structures, so a new format is one new
reader module and nothing downstream changes. Positives are database *indices* per
query, the same convention VPR-methods-evaluation and OpenVPRLab use.

No torch here: devices read benchmarks too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Extensions VPR datasets ship in; matched case-insensitively.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


class BenchmarkFormatError(ValueError):
    """A dataset directory that does not match the format it is read as; the message says why."""


@dataclass(frozen=True, eq=False)  # eq on lists of arrays is ambiguous; compare fingerprints instead
class Benchmark:
    """Query images, database images and, per query, the database indices that are positives.

    ``params`` records the reader options that shaped the ground truth (distance threshold,
    frame tolerance, frame range...) so that they are part of :meth:`fingerprint` and of
    every report.
    """

    name: str
    format: str
    root: Path
    query_paths: list[Path]
    db_paths: list[Path]
    positives: list[np.ndarray]
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.query_paths:
            raise BenchmarkFormatError(f"{self.name}: no query images")
        if not self.db_paths:
            raise BenchmarkFormatError(f"{self.name}: no database images")
        if len(self.positives) != len(self.query_paths):
            raise BenchmarkFormatError(
                f"{self.name}: ground truth has {len(self.positives)} rows for {len(self.query_paths)} queries"
            )
        n_db = len(self.db_paths)
        clean: list[np.ndarray] = []
        for q, pos in enumerate(self.positives):
            arr = np.asarray(pos).reshape(-1)
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                if not np.all(np.equal(np.mod(arr, 1), 0)):
                    raise BenchmarkFormatError(f"{self.name}: positives of query {q} are not integer indices")
            arr = np.unique(arr.astype(np.int64))
            if arr.size and (arr[0] < 0 or arr[-1] >= n_db):
                raise BenchmarkFormatError(
                    f"{self.name}: query {q} has positive index {int(arr[0] if arr[0] < 0 else arr[-1])} "
                    f"outside the database (size {n_db})"
                )
            clean.append(arr)
        # Frozen dataclass: normalise in place once, so every consumer sees sorted int64 arrays.
        object.__setattr__(self, "positives", clean)
        object.__setattr__(self, "query_paths", [Path(p) for p in self.query_paths])
        object.__setattr__(self, "db_paths", [Path(p) for p in self.db_paths])
        object.__setattr__(self, "root", Path(self.root))

    @property
    def num_queries(self) -> int:
        return len(self.query_paths)

    @property
    def num_db(self) -> int:
        return len(self.db_paths)

    def queries_without_positives(self) -> np.ndarray:
        """Indices of queries whose ground truth is empty (they can never be a hit)."""
        return np.array([q for q, p in enumerate(self.positives) if p.size == 0], dtype=np.int64)

    def fingerprint(self) -> str:
        """A stable hex digest of file lists (relative to ``root``), ground truth and params.

        Used as a cache key: it does not change when the dataset directory moves, and
        changes whenever which files are compared, or what counts as a match, changes.
        File *contents* are not hashed (that would read every image).
        """
        cached = self.__dict__.get("_fingerprint")
        if cached is not None:
            return cached
        h = hashlib.sha256()
        h.update(json.dumps({"format": self.format, "params": self.params}, sort_keys=True, default=str).encode())
        for tag, paths in (("q", self.query_paths), ("db", self.db_paths)):
            h.update(f"\n{tag}:{len(paths)}\n".encode())
            for p in paths:
                h.update(_relative_name(p, self.root).encode())
                h.update(b"\0")
        h.update(b"\ngt\n")
        for pos in self.positives:
            h.update(np.int64(pos.size).tobytes())
            h.update(pos.astype("<i8").tobytes())
        digest = h.hexdigest()
        object.__setattr__(self, "_fingerprint", digest)  # computed once: the lists are not to be mutated
        return digest

    def summary(self) -> dict[str, Any]:
        """Plain JSON-able description for reports."""
        return {
            "name": self.name,
            "format": self.format,
            "root": str(self.root),
            "num_queries": self.num_queries,
            "num_db": self.num_db,
            "num_queries_without_positives": int(self.queries_without_positives().size),
            "params": self.params,
            "fingerprint": self.fingerprint(),
        }


def _relative_name(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.as_posix()


def is_image_file(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` in a deterministic (natural) order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchmarkFormatError(f"{folder} is not a directory")
    it: Iterable[Path] = folder.rglob("*") if recursive else folder.iterdir()
    return sorted((p for p in it if is_image_file(p)), key=lambda p: natural_key(_relative_name(p, folder)))


_DIGITS = re.compile(r"(\d+)")


def natural_key(s: str) -> tuple:
    """Sort key that orders ``img2`` before ``img10`` (and is total: ties fall back to the text)."""
    parts = _DIGITS.split(s)
    return tuple((0, int(x), x) if x.isdigit() else (1, 0, x) for x in parts)


def as_positive_list(rows: Sequence[Any]) -> list[np.ndarray]:
    """Ground-truth rows of any int-like iterables → list of int64 arrays."""
    out = []
    for r in rows:
        out.append(np.asarray(r, dtype=np.int64).reshape(-1) if np.size(r) else np.zeros(0, dtype=np.int64))
    return out


def require_dir(path: str | os.PathLike, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} {p} does not exist")
    if not p.is_dir():
        raise BenchmarkFormatError(f"{what} {p} is not a directory")
    return p
