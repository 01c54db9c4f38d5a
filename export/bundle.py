"""Artifact bundles: a directory of plain model files plus ``manifest.json``.

Writing goes through a staging directory beside the destination (``.NAME.staging-XXXX``,
locked against a second writer: :mod:`boq_edge.outputs`): emitters write into it,
:func:`write_bundle` hashes every file, writes the manifest and swaps the directory into
place with one atomic rename. A crash, an exception or a signal leaves either the old
bundle or the new one, never a half-written mix and never neither. Reading and verifying is torch-free and lives
in :mod:`boq_edge.runtime.manifest` (the device needs it); it is re-exported here.

This module imports no torch, so ``build-engine`` can update bundles on a device.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from boq_edge.fileio import atomic_write_bytes, default_mode, file_sha256
from boq_edge.outputs import OutputError, check_output, output_lock, publish, recover_leftovers, staging
from boq_edge.runtime import embedded
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


@dataclass
class OnnxRecord:
    """The ONNX graph a bundle's model comes from: who wrote it, at which opset (read from the file)."""

    exporter: str
    opset: int
    dynamic_batch: bool = True
    fp16: dict[str, Any] | None = None  # what the FP16 conversion kept in FP32

    @classmethod
    def of_file(cls, path: str | os.PathLike, exporter: str, **extra: Any) -> OnnxRecord:
        """The record of an ONNX file as written: its default-domain opset is read back, never assumed."""
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
        return cls(exporter=exporter, opset=opset, **extra)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["fp16"] is None:
            del d["fp16"]
        return d


@dataclass
class ManifestDraft:
    """The manifest being built: the export stage fills the model's facts, then each stage its own part.

    The emitter records the artifacts it wrote and the ONNX exporter and opset it used; the
    quantizer records its :class:`~boq_edge.calibration.QuantizationReport`; a target may
    add a section of its own (``openvino``, ``tensorrt``). :func:`write_bundle` adds the
    file hashes and serialises it.
    """

    target: str
    precision: str
    preset: str
    model_config: dict[str, Any]
    descriptor_dim: int
    input: dict[str, Any]
    output: dict[str, Any]
    batch: dict[str, int]
    preprocessing: dict[str, Any]
    source: dict[str, Any]
    folding: dict[str, Any]
    artifacts: dict[str, str] = field(default_factory=dict)
    onnx: OnnxRecord | None = None
    quantization: dict[str, Any] | None = None
    inference_precision: str | None = None
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)  # target-owned, top-level in the file
    toolchain: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("sections", "onnx")}
        d["onnx"] = self.onnx.to_dict() if self.onnx is not None else None
        clash = set(self.sections) & set(d)
        if clash:
            raise BundleError(f"target sections {sorted(clash)} would overwrite manifest fields")
        return {**d, **self.sections}


def is_bundle(path: str | os.PathLike) -> bool:
    """A folder with a readable boq-edge manifest: what ``--force`` may replace."""
    try:
        load_manifest_dict(path)
    except BundleError:
        return False
    return True


def check_output_dir(out_dir: str | os.PathLike, overwrite: bool = False,
                     inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse, before any work, an output that exists (unless ``overwrite`` and it is a bundle) or would lose data."""
    try:
        return check_output(out_dir, inputs=inputs, overwrite=overwrite, replaceable=is_bundle, what="bundle")
    except OutputError as e:
        raise BundleError(str(e)) from None


@contextlib.contextmanager
def staging_dir(out_dir: str | os.PathLike, overwrite: bool = False,
                inputs: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """A folder to build a bundle in, beside ``out_dir``, locked against a second writer; removed whatever happens.

    Call :func:`write_bundle` inside the block to publish it. What a killed earlier run left
    beside ``out_dir`` is cleaned (or an interrupted replace undone) first.
    """
    out = Path(out_dir).absolute()
    check_output_dir(out, overwrite, inputs)
    with output_lock(out):
        recover_leftovers(out)
        check_output_dir(out, overwrite, inputs)  # again, under the lock: another writer may have finished
        with staging(out) as root:
            stage = root / "new"
            stage.mkdir()
            os.chmod(stage, default_mode(directory=True))
            yield stage


def write_bundle(stage: str | os.PathLike, out_dir: str | os.PathLike, manifest: ManifestDraft, *,
                 replace: bool = False) -> Path:
    """Hash every staged file, write ``manifest.json`` and move the bundle to ``out_dir``.

    ``replace``: an existing bundle at ``out_dir`` is swapped out (atomically); otherwise it is an error.
    """
    stage, out = Path(stage), Path(out_dir).absolute()
    for p in stage.rglob("*"):
        if p.is_file() and p.name.endswith(".tmp"):
            raise BundleError(f"left-over temp file in staged bundle: {p.name}")
    fields = manifest.to_dict()
    embedded.embed(stage, fields)  # before hashing: the model files' hashes then protect these facts
    fields.setdefault("created_utc", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    fields["files"] = hash_files(stage)
    write_manifest(stage, fields)
    for p in [stage, *stage.rglob("*")]:  # make the files durable before the rename publishes them
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    if out.exists() and not is_bundle(out):
        raise BundleError(f"{out} appeared during the export and is not a bundle; it was left as it is")
    try:
        publish(stage, out, stage.parent, replace=replace)
    except OutputError as e:
        raise BundleError(str(e)) from None
    return out


def update_bundle(bundle_dir: str | os.PathLike, new_files: dict[str, bytes],
                  changes: dict[str, Any]) -> Manifest:
    """Add/replace files of a verified bundle and rewrite its manifest, all at once.

    Used on the device by ``build-engine``. The updated bundle is built beside the old one
    (unchanged files hard-linked, so it costs no space) and swapped in with one rename: an
    interrupted build leaves the old bundle, complete and verifiable.
    """
    root = Path(bundle_dir).absolute()
    read_manifest(root, verify=True)
    d = load_manifest_dict(root)
    with output_lock(root), staging(root) as work:
        stage = work / "new"
        for rel in d["files"]:
            dst = stage / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(root / rel, dst)
            except OSError:
                shutil.copy2(root / rel, dst)
        for rel, data in new_files.items():
            atomic_write_bytes(stage / rel, data)
        files = {**d["files"], **{rel: file_sha256(stage / rel) for rel in new_files}}
        d = {**{k: v for k, v in d.items() if k not in ("schema", "schema_version")}, **changes, "files": files}
        write_manifest(stage, d)
        read_manifest(stage, verify=True)
        publish(stage, root, work, replace=True)
    return read_manifest(root, verify=True)


__all__ = [
    "MANIFEST_NAME", "SCHEMA_VERSION", "BundleError", "Manifest", "ManifestDraft", "OnnxRecord", "check_output_dir",
    "is_bundle", "read_manifest",
    "staging_dir", "toolchain_versions", "update_bundle", "write_bundle",
]
