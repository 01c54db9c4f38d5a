"""Calibration sets: a seeded sample of images, written down as a manifest (paths + sha256).

INT8 scales are only as honest as the images they were measured on, so the choice is
made explicit and reproducible: a calibration set is drawn from a dataset folder that
:func:`boq_edge.data.read_benchmark` reads (its queries and database pooled) or from a
plain folder of images, with a seed, and saved as JSON. The manifest carries no timestamp,
so the same data, options, seed and N give the same bytes and the same hash — the hash
that goes into every INT8 bundle.

Calibrating on the evaluation split would hide quantization error from the very number
that is supposed to expose it, so :func:`check_not_eval` refuses it: by path, by decoded
pixels (a re-encoded or renamed copy is the same image; see
:func:`boq_edge.preprocess.pixel_digest`), and, for aligned sequences such as Nordland, by
the frame-range rule (the calibration frames must not overlap the evaluation frames, even
where the sample happens to miss them). The manifest records each image's pixel digest,
so the check can be repeated where the images are not (``boq-edge validate`` does it for
every INT8 bundle), and whether a leak check was done at all.

Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from boq_edge.fileio import atomic_write_bytes, file_sha256

FORMAT = "boq-edge-calibration"
FORMAT_VERSION = 1
MIN_RECOMMENDED = 300
PLAIN_FOLDER = "images"  # format name for a folder of images with no ground truth


class CalibrationError(ValueError):
    """A calibration set that cannot be built, read or used; the message says why."""


class CalibrationOverlapError(CalibrationError):
    """The calibration images overlap the evaluation split."""


class FewCalibrationImagesWarning(UserWarning):
    """Fewer images than INT8 calibration needs to be trusted (< 300)."""


class RepeatedCalibrationImagesWarning(UserWarning):
    """Some calibration images have the same pixels as others (they add no information)."""


@dataclass(frozen=True)
class CalibrationSet:
    """Images chosen for calibration, where they came from, and how they were chosen."""

    root: Path
    paths: list[Path]  # absolute
    sha256: list[str]
    seed: int
    source: dict[str, Any] = field(default_factory=dict)  # format, options, pool size, fingerprint, leak check
    manifest_path: Path | None = None
    manifest_sha256: str | None = None
    pixels: list[str | None] | None = None  # decoded-pixel digests (None entry: a constant image)

    def __len__(self) -> int:
        return len(self.paths)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "root": str(self.root),
            "seed": self.seed,
            "num_images": len(self.paths),
            "source": self.source,
            "images": [{"path": _rel(p, self.root), "sha256": h, "pixels_sha256": px}
                       for p, h, px in zip(self.paths, self.sha256, self.pixel_digests(), strict=True)],
        }

    def pixel_digests(self) -> list[str | None]:
        """Decoded-pixel digests: recorded ones, else computed from the images (which must then exist)."""
        if self.pixels is None:
            from boq_edge.preprocess import pixel_digest

            object.__setattr__(self, "pixels", [pixel_digest(p) for p in self.paths])
        assert self.pixels is not None
        return self.pixels

    def to_json_bytes(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n").encode()

    def content_hash(self) -> str:
        """sha256 of the manifest bytes: what bundles record as the calibration hash."""
        return self.manifest_sha256 or hashlib.sha256(self.to_json_bytes()).hexdigest()

    def arrays(self, preprocessing: Any, limit: int | None = None) -> np.ndarray:
        """The images as one float32 NCHW array, through the shared preprocessing."""
        from boq_edge.preprocess import preprocess_batch

        paths = self.paths if limit is None else self.paths[:limit]
        return preprocess_batch(paths, preprocessing)


def _rel(p: Path, root: Path) -> str:
    try:
        return p.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return p.resolve().as_posix()


def _pool(data: Path, format: str, options: Mapping[str, Any]) -> tuple[list[Path], dict[str, Any]]:
    """Candidate images of a dataset folder and a description of how they were found."""
    from boq_edge.data.benchmark import list_images

    if format == PLAIN_FOLDER:
        if options:
            raise CalibrationError(f"options {sorted(options)} do not apply to a plain folder of images")
        paths = list_images(data)
        return paths, {"format": PLAIN_FOLDER, "options": {}}
    from boq_edge.data import read_benchmark

    bm = read_benchmark(data, format=format, **dict(options))
    seen: set[Path] = set()
    paths = []
    for p in [*bm.db_paths, *bm.query_paths]:
        if p not in seen:
            seen.add(p)
            paths.append(p)
    return paths, {"format": bm.format, "options": dict(options), "params": bm.params,
                   "benchmark": bm.name, "fingerprint": bm.fingerprint()}


def build_calibration_set(
    data: str | os.PathLike,
    n: int = 512,
    *,
    seed: int = 0,
    format: str = "auto",
    options: Mapping[str, Any] | None = None,
    exclude: Iterable[Any] = (),
) -> CalibrationSet:
    """Sample ``n`` images (seeded) from the dataset at ``data``.

    ``format``/``options`` are those of :func:`boq_edge.data.read_benchmark` (e.g.
    ``format="aligned", options={"frames": ":25000"}``), or ``format="images"`` for a plain
    folder. ``exclude`` takes evaluation :class:`~boq_edge.data.Benchmark` objects; the set is
    refused when it overlaps any of them (see :func:`check_not_eval`). Unreadable files are
    skipped (they would fail the calibration run later). Fewer than 300 images warns.
    """
    from boq_edge.preprocess import CorruptImageError, pixel_digest

    data = Path(data)
    if not data.is_dir():
        raise CalibrationError(f"calibration data {data} is not a directory")
    if n <= 0:
        raise CalibrationError(f"the number of calibration images must be positive, got {n}")
    options = dict(options or {})
    fmt = format
    if fmt == "auto":
        from boq_edge.data import BenchmarkFormatError, detect_format

        try:
            fmt = detect_format(data)
        except (BenchmarkFormatError, ValueError):
            fmt = PLAIN_FOLDER  # a folder of images with no ground truth is fine for calibration
    pool, source = _pool(data, fmt, options)
    if not pool:
        raise CalibrationError(f"no images found under {data}")
    source["pool_size"] = len(pool)
    source["data"] = str(data.resolve())
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool))
    chosen: dict[Path, str | None] = {}
    skipped = 0
    for i in order:
        if len(chosen) == n:
            break
        try:
            chosen[pool[int(i)]] = pixel_digest(pool[int(i)])  # decoding also proves the file readable
        except (CorruptImageError, OSError):
            skipped += 1
    if skipped:
        source["unreadable_skipped"] = skipped
    pos = {p: k for k, p in enumerate(pool)}
    order_kept = sorted(chosen, key=lambda p: pos[p])  # pool order: stable, readable manifests
    digests = [chosen[p] for p in order_kept]
    counts = Counter(d for d in digests if d is not None)
    source["repeated_content"] = sum(c - 1 for c in counts.values())
    if source["repeated_content"]:
        warnings.warn(f"{source['repeated_content']} calibration images repeat the pixels of another one",
                      RepeatedCalibrationImagesWarning, stacklevel=2)
    if len(order_kept) < n:
        warnings.warn(f"only {len(order_kept)} readable images under {data} (asked for {n})",
                      FewCalibrationImagesWarning, stacklevel=2)
    if len(order_kept) < MIN_RECOMMENDED:
        warnings.warn(f"{len(order_kept)} calibration images is fewer than {MIN_RECOMMENDED}; INT8 scales measured "
                      f"on so few images may not hold on new data", FewCalibrationImagesWarning, stacklevel=2)
    excluded = list(exclude)
    source["leak_check"] = [{"benchmark": bm.name, "fingerprint": bm.fingerprint()} for bm in excluded] or None
    calib = CalibrationSet(root=data.resolve(), paths=[p.resolve() for p in order_kept],
                           sha256=[file_sha256(p) for p in order_kept], seed=seed, source=source, pixels=digests)
    for bm in excluded:
        check_not_eval(calib, bm)
    return calib


def calibration_set_from_paths(paths: Iterable[str | os.PathLike], *, root: str | os.PathLike | None = None,
                               source: Mapping[str, Any] | None = None) -> CalibrationSet:
    """A calibration set from an explicit list of images (benchmarks, tests, Python users)."""
    ps = [Path(p).resolve() for p in paths]
    if not ps:
        raise CalibrationError("no calibration images given")
    missing = [p for p in ps if not p.is_file()]
    if missing:
        raise CalibrationError(f"calibration image {missing[0]} does not exist")
    base = Path(root).resolve() if root is not None else Path(os.path.commonpath([str(p.parent) for p in ps]))
    src = {"format": "list", "options": {}, "pool_size": len(ps), **dict(source or {})}
    return CalibrationSet(base, ps, [file_sha256(p) for p in ps], seed=-1, source={"leak_check": None, **src})


def save_calibration_set(calib: CalibrationSet, path: str | os.PathLike) -> CalibrationSet:
    """Write the manifest atomically; returns the set with its path and hash filled in."""
    data = calib.to_json_bytes()
    atomic_write_bytes(path, data)
    return CalibrationSet(calib.root, calib.paths, calib.sha256, calib.seed, calib.source,
                          Path(path), hashlib.sha256(data).hexdigest(), calib.pixels)


def load_calibration_set(path: str | os.PathLike, *, root: str | os.PathLike | None = None,
                         verify: bool = True) -> CalibrationSet:
    """Read a manifest; with ``verify`` every image must still have its recorded sha256.

    ``root`` relocates a manifest written on another machine (relative paths are resolved
    against it instead of the recorded root).
    """
    p = Path(path)
    if not p.is_file():
        raise CalibrationError(f"{p}: no such calibration manifest (make one with `boq-edge calibrate`)")
    raw = p.read_bytes()
    try:
        d = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise CalibrationError(f"{p} is not valid JSON: {e}") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise CalibrationError(f"{p} is not a boq-edge calibration manifest")
    if not isinstance(d.get("source", {}), dict) or not isinstance(d.get("seed", 0), int):
        raise CalibrationError(f"{p} has a malformed source or seed field")
    if d.get("format_version") != FORMAT_VERSION:
        raise CalibrationError(f"{p} has manifest version {d.get('format_version')}, this boq-edge reads "
                               f"{FORMAT_VERSION}")
    if root is None and not isinstance(d.get("root"), str):
        raise CalibrationError(f"{p} has no root folder for its image paths; pass root= (the folder the images "
                               f"are under)")
    base = Path(root) if root is not None else Path(d["root"])
    images = d.get("images")
    if not isinstance(images, list) or not images:
        raise CalibrationError(f"{p} lists no images (an 'images' list of {{path, sha256}} entries)")
    paths, hashes, pixels = [], [], []
    for k, item in enumerate(images):
        if not (isinstance(item, dict) and isinstance(item.get("path"), str) and isinstance(item.get("sha256"), str)):
            raise CalibrationError(f"{p}: image entry {k} is not a {{path, sha256}} record: {str(item)[:80]}")
        ip = Path(item["path"])
        paths.append(ip if ip.is_absolute() else (base / ip))
        hashes.append(item["sha256"])
        px = item.get("pixels_sha256", "?")
        pixels.append(px if px is None or isinstance(px, str) else "?")
    if verify:
        for ip, h in zip(paths, hashes, strict=True):
            try:
                present = ip.is_file() and file_sha256(ip) == h
            except OSError as e:  # e.g. a name too long, a permission problem
                raise CalibrationError(f"calibration image {str(ip)[:200]} (from {p}) cannot be read: "
                                       f"{e.strerror or e}") from None
            if present:
                continue
            if not ip.is_file():
                raise CalibrationError(f"calibration image {ip} (from {p}) is missing; pass root= / --calib-root "
                                       f"if the data moved")
            if file_sha256(ip) != h:
                raise CalibrationError(f"calibration image {ip} changed since {p} was written (sha256 mismatch)")
    recorded = None if "?" in pixels else pixels  # manifests from before pixel digests: computed when needed
    return CalibrationSet(base, paths, hashes, int(d.get("seed", 0)), dict(d.get("source", {})), p,
                          hashlib.sha256(raw).hexdigest(), recorded)


def _ranges_overlap(a: list[int | None] | None, b: list[int | None] | None) -> bool:
    """Half-open frame ranges [start, stop); None means unbounded (or no range at all)."""
    a0, a1 = (a or [None, None])
    b0, b1 = (b or [None, None])
    lo = max(x for x in (a0, b0, -(10**18)) if x is not None)
    hi = min(x for x in (a1, b1, 10**18) if x is not None)
    return lo < hi


def _pixel_set(benchmark: Any, paths: list[Path]) -> set[str]:
    """Pixel digests of a benchmark's images, decoded once per benchmark object (several bundles share it)."""
    cached = getattr(benchmark, "__dict__", {}).get("_pixel_digests")
    if cached is None:
        from boq_edge.preprocess import pixel_digest

        cached = {d for d in (pixel_digest(p) for p in paths) if d is not None}
        if hasattr(benchmark, "__dict__"):
            object.__setattr__(benchmark, "_pixel_digests", cached)
    return cached


def check_not_eval(calib: CalibrationSet, benchmark: Any, *, check_content: bool = True) -> None:
    """Raise :class:`CalibrationOverlapError` when ``calib`` overlaps ``benchmark``'s images.

    Three rules: (1) both come from the same aligned-sequence folder and their frame ranges
    overlap; (2) a calibration path is an evaluation path; (3) a calibration image has the same
    decoded pixels as an evaluation image, whatever its file name or encoding — constant
    images (blank frames) identify no place and are not counted.
    """
    evals = [Path(p).resolve() for p in [*benchmark.query_paths, *benchmark.db_paths]]
    eval_set = set(evals)
    hits = [p for p in calib.paths if p.resolve() in eval_set]
    src = calib.source
    if benchmark.format == "aligned" and src.get("format") == "aligned":
        same_root = Path(src.get("data", "")).resolve() == Path(benchmark.root).resolve()
        if same_root:
            c_rng = (src.get("params") or {}).get("frames")
            e_rng = benchmark.params.get("frames")
            if _ranges_overlap(c_rng, e_rng):
                show = ":".join("" if v is None else str(v) for v in (c_rng or [None, None]))
                eshow = ":".join("" if v is None else str(v) for v in (e_rng or [None, None]))
                raise CalibrationOverlapError(
                    f"calibration frames [{show or ':'}] overlap the evaluation frames [{eshow}] of "
                    f"{benchmark.root} ({len(hits)} of the {len(calib)} calibration images are evaluation images); "
                    f"draw calibration from disjoint frames (e.g. frames=:25000)")
    if hits:
        raise CalibrationOverlapError(
            f"{len(hits)} calibration image(s) belong to the evaluation split {benchmark.name} "
            f"(e.g. {hits[0]}); calibrate on data the evaluation does not use")
    if check_content:
        eval_pixels = _pixel_set(benchmark, evals)
        leaked = [p for p, d in zip(calib.paths, calib.pixel_digests(), strict=True) if d in eval_pixels]
        if leaked:
            raise CalibrationOverlapError(
                f"{len(leaked)} calibration image(s) have the same decoded pixels as evaluation images of "
                f"{benchmark.name} (e.g. {leaked[0]}); calibrate on data the evaluation does not use")


__all__ = [
    "FORMAT", "MIN_RECOMMENDED", "PLAIN_FOLDER", "CalibrationError", "CalibrationOverlapError", "CalibrationSet",
    "FewCalibrationImagesWarning", "RepeatedCalibrationImagesWarning", "build_calibration_set",
    "calibration_set_from_paths", "check_not_eval", "load_calibration_set", "save_calibration_set",
]
