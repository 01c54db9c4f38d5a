"""Batched descriptor extraction, generic over the model.

The model is any ``embed_fn(batch: float32 NCHW) -> (B, D)``: the torch reference
(:func:`torch_embed_fn`) and every torch-free runtime of the export stage plug in the
same way, and all of them receive arrays made by the one preprocessing function,
:func:`boq_edge.preprocess.preprocess_batch`.

Images are decoded and preprocessed by workers: ``torch.utils.data.DataLoader`` worker
processes when torch is importable, otherwise a thread pool (PIL releases the GIL while
decoding and resizing), so devices without torch still load in parallel. Both produce the
same bytes — they call the same function.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from boq_edge.evaluate.cache import DescriptorCache, entry_key
from boq_edge.preprocess import CorruptImageError, Preprocessing, load_image, preprocess_batch

EmbedFn = Callable[[np.ndarray], np.ndarray]
LOADERS = ("auto", "torch", "threads")


@dataclass
class Batch:
    """Preprocessed images of one batch; ``indices`` are positions in the input path list."""

    indices: np.ndarray
    images: np.ndarray
    failures: list[tuple[int, str]] = field(default_factory=list)  # (index, reason without the path)


@dataclass
class Extraction:
    """Descriptors for every input path; rows of skipped (unreadable) images are zero."""

    descriptors: np.ndarray
    ok: np.ndarray
    skipped: list[tuple[str, str]]  # (path, reason)
    seconds: float  # wall time of loading + preprocessing + embedding
    embed_seconds: float
    from_cache: bool = False
    cache_path: Path | None = None
    loader: str = ""

    @property
    def num_images(self) -> int:
        return int(self.ok.sum())

    @property
    def images_per_second(self) -> float:
        return self.num_images / self.seconds if self.seconds > 0 else float("nan")


def _load_batch(paths: Sequence[Path], start: int, spec: Preprocessing) -> Batch:
    """Decode + preprocess one batch; unreadable files are reported, not raised (workers)."""
    images, idx, failures = [], [], []
    for i, p in enumerate(paths):
        try:
            images.append(load_image(p, spec.exif_orientation))
            idx.append(start + i)
        except CorruptImageError as e:
            prefix = f"cannot read image {e.path}: "
            msg = str(e)
            failures.append((start + i, msg[len(prefix) :] if msg.startswith(prefix) else msg))
        except OSError as e:  # missing file, permission denied
            failures.append((start + i, e.strerror or str(e)))
    arr = preprocess_batch(images, spec)
    return Batch(np.asarray(idx, dtype=np.int64), arr, failures)


class _BatchDataset:
    """Item ``i`` is batch ``i``: one worker task per batch keeps inter-process traffic low."""

    def __init__(self, paths: Sequence[Path], spec: Preprocessing, batch_size: int) -> None:
        self.paths, self.spec, self.batch_size = list(paths), spec, batch_size

    def __len__(self) -> int:
        return (len(self.paths) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, i: int) -> Batch:
        s = i * self.batch_size
        return _load_batch(self.paths[s : s + self.batch_size], s, self.spec)


def _identity(x: Any) -> Any:
    return x


def _torch_available() -> bool:
    try:
        import torch.utils.data  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_loader(loader: str, num_workers: int) -> str:
    if loader not in LOADERS:
        raise ValueError(f"unknown loader {loader!r}; choose from {', '.join(LOADERS)}")
    if loader == "auto":
        return "torch" if num_workers > 0 and _torch_available() else "threads"
    if loader == "torch" and not _torch_available():
        raise ImportError("loader='torch' needs torch; install boq-edge[torch] or use loader='threads'")
    return loader


def iter_batches(
    paths: Sequence[str | os.PathLike],
    preprocessing: Preprocessing,
    batch_size: int = 32,
    num_workers: int = 2,
    loader: str = "auto",
) -> Iterator[Batch]:
    """Yield preprocessed batches in order, loaded by ``num_workers`` workers (0: inline)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    ds = _BatchDataset([Path(p) for p in paths], preprocessing, batch_size)
    kind = resolve_loader(loader, num_workers)
    if num_workers == 0:
        yield from (ds[i] for i in range(len(ds)))
    elif kind == "torch":
        from torch.utils.data import DataLoader

        dl: Any = DataLoader(ds, batch_size=None, shuffle=False, num_workers=num_workers, collate_fn=_identity)  # type: ignore[arg-type]
        yield from dl
    else:
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            pending: deque[Future[Batch]] = deque()
            nxt = 0
            while nxt < len(ds) or pending:
                while nxt < len(ds) and len(pending) < 2 * num_workers:  # bounded prefetch
                    pending.append(pool.submit(ds.__getitem__, nxt))
                    nxt += 1
                yield pending.popleft().result()


def _check_embedding(out: Any, n: int) -> np.ndarray:
    arr = np.asarray(out)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"embed_fn returned shape {arr.shape} for a batch of {n} images; expected ({n}, D)")
    return arr.astype(np.float32, copy=False)


def extract_descriptors(
    embed_fn: EmbedFn,
    paths: Sequence[str | os.PathLike],
    preprocessing: Preprocessing,
    batch_size: int = 32,
    num_workers: int = 2,
    cache_dir: str | os.PathLike | None = None,
    cache_key: str | None = None,
    skip_corrupt: bool = False,
    progress: bool = True,
    desc: str = "extract",
    loader: str = "auto",
) -> Extraction:
    """Descriptors for ``paths`` in order, from the cache when ``cache_dir`` and ``cache_key`` are given.

    An unreadable image raises :class:`CorruptImageError` naming the file, unless
    ``skip_corrupt``: then its row is zero, ``ok`` is False there and it is listed in
    ``skipped``. ``cache_key`` must identify the model (its hash) and the data
    (benchmark fingerprint + role); the preprocessing and image names are added here.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no images to extract")
    cache = DescriptorCache(cache_dir) if cache_dir is not None and cache_key else None
    key = entry_key(cache_key, paths, preprocessing) if cache is not None and cache_key else ""
    if cache is not None:
        hit = cache.load(key, len(paths))
        if hit is not None:
            desc_arr, meta = hit
            skipped = [(str(paths[i]), r) for i, r in meta.get("skipped", [])]
            if skipped and not skip_corrupt:
                raise CorruptImageError(skipped[0][0], f"{skipped[0][1]} (cached; pass --skip-corrupt to skip)")
            ok = np.ones(len(paths), dtype=bool)
            ok[[i for i, _ in meta.get("skipped", [])]] = False
            return Extraction(
                desc_arr, ok, skipped, float(meta.get("seconds", 0.0)), float(meta.get("embed_seconds", 0.0)),
                from_cache=True, cache_path=cache.paths(key)[0], loader=str(meta.get("loader", "")),
            )

    kind = resolve_loader(loader, num_workers)
    rows: list[np.ndarray] = []
    row_idx: list[np.ndarray] = []
    failures: list[tuple[int, str]] = []
    embed_s = 0.0
    t0 = time.perf_counter()
    with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, file=sys.stderr, leave=False) as bar:
        for batch in iter_batches(paths, preprocessing, batch_size, num_workers, kind):
            if batch.failures and not skip_corrupt:
                i, reason = batch.failures[0]
                raise CorruptImageError(paths[i], f"{reason} (pass --skip-corrupt to skip such files)")
            failures.extend(batch.failures)
            if len(batch.indices):
                te = time.perf_counter()
                rows.append(_check_embedding(embed_fn(batch.images), len(batch.indices)))
                embed_s += time.perf_counter() - te
                row_idx.append(batch.indices)
            bar.update(len(batch.indices) + len(batch.failures))
    seconds = time.perf_counter() - t0
    if not rows:
        first = f"{paths[failures[0][0]]}: {failures[0][1]}"
        raise ValueError(f"none of the {len(paths)} images could be read (first: {first})")
    dims = {r.shape[1] for r in rows}
    if len(dims) != 1:
        raise ValueError(f"embed_fn returned descriptors of varying dimension {sorted(dims)}")
    out = np.zeros((len(paths), dims.pop()), dtype=np.float32)
    ok = np.zeros(len(paths), dtype=bool)
    for r, ix in zip(rows, row_idx, strict=True):
        out[ix] = r
        ok[ix] = True
    failures.sort()
    result = Extraction(out, ok, [(str(paths[i]), r) for i, r in failures], seconds, embed_s, loader=kind)
    if cache is not None:
        meta = {
            "cache_key": cache_key, "num_images": len(paths), "dim": int(out.shape[1]),
            "preprocessing": preprocessing.to_dict(), "skipped": failures, "seconds": seconds,
            "embed_seconds": embed_s, "loader": kind, "batch_size": batch_size, "num_workers": num_workers,
        }
        result.cache_path = cache.save(key, out, meta)
    return result


def torch_embed_fn(model: Any, device: str = "cpu") -> EmbedFn:
    """Wrap a torch ``nn.Module`` (NCHW tensor → (B, D)) as an ``embed_fn`` on numpy arrays."""
    import torch

    model.eval().to(device)

    def embed(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.from_numpy(batch).to(device))
        return out.float().cpu().numpy()

    return embed


def state_dict_sha256(model: Any) -> str:
    """Digest of a torch model's weights (names, dtypes, shapes, bytes): a cache key for models
    that have no checkpoint file, e.g. a preset built on the fly."""
    import torch

    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}\n".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
