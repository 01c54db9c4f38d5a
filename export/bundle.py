"""Artifact bundles: a directory of plain model files plus ``manifest.json``.

Writing goes through a staging directory beside the destination (``.NAME.staging-XXXX``):
emitters write into it, :func:`write_bundle` hashes every file, writes the manifest and
renames the directory into place. A crash or an exception leaves either the old bundle
or the new one, never a half-written mix. Reading and verifying is torch-free and lives
in :mod:`boq_edge.runtime.manifest` (the device needs it); it is re-exported here.

This module imports no torch, so ``build-engine`` can update bundles on a device.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from boq_edge.fileio import atomic_write_bytes, default_mode, file_sha256
from boq_edge.runtime.manifest import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    BundleError,
    Manifest,
    hash_files,
    load_manifest_dict,
    read_manifest,
    write_manifest,
)

# Distributions whose versions every manifest records (absent ones are recorded as null).
TOOLCHAIN = ("boq-edge", "numpy", "pillow", "torch", "onnx", "onnxscript", "onnxruntime", "openvino", "nncf")


def toolchain_versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Installed versions, read from package metadata (imports nothing, so no torch import)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in TOOLCHAIN + extra:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


@contextlib.contextmanager
def staging_dir(out_dir: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """A temporary sibling of ``out_dir`` to build a bundle in; removed if anything fails.

    Call :func:`write_bundle` inside the block to publish it. Refuses an existing
    ``out_dir`` up front unless ``overwrite``, so no work is wasted.
    """
    out = Path(out_dir).absolute()
    if out.exists() and not overwrite:
        raise BundleError(f"{out} already exists; pass overwrite=True (CLI: --force) to replace it")
    if out.exists() and not out.is_dir():
        raise BundleError(f"{out} exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    os.chmod(stage, default_mode(directory=True))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # gone after a successful publish anyway


def _publish(stage: Path, out: Path) -> None:
    """Rename the staged directory into place; an old bundle is moved aside first, then deleted."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "bundle")
    try:
        os.replace(stage, out)
    except BaseException:
        if old is not None:
            os.replace(old / "bundle", out)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_bundle(stage: str | os.PathLike, out_dir: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Hash every staged file, write ``manifest.json`` and move the bundle to ``out_dir``.

    ``manifest`` holds everything but ``files`` (computed here) and the schema fields.
    """
    stage, out = Path(stage), Path(out_dir).absolute()
    for p in stage.rglob("*"):
        if p.is_file() and p.name.endswith(".tmp"):
            raise BundleError(f"left-over temp file in staged bundle: {p.name}")
    fields = dict(manifest)
    fields.setdefault("created_utc", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    fields["files"] = hash_files(stage)
    write_manifest(stage, fields)
    for p in [stage, *stage.rglob("*")]:  # make the files durable before the rename publishes them
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _publish(stage, out)
    return out


def update_bundle(bundle_dir: str | os.PathLike, new_files: dict[str, bytes],
                  changes: dict[str, Any]) -> Manifest:
    """Add/replace files in an existing, verified bundle and rewrite its manifest (each write atomic).

    Used on the device by ``build-engine``: the engine is written first, the manifest that
    lists it last, so an interrupted build leaves a valid bundle without the engine.
    """
    root = Path(bundle_dir)
    read_manifest(root, verify=True)
    d = load_manifest_dict(root)
    for rel, data in new_files.items():
        atomic_write_bytes(root / rel, data)
    files = dict(d["files"])
    files.update({rel: file_sha256(root / rel) for rel in new_files})
    d = {**{k: v for k, v in d.items() if k not in ("schema", "schema_version")}, **changes, "files": files}
    write_manifest(root, d)
    return read_manifest(root, verify=True)


__all__ = [
    "MANIFEST_NAME", "SCHEMA_VERSION", "BundleError", "Manifest", "read_manifest", "staging_dir",
    "toolchain_versions", "update_bundle", "write_bundle",
]
