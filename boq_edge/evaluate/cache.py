"""On-disk descriptor cache, keyed by model hash + benchmark fingerprint + preprocessing + image contents.

Re-extracting a benchmark is the slow part of every evaluation, and the gates evaluate
the same model on the same data repeatedly. Entries are a ``.npy`` of descriptors and a
``.json`` of metadata, each written atomically (temp file in the same directory, then
``os.replace``) so an interrupted run never leaves a half-written entry that a later
run would trust. The JSON is written last and is what marks an entry complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from boq_edge.fileio import atomic_write, atomic_write_text, file_sha256
from boq_edge.preprocess import Preprocessing

CACHE_VERSION = 2  # 2: image contents are part of the key


def default_cache_dir() -> Path:
    """``$BOQ_EDGE_CACHE`` or ``~/.cache/boq-edge``, plus ``descriptors/``."""
    base = os.environ.get("BOQ_EDGE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "boq-edge"
    )
    return Path(base) / "descriptors"


def entry_key(cache_key: str, paths: Sequence[os.PathLike | str], preprocessing: Preprocessing) -> str:
    """Digest of the caller's key, the preprocessing, and each image's name and content (not its directory).

    Content (the file's sha256) is in the key so that an image changed under the same name
    is extracted again — a cache must never return the old Recall@1 for new pixels. Names
    are in it so that one caller key used with two different image lists cannot collide;
    directories are not, so a dataset that moves keeps its cache.
    """
    h = hashlib.sha256()
    head = {"v": CACHE_VERSION, "key": cache_key, "pre": preprocessing.to_dict()}
    h.update(json.dumps(head, sort_keys=True).encode())
    h.update(str(len(paths)).encode())
    for p in paths:
        try:
            content = file_sha256(p)
        except OSError:  # unreadable: extraction names the file; the key only has to differ
            content = "unreadable"
        h.update(b"\0" + Path(p).name.encode() + b"\0" + content.encode())
    return h.hexdigest()[:40]


class DescriptorCache:
    """One directory of ``<key>.npy`` + ``<key>.json`` entries."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.directory / f"{key}.npy", self.directory / f"{key}.json"

    def load(self, key: str, expected_rows: int) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The entry for ``key``, or None when absent or inconsistent (then it is re-made)."""
        npy, meta_path = self.paths(key)
        if not (npy.is_file() and meta_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            desc = np.load(npy, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if desc.ndim != 2 or desc.shape[0] != expected_rows or meta.get("version") != CACHE_VERSION:
            return None
        return desc, meta

    def save(self, key: str, descriptors: np.ndarray, meta: dict[str, Any]) -> Path:
        npy, meta_path = self.paths(key)
        atomic_write(npy, lambda fh: np.save(fh, np.ascontiguousarray(descriptors), allow_pickle=False))
        atomic_write_text(meta_path, json.dumps({**meta, "version": CACHE_VERSION}, indent=1, sort_keys=True))
        return npy
