"""Checkpoint I/O: the project's own format, and safe import of official ``.pth`` files.

Own format (``*.boq``): one safetensors file whose header metadata carries the JSON model
config and provenance. safetensors holds tensors only, so opening a checkpoint can never
run code, and the config travels with the weights. Official ``.pth`` files are pickles and
are read only with ``torch.load(weights_only=True)``, which refuses anything but tensors
and plain containers.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from boq_edge import __version__
from boq_edge.fileio import atomic_write_bytes, file_sha256
from boq_edge.model.presets import ModelConfig, get_preset
from boq_edge.model.vpr import VPRModel

FORMAT = "boq-edge-checkpoint"
FORMAT_VERSION = "1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why and what to do."""


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.pth``/``.pt`` state_dict safely; refuse code-carrying pickles and damaged files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path} was refused by the safe loader (weights_only=True): it holds objects other than "
            f"tensors, e.g. code to run on load. Only plain state_dicts are accepted. ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path} is not a readable PyTorch file (truncated or corrupt?): {e}") from None
    if isinstance(obj, Mapping):
        for nest in ("state_dict", "model", "model_state_dict"):
            if nest in obj and isinstance(obj[nest], Mapping):
                obj = obj[nest]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    state = {str(k): v for k, v in obj.items()}
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel/DDP
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse weights with NaN or inf: every descriptor of such a model would be NaN, yet "L2-normalised"."""
    bad = [(k, int((~torch.isfinite(v)).sum())) for k, v in state.items()
           if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        shown = ", ".join(f"{k} ({n})" for k, n in bad[:4]) + (f" … (+{len(bad) - 4} more)" if len(bad) > 4 else "")
        raise CheckpointError(f"{source} has non-finite (NaN/inf) weights in {len(bad)} tensor(s): {shown}; "
                              f"it cannot be exported or evaluated — use an earlier checkpoint")


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strict key and shape check whose error names every mismatch, not just the first."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    if not (missing or unexpected or wrong):
        return

    def show(keys: list[str], n: int = 6) -> str:
        more = f" … (+{len(keys) - n} more)" if len(keys) > n else ""
        return ", ".join(keys[:n]) + more

    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {show(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {show(unexpected)}")
    if wrong:
        more = f" … (+{len(wrong) - 6} more)" if len(wrong) > 6 else ""
        parts.append(f"shape mismatches ({len(wrong)}): " + "; ".join(
            f"{k} has {tuple(state[k].shape)}, model expects {tuple(own[k].shape)}" for k in wrong[:6]) + more)
    config = getattr(model, "config", None)
    target = f"preset {config.name}" if isinstance(config, ModelConfig) else "the model"
    raise CheckpointError(f"{source} does not match {target}: " + " | ".join(parts))


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> Path:
    """Write weights + config + provenance as one safetensors file, atomically."""
    from safetensors.torch import save

    path = Path(path)
    config: ModelConfig = model.config  # type: ignore[assignment]
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "meta": json.dumps({"boq_edge_version": __version__, **(meta or {})}, sort_keys=True, default=str),
    }
    atomic_write_bytes(path, save(tensors, metadata=header))
    return path


def read_checkpoint_header(path: str | os.PathLike) -> tuple[ModelConfig, dict[str, Any]]:
    """Config and provenance of a ``.boq`` file without loading any weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix in (".pth", ".pt", ".ckpt"):
        raise CheckpointError(f"{path} looks like a PyTorch pickle; convert it first with "
                              f"`boq-edge import-official {path} --preset PRESET -o model.boq`")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable boq-edge checkpoint (truncated or corrupt?): {e}") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a boq-edge checkpoint (no model config)")
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {header.get('format_version')}, "
                              f"this boq-edge reads version {FORMAT_VERSION}")
    try:
        config = ModelConfig.from_dict(json.loads(header["config"]))
        meta = json.loads(header.get("meta", "{}"))
        if not isinstance(meta, dict):
            raise TypeError("the provenance (meta) is not a mapping")
    except (KeyError, ValueError, TypeError, AttributeError, RecursionError, OverflowError) as e:
        raise CheckpointError(f"{path} has an invalid model config: {e}") from None
    return config, meta


def load_checkpoint(path: str | os.PathLike) -> tuple[VPRModel, ModelConfig, dict[str, Any]]:
    """Rebuild the model a ``.boq`` file describes and load its weights strictly."""
    path = Path(path)
    config, meta = read_checkpoint_header(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iteration)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read weights (truncated or corrupt?): {e}") from None
    model: torch.nn.Module = VPRModel(config)
    if meta.get("folded"):
        from boq_edge.export.fold import fold

        model = fold(model)  # type: ignore[arg-type]
    check_state_dict(model, state, str(path))
    check_finite(state, str(path))
    model.load_state_dict(state, strict=True)
    meta = {**meta, "checkpoint_sha256": file_sha256(path)}
    return model.eval(), config, meta  # type: ignore[return-value]


def import_official(pth: str | os.PathLike, preset: str | ModelConfig, out: str | os.PathLike) -> Path:
    """Convert an official BoQ ``.pth`` (e.g. ``resnet50_16384.pth``) into a ``.boq`` checkpoint."""
    config = get_preset(preset) if isinstance(preset, str) else preset
    state = read_torch_state_dict(pth)
    model = VPRModel(config)
    check_state_dict(model, state, str(pth))
    check_finite(state, str(pth))
    model.load_state_dict(state, strict=True)
    meta = {"source": "official", "source_file": Path(pth).name, "source_sha256": file_sha256(pth)}
    return save_checkpoint(model, out, meta)


__all__ = [
    "CheckpointError", "check_state_dict", "import_official",
    "load_checkpoint", "read_checkpoint_header", "read_torch_state_dict", "save_checkpoint",
]
