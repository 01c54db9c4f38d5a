"""Atomic writes and file hashes, shared by every stage (torch-free: devices use it too).

Every file boq-edge writes goes through a temp file in the destination folder, fsync and
rename, so a reader sees the old file or the new one, never half of one — a crashed export
or an interrupted training never leaves a truncated checkpoint or bundle behind.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    umask = os.umask(0)  # the only portable way to read it; read once
    os.umask(umask)
    return umask


def default_mode(directory: bool = False) -> int:
    """Permissions a plain open()/mkdir() would give under the umask (mkstemp/mkdtemp give 0600/0700)."""
    return (0o777 if directory else 0o666) & ~_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write ``path`` through ``write(fh)`` into a temp file beside it, then rename over it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        os.chmod(tmp, default_mode())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
