"""``--format auto``: recognise a dataset directory by the markers each format requires.

Metadata files decide first (they say what the folder is); folder layouts only when there
are none. Two metadata formats in one directory is an error rather than a guess, because
reading a benchmark the wrong way gives plausible but wrong recalls.
"""

from __future__ import annotations

import os
from pathlib import Path

from boq_edge.data import aligned, openvprlab, vpr_bench, vpr_folder
from boq_edge.data.benchmark import BenchmarkFormatError, require_dir

FORMATS = (vpr_folder.FORMAT, vpr_bench.FORMAT, openvprlab.FORMAT, aligned.FORMAT)


def _matches(root: Path) -> list[str]:
    """Formats whose markers are present, most specific first.

    Ground-truth files (VPR-Bench, OpenVPRLab) are explicit metadata and win over folder
    layouts (an OpenVPRLab set usually also has ``database/`` + ``queries/`` folders of
    images). Folder layouts are only looked at when no metadata file is there.
    """
    found = []
    if (root / vpr_bench.GT_FILE).is_file() and (root / "query").is_dir() and (root / "ref").is_dir():
        found.append(vpr_bench.FORMAT)
    if openvprlab.find_names(root):
        found.append(openvprlab.FORMAT)
    if found:
        return found
    if (root / "database").is_dir() and (root / "queries").is_dir() or (
        (root / "database_images_paths.txt").is_file() and (root / "queries_images_paths.txt").is_file()
    ):
        return [vpr_folder.FORMAT]
    if aligned.aligned_groups(aligned.image_subfolders(root)):
        return [aligned.FORMAT]
    return []


def detect_format(path: str | os.PathLike) -> str:
    """Name of the one format ``path`` is in; a clear error when none or several fit."""
    root = require_dir(path, "dataset")
    found = _matches(root)
    if len(found) == 1:
        return found[0]
    if not found:
        raise BenchmarkFormatError(
            f"{root}: cannot tell the dataset format; expected one of: database/+queries/ (vpr-folder), "
            f"query/+ref/+{vpr_bench.GT_FILE} (vpr-bench), <name>{openvprlab.DB_SUFFIX} (openvprlab), "
            "or two folders of images with the same file names (aligned). Pass --format to choose."
        )
    raise BenchmarkFormatError(f"{root} looks like several formats ({', '.join(found)}); pass --format to choose")
