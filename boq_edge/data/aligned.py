"""Aligned traversals (Nordland): folders of images where the same file name is the same place.

Queries come from one folder and the database from another. Query ``i`` (in frame
order) has as positives the database images ``j`` with ``|i - j| <= tolerance``, where
``tolerance`` counts **files** — steps in the sorted list of common names — not the
frame numbers written in the names. For ``nordland-64x32`` (one file every 10th frame),
``tolerance=1`` is the usual "±1 frame" of the literature, i.e. ±10 original frames.

``frames`` keeps only files whose frame number (the last integer in the file stem,
``images-25010.png`` → 25010) lies in a half-open range ``[start, stop)``; the split
"frames ≥ 25000" is ``frames=(25000, None)`` or ``--frames 25000:`` on the command line.
Both sides are filtered the same way, so positives never cross the split.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from boq_edge.data.benchmark import Benchmark, BenchmarkFormatError, is_image_file, natural_key, require_dir

FORMAT = "aligned"
DEFAULT_QUERIES = "summer"
DEFAULT_DATABASE = "winter"

FrameRange = tuple[int | None, int | None]
_LAST_INT = re.compile(r"(\d+)(?!.*\d)")


def parse_frame_range(text: str | None) -> FrameRange | None:
    """``"25000:"`` → (25000, None); ``":25000"`` → (None, 25000); ``"100:200"``; None/""/":" → None."""
    if text is None or text.strip() in ("", ":"):
        return None
    parts = text.split(":")
    if len(parts) != 2:
        raise ValueError(f"frame range must be START:STOP (either may be empty), got {text!r}")
    try:
        start = int(parts[0]) if parts[0].strip() else None
        stop = int(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise ValueError(f"frame range must be START:STOP with integers, got {text!r}") from None
    if start is not None and stop is not None and stop <= start:
        raise ValueError(f"frame range {text!r} is empty (STOP must be greater than START)")
    return (start, stop)


def frame_number(name: str) -> int:
    """The last integer in a file stem: ``images-00070.png`` → 70."""
    m = _LAST_INT.search(Path(name).stem)
    if m is None:
        raise BenchmarkFormatError(f"{name}: no frame number in the file name (needed for a frame range)")
    return int(m.group(1))


def image_subfolders(root: Path) -> dict[str, set[str]]:
    """Immediate subfolders of ``root`` that contain images, with their image file names."""
    out: dict[str, set[str]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        names = {p.name for p in d.iterdir() if is_image_file(p)}
        if names:
            out[d.name] = names
    return out


def aligned_groups(folders: dict[str, set[str]]) -> list[list[str]]:
    """Groups of ≥2 folders whose file-name sets are identical."""
    by_names: dict[frozenset[str], list[str]] = {}
    for f, names in folders.items():
        by_names.setdefault(frozenset(names), []).append(f)
    return [sorted(g) for g in by_names.values() if len(g) >= 2]


def _choose_folders(
    root: Path, folders: dict[str, set[str]], queries: str | None, database: str | None
) -> tuple[str, str]:
    for given in (queries, database):
        if given is not None and given not in folders:
            found = ", ".join(sorted(folders)) or "none"
            raise BenchmarkFormatError(f"{root}/{given} is not a folder of images (image folders: {found})")
    if queries is None and database is None and {DEFAULT_QUERIES, DEFAULT_DATABASE} <= folders.keys():
        return DEFAULT_QUERIES, DEFAULT_DATABASE
    groups = aligned_groups(folders)
    if queries is None or database is None:
        candidates = [g for g in groups if (not queries or queries in g) and (not database or database in g)]
        if len(candidates) == 1 and len(candidates[0]) == 2:
            a, b = candidates[0]
            if queries is None and database is None:
                return a, b  # two folders, unknown names: alphabetical; recorded in params
            if queries is None:
                return (a if b == database else b), database  # type: ignore[return-value]
            return queries, (a if b == queries else b)
        raise BenchmarkFormatError(
            f"{root}: choose the query and database folders (queries=/database=, --queries/--database); "
            f"image folders: {', '.join(sorted(folders)) or 'none'}"
        )
    return queries, database


def read_aligned(
    root: str | os.PathLike,
    *,
    queries: str | None = None,
    database: str | None = None,
    tolerance: int = 1,
    frames: FrameRange | str | None = None,
    name: str | None = None,
) -> Benchmark:
    """Read two aligned traversals under ``root`` (defaults: ``summer`` queries, ``winter`` database)."""
    root = require_dir(root, "dataset")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise ValueError(f"tolerance is a non-negative number of files, got {tolerance!r}")
    if isinstance(frames, str) or frames is None:
        frame_range = parse_frame_range(frames)
    elif len(frames) == 2:
        frame_range = (frames[0], frames[1])
    else:
        raise ValueError(f"frames must be 'START:STOP' or a (start, stop) pair, got {frames!r}")
    folders = image_subfolders(root)
    q_name, db_name = _choose_folders(root, folders, queries, database)
    for f in (q_name, db_name):
        if f not in folders:
            found = ", ".join(sorted(folders)) or "none"
            raise BenchmarkFormatError(f"{root}/{f} is not a folder of images (found: {found})")
    if q_name == db_name:
        raise BenchmarkFormatError(f"queries and database are the same folder {q_name!r}")
    q_names, db_names = folders[q_name], folders[db_name]
    if q_names != db_names:
        only_q, only_db = sorted(q_names - db_names), sorted(db_names - q_names)
        example = f"{q_name}/{only_q[0]}" if only_q else f"{db_name}/{only_db[0]}"
        raise BenchmarkFormatError(
            f"{root}: {q_name}/ and {db_name}/ are not aligned: {len(only_q)} file(s) only in {q_name}/, "
            f"{len(only_db)} only in {db_name}/ (e.g. {example})"
        )
    names = sorted(q_names, key=natural_key)
    if frame_range is not None:
        start, stop = frame_range
        numbers = [frame_number(n) for n in names]
        names = [n for n, f in zip(names, numbers, strict=True)
                 if (start is None or f >= start) and (stop is None or f < stop)]
        if not names:
            raise BenchmarkFormatError(f"{root}: no files with frame numbers in [{start}, {stop})")
    n = len(names)
    idx = np.arange(n, dtype=np.int64)
    positives = [idx[max(0, i - tolerance) : min(n, i + tolerance + 1)] for i in range(n)]
    rng = None if frame_range is None else [frame_range[0], frame_range[1]]
    frames_text = None if rng is None else ":".join("" if v is None else str(v) for v in rng)
    return Benchmark(
        name=name or f"{root.name}:{q_name}->{db_name}" + ("" if frames_text is None else f"[{frames_text}]"),
        format=FORMAT,
        root=root,
        query_paths=[root / q_name / nm for nm in names],
        db_paths=[root / db_name / nm for nm in names],
        positives=positives,
        params={"queries": q_name, "database": db_name, "tolerance_files": int(tolerance), "frames": rng},
    )
