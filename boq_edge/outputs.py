"""Output paths: checked before the work starts, locked while written, replaced atomically.

Every command that writes names its output, and touches nothing else:

- :func:`check_output` refuses, before any work, the current folder (or one above it), a
  path that is or contains an input, a parent that cannot be written, and an existing path
  that is not what the command itself writes (``--force`` replaces a boq-edge bundle, never a
  run folder with a checkpoint in it);
- :func:`output_lock` makes a second writer of the same path fail at once, naming the first;
- :func:`staging` builds a folder beside the output and :func:`publish` swaps it into place
  with one ``renameat2(RENAME_EXCHANGE)`` (or ``RENAME_NOREPLACE`` for a new path), so a
  crash at any moment leaves the old or the new folder at the path, never neither; the
  staging folder also holds the run's temporary files, and one left by a killed process is
  removed (or, if it holds the only copy of an old bundle, put back) by the next run;
- :func:`terminate_cleanly` turns SIGTERM into an exception, so cleanup runs on it as on Ctrl-C.

Standard library only (devices write bundles too: ``build-engine``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

OWNER_FILE = "owner.pid"
_AT_FDCWD = -100
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2


class OutputError(ValueError):
    """An output path that cannot or must not be written; the message says why and what to do."""


def _describe(path: Path) -> str:
    if not path.is_dir():
        return "a file"
    names = sorted(p.name for p in path.iterdir())
    shown = ", ".join(names[:4]) + (f", … ({len(names)} entries)" if len(names) > 4 else "")
    return shown or "nothing"


def _writable_parent(path: Path) -> Path:
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: {parent} is not a writable folder")
    return parent


def check_output(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (), overwrite: bool = False,
                 replaceable: Callable[[Path], bool] | None = None, what: str = "output") -> Path:
    """Refuse an output path that would lose something, before any work; returns it absolute.

    ``replaceable(path)`` says whether an existing path is one this command wrote (and may
    replace with ``overwrite``); without it an existing file may be overwritten (an output
    file such as ``desc.npy``) but an existing folder may not.
    """
    out = Path(path).absolute()
    real = out.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise OutputError(f"{out} is the current folder (or contains it); give a new path for the {what}")
    for item in inputs:
        ip = Path(item).resolve()
        if ip == real or real in ip.parents:
            raise OutputError(f"{out} {'is' if ip == real else 'contains'} the input {item}; write the {what} "
                              f"somewhere else")
    if out.exists() or out.is_symlink():
        if out.is_symlink():
            raise OutputError(f"{out} is a symbolic link; give a plain path for the {what}")
        if replaceable is not None:
            if not overwrite:
                raise OutputError(f"{out} already exists; replace it with --force (Python: overwrite=True)")
            if not replaceable(out):
                raise OutputError(f"{out} is not a {what} (it holds {_describe(out)}); --force replaces only a "
                                  f"{what} boq-edge wrote — choose another path")
        elif out.is_dir():
            raise OutputError(f"{out} is a folder; give a file path for the {what}")
    _writable_parent(out)
    return out


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``path`` for the duration; a second holder fails at once, naming the first."""
    out = Path(path).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.parent / f".{out.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise OutputError(f"another boq-edge process (pid {holder}) is writing {out}; wait for it to finish "
                              f"or choose another path") from None
        if os.path.exists(lock) and os.stat(lock).st_ino == os.fstat(fd).st_ino:
            break  # the file we locked is still the lock file (not one a finishing holder just removed)
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_leftovers(path: str | os.PathLike) -> list[str]:
    """Clean what a killed run left beside ``path``; returns what was done (for a log line).

    A staging folder whose owner is dead is removed — unless the output itself is missing
    and the leftover holds the old folder of an interrupted fallback replace: then it is
    put back at the path.
    """
    out = Path(path).absolute()
    done: list[str] = []
    if not out.parent.is_dir():
        return done
    for left in sorted(out.parent.glob(f".{out.name}.staging-*")):
        try:
            pid = int((left / OWNER_FILE).read_text())
        except (OSError, ValueError):
            pid = -1
        if pid > 0 and _alive(pid):
            continue
        old = left / "old"
        if old.is_dir() and not out.exists():
            os.replace(old, out)
            done.append(f"restored {out} from an interrupted replace")
        shutil.rmtree(left, ignore_errors=True)
        done.append(f"removed the leftover {left.name}")
    return done


@contextlib.contextmanager
def staging(path: str | os.PathLike) -> Iterator[Path]:
    """``.<name>.staging-XXXX/`` beside ``path``: build the result in ``<it>/new``; removed whatever happens.

    While the block runs, temporary files of this process go to ``<it>/tmp`` (not /tmp), so
    nothing of a killed run is left anywhere but in this one folder, which the next run
    cleans (:func:`recover_leftovers`).
    """
    out = Path(path).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    (root / OWNER_FILE).write_text(str(os.getpid()))
    (root / "tmp").mkdir()
    saved = tempfile.tempdir
    tempfile.tempdir = str(root / "tmp")
    try:
        yield root
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(root, ignore_errors=True)


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """True when the kernel did it; False where renameat2 or the flag is unsupported (the caller falls back)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    if err == errno.EEXIST:
        raise OutputError(f"{dst} appeared while the result was being made; it was left as it is")
    raise OSError(err, os.strerror(err), str(dst))


def publish(new: Path, out: Path, root: Path, *, replace: bool = False) -> None:
    """Put folder ``new`` at ``out`` atomically; with ``replace`` an existing ``out`` ends up inside ``root``.

    Without ``replace`` an ``out`` that exists (it appeared while the result was made) is
    left as it is and the call fails.
    """
    if out.exists() and not replace:
        raise OutputError(f"{out} appeared while the result was being made; it was left as it is")
    if out.exists():
        if _renameat2(new, out, _RENAME_EXCHANGE):
            return  # the old folder is now at ``new``, inside root, removed with it
        os.replace(out, root / "old")  # fallback: a crash here leaves the old folder in root; recovered next run
        os.replace(new, out)
        return
    if not _renameat2(new, out, _RENAME_NOREPLACE):
        if out.exists():
            raise OutputError(f"{out} appeared while the result was being made; it was left as it is")
        os.replace(new, out)


def terminate_cleanly() -> None:
    """SIGTERM raises SystemExit(143) in the main thread, so ``finally`` blocks (staging cleanup) run."""
    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        signal.signal(signal.SIGTERM, handler)


__all__ = ["OutputError", "check_output", "output_lock", "publish", "recover_leftovers", "staging",
           "terminate_cleanly"]
