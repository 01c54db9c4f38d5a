"""The resumable training state: weights, optimizer, schedule, RNG, position, best metric.

Written with ``torch.save`` beside each checkpoint (``last.state.pt``, ``best.state.pt``)
and read back with ``torch.load(weights_only=True)``: everything in it is tensors or
plain containers of numbers and strings (RNG states are stored as tensors for that
reason), so loading a state file can never run code. It is self-contained — resuming
needs no ``.boq`` — so a crash between writing a checkpoint and its state cannot pair
weights with another step's optimizer.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boq_edge.fileio import atomic_write_bytes

STATE_FORMAT = "boq-edge-train-state"
STATE_VERSION = 1


class ResumeError(ValueError):
    """A state file that cannot be resumed from; the message says why."""


def capture_rng() -> dict[str, torch.Tensor]:
    """torch / numpy / python global RNG states as tensors (weights_only-loadable)."""
    np_state: tuple[Any, ...] = tuple(np.random.get_state())
    py_version, py_internal, py_gauss = random.getstate()
    out = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_meta": torch.tensor([int(np_state[2]), int(np_state[3]), 0], dtype=torch.float64),
        "numpy_gauss": torch.tensor([float(np_state[4])], dtype=torch.float64),
        "python": torch.tensor([py_version, *py_internal], dtype=torch.int64),
        "python_gauss": torch.tensor([float("nan") if py_gauss is None else py_gauss], dtype=torch.float64),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.stack(torch.cuda.get_rng_state_all()) if torch.cuda.device_count() else torch.empty(0)
    return out


def restore_rng(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    meta = state["numpy_meta"].tolist()
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), int(meta[0]), int(meta[1]),
                         float(state["numpy_gauss"][0])))
    py = state["python"].tolist()
    gauss = float(state["python_gauss"][0])
    random.setstate((py[0], tuple(py[1:]), None if np.isnan(gauss) else gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def save_state(path: str | os.PathLike, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scaler_state: dict[str, Any], schedule_step: int, epoch: int, batch_in_epoch: int,
               best: dict[str, Any], config: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Write the state atomically. ``epoch``/``batch_in_epoch`` say where training continues."""
    state = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scaler": scaler_state,
        "schedule_step": int(schedule_step),
        "epoch": int(epoch),
        "batch_in_epoch": int(batch_in_epoch),
        "rng": capture_rng(),
        "best": json.dumps(best),
        "config": json.dumps(config),
        "extra": json.dumps(extra or {}, default=str),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a state file safely; JSON fields are decoded."""
    p = Path(path)
    if not p.is_file():
        raise ResumeError(f"{p}: no such training state file")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ResumeError(f"{p} is not a readable training state (truncated, or not made by boq-edge train?): "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ResumeError(f"{p} is not a boq-edge training state file")
    if state.get("version") != STATE_VERSION:
        raise ResumeError(f"{p} has training state version {state.get('version')}, this boq-edge reads {STATE_VERSION}")
    for k in ("best", "config", "extra"):
        state[k] = json.loads(state[k])
    return state


def resolve_resume(path: str | os.PathLike) -> Path:
    """A run directory (→ its ``last.state.pt``), a ``.boq`` (→ its sibling state) or a state file."""
    p = Path(path)
    if p.is_dir():
        p = p / "last.state.pt"
    elif p.suffix == ".boq":
        p = p.with_suffix(".state.pt")
    if not p.is_file():
        raise ResumeError(f"cannot resume: {p} does not exist (give a run directory, best.boq/last.boq of a run, "
                          "or a *.state.pt file)")
    return p
