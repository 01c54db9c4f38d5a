"""The bundle manifest: read, verify and (for the export side) write ``manifest.json``.

The manifest is the contract between the workstation that exports and the device that
runs, so this module is torch-free and needs no inference library: a device reads and
verifies bundles with standard-library code (and the light target registry).
``boq_edge.export.bundle`` reuses it for writing.

A bundle is refused, with the file named, when the manifest is missing or malformed,
its schema version is unknown, a listed file is missing, a listed path points outside
the bundle, a file's sha256 differs from the recorded one (a flipped byte is enough), the
bundle holds a file the manifest does not list (a runtime may load it: OpenVINO reads the
``.bin`` beside the ``.xml``, ONNX its external data) or any symbolic link, or the
deployment facts embedded in the model file (:mod:`boq_edge.runtime.embedded`) differ from
the manifest's — an edited manifest.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from boq_edge.fileio import atomic_write_bytes, file_sha256

SCHEMA = "boq-edge-bundle"
SCHEMA_VERSION = 2  # 2: deployment facts embedded in the model files, every file listed
MANIFEST_NAME = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")

# Roles of the files a backend may load; the manifest maps each role to a relative path.
ROLE_ONNX = "onnx"
ROLE_OPENVINO = "openvino"
ROLE_ENGINE = "engine"
ROLE_TIMING_CACHE = "timing_cache"


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the bundle (and file) and why."""


def _safe_relpath(bundle: Path, rel: str) -> Path:
    """A listed path must stay inside the bundle: no absolute paths, no '..'."""
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts or "\\" in rel:
        raise BundleError(f"{bundle}: manifest lists an unsafe path {rel!r}")
    return bundle.joinpath(*p.parts)


@dataclass(frozen=True)
class Manifest:
    """Typed view of ``manifest.json``; ``raw`` keeps every field, known or not."""

    bundle_dir: Path
    target: str
    precision: str
    preset: str
    model_config: dict[str, Any]
    descriptor_dim: int
    input_name: str
    output_name: str
    input_shape: list[Any]
    output_shape: list[Any]
    batch_min: int
    batch_opt: int
    batch_max: int
    preprocessing: dict[str, Any]
    files: dict[str, str]
    artifacts: dict[str, str]
    inference_precision: str | None
    quantization: dict[str, Any] | None
    source: dict[str, Any]  # checkpoint (name), checkpoint_sha256, origin
    onnx: dict[str, Any] | None  # exporter and opset of the ONNX the model comes from; FP16 conversion record
    folding: dict[str, Any]
    toolchain: dict[str, Any]
    created_utc: str | None
    schema_version: int
    raw: dict[str, Any] = field(repr=False)

    @property
    def checkpoint_sha256(self) -> str | None:
        """sha256 of the checkpoint the bundle was exported from (None for a model object)."""
        return self.source.get("checkpoint_sha256")

    def section(self, name: str) -> dict[str, Any]:
        """A target's own manifest section (e.g. ``tensorrt``: engine state); empty if absent.

        Only the target that writes a section, and its runtime backend, read it.
        """
        value = self.raw.get(name)
        return dict(value) if isinstance(value, dict) else {}

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.preprocessing["height"]), int(self.preprocessing["width"])

    @property
    def batch_range(self) -> tuple[int, int, int]:
        return self.batch_min, self.batch_opt, self.batch_max

    def artifact_path(self, role: str) -> Path | None:
        """Absolute path of the file playing ``role`` (onnx, openvino, engine…), if the bundle has one."""
        rel = self.artifacts.get(role)
        return None if rel is None else _safe_relpath(self.bundle_dir, rel)

    @classmethod
    def from_dict(cls, bundle_dir: Path, d: dict[str, Any]) -> Manifest:
        """Every field type-checked: a manifest is untrusted input, and a wrong type must not become a traceback."""
        f = _Fields(bundle_dir, d)
        inp, out, batch = f.get("input", dict), f.get("output", dict), f.get("batch", dict)
        m = cls(
            bundle_dir=bundle_dir, target=f.get("target", str), precision=f.get("precision", str),
            preset=f.get("preset", str), model_config=f.get("model_config", dict),
            descriptor_dim=f.get("descriptor_dim", int), input_name=f.sub(inp, "input", "name", str),
            output_name=f.sub(out, "output", "name", str), input_shape=f.sub(inp, "input", "shape", list),
            output_shape=f.sub(out, "output", "shape", list),
            batch_min=f.sub(batch, "batch", "min", int), batch_opt=f.sub(batch, "batch", "opt", int),
            batch_max=f.sub(batch, "batch", "max", int), preprocessing=f.get("preprocessing", dict),
            files=f.mapping("files"), artifacts=f.mapping("artifacts", {}),
            inference_precision=f.get("inference_precision", str, None),
            quantization=f.get("quantization", dict, None), source=f.get("source", dict, {}) or {},
            onnx=f.get("onnx", dict, None), folding=f.get("folding", dict, {}) or {},
            toolchain=f.get("toolchain", dict, {}) or {}, created_utc=f.get("created_utc", str, None),
            schema_version=f.get("schema_version", int), raw=d,
        )
        from boq_edge.export.targets import TARGETS
        from boq_edge.preprocess import Preprocessing

        if m.target not in TARGETS:
            raise BundleError(f"{bundle_dir}: unknown target {m.target!r} in manifest (known: {', '.join(TARGETS)})")
        if m.precision not in PRECISIONS:
            raise BundleError(f"{bundle_dir}: unknown precision {m.precision!r} in manifest")
        if not 1 <= m.batch_min <= m.batch_opt <= m.batch_max:
            raise BundleError(f"{bundle_dir}: invalid batch range {m.batch_range}")
        if not 0 < m.descriptor_dim <= 1 << 20 or not all(isinstance(v, (int, str)) for v in m.input_shape):
            raise BundleError(f"{bundle_dir}: manifest descriptor_dim or input shape is malformed")
        try:
            Preprocessing.from_dict(m.preprocessing)
        except ValueError as e:
            raise BundleError(f"{bundle_dir}: manifest {e}") from None
        for role, rel in m.artifacts.items():
            if rel not in m.files:
                raise BundleError(f"{bundle_dir}: artifact {role} ({rel}) is not covered by the file hashes")
        return m


class _Fields:
    """Typed access to manifest fields; a missing or mistyped one is a BundleError naming it."""

    _MISSING = object()

    def __init__(self, bundle_dir: Path, d: dict[str, Any]) -> None:
        self.bundle_dir, self.d = bundle_dir, d

    def _check(self, value: Any, name: str, kind: type, default: Any) -> Any:
        if value is self._MISSING:
            if default is self._MISSING:
                raise BundleError(f"{self.bundle_dir}: manifest has no {name} field")
            return default
        if value is None and default is None:
            return None
        if isinstance(value, bool) and kind is int or not isinstance(value, kind):
            raise BundleError(f"{self.bundle_dir}: manifest field {name} must be {kind.__name__}, got "
                              f"{type(value).__name__}")
        return value

    def get(self, key: str, kind: type, default: Any = _MISSING) -> Any:
        return self._check(self.d.get(key, self._MISSING), key, kind, default)

    def sub(self, table: dict[str, Any], table_name: str, key: str, kind: type) -> Any:
        return self._check(table.get(key, self._MISSING), f"{table_name}.{key}", kind, self._MISSING)

    def mapping(self, key: str, default: Any = _MISSING) -> dict[str, str]:
        value = self.get(key, dict, default)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise BundleError(f"{self.bundle_dir}: manifest field {key} must map names to strings")
        return dict(value)


def hash_files(bundle_dir: str | os.PathLike, relpaths: list[str] | None = None) -> dict[str, str]:
    """sha256 of the given files (default: every file under the bundle except the manifest)."""
    root = Path(bundle_dir)
    if relpaths is None:
        relpaths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                          if p.is_file() and p.name != MANIFEST_NAME)
    return {rel: file_sha256(_safe_relpath(root, rel)) for rel in relpaths}


def _walk(root: Path) -> list[str]:
    """Every file under the bundle (relative, POSIX), refusing symbolic links anywhere in it."""
    out = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        for name in [*dirs, *names]:
            p = Path(folder, name)
            if p.is_symlink():
                raise BundleError(f"{root}: {p.relative_to(root).as_posix()} is a symbolic link; bundles hold "
                                  f"plain files only (copy the file in and re-export)")
        out += [Path(folder, n).relative_to(root).as_posix() for n in names]
    return out


def verify_files(bundle_dir: str | os.PathLike, files: dict[str, str]) -> None:
    """Raise :class:`BundleError` naming the first missing, altered, unlisted or linked file."""
    root = Path(bundle_dir)
    unlisted = sorted(set(_walk(root)) - set(files) - {MANIFEST_NAME})
    if unlisted:
        raise BundleError(f"{root}: {', '.join(unlisted[:3])} {'is' if len(unlisted) == 1 else 'are'} not listed "
                          f"in the manifest (a runtime could load unverified data); re-export the bundle")
    for rel, expected in files.items():
        path = _safe_relpath(root, rel)
        if not path.is_file():
            raise BundleError(f"{root}: listed file {rel} is missing")
        actual = file_sha256(path)
        if actual != expected:
            raise BundleError(f"{root}: {rel} has been modified or corrupted "
                              f"(sha256 {actual[:12]}… ≠ manifest {expected[:12]}…); re-export the bundle")


def load_manifest_dict(bundle_dir: str | os.PathLike) -> dict[str, Any]:
    """The raw manifest after schema checks (no hash verification)."""
    root = Path(bundle_dir)
    path = root / MANIFEST_NAME
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory")
    if not path.is_file():
        raise BundleError(f"{root}: no {MANIFEST_NAME}; not a boq-edge bundle")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict) or d.get("schema") != SCHEMA:
        raise BundleError(f"{path}: not a boq-edge bundle manifest (schema field is not {SCHEMA!r})")
    if d.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(f"{path}: manifest schema version {d.get('schema_version')!r}; "
                          f"this boq-edge reads version {SCHEMA_VERSION}")
    return d


def check_embedded(m: Manifest) -> None:
    """The deployment facts in each model file must equal the manifest's (else it was edited)."""
    from boq_edge.runtime import embedded

    expected = embedded.deployment_fields(m.raw)
    readers = ((ROLE_ONNX, embedded.read_onnx_metadata_value), (ROLE_OPENVINO, embedded.read_openvino_rt_info))
    for role, read in readers:
        path = m.artifact_path(role)
        if path is None:
            continue
        try:
            text = read(path)
            found = json.loads(text) if text is not None else None
        except (embedded.EmbeddedFieldsError, ValueError) as e:
            raise BundleError(f"{m.bundle_dir}: {path.name}: {e}") from None
        if found is None:
            raise BundleError(f"{m.bundle_dir}: {path.name} carries no deployment record (exported by an older "
                              f"boq-edge?); re-export the bundle")
        differ = embedded.differing_fields(expected, found)
        if differ:
            raise BundleError(f"{m.bundle_dir}: manifest field(s) {', '.join(differ)} differ from what "
                              f"{path.name} was exported with (an edited manifest?); re-export the bundle")


def read_manifest(bundle_dir: str | os.PathLike, verify: bool = True) -> Manifest:
    """Read a bundle's manifest; with ``verify`` (the default) check every file and the embedded facts."""
    root = Path(bundle_dir)
    m = Manifest.from_dict(root, load_manifest_dict(root))
    if verify:
        verify_files(root, m.files)
        check_embedded(m)
    return m


def write_manifest(bundle_dir: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Validate and write ``manifest.json`` atomically (sorted keys, stable diffs)."""
    root = Path(bundle_dir)
    d = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **manifest}
    Manifest.from_dict(root, d)  # refuse to write what we could not read back
    data = (json.dumps(d, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")
    return atomic_write_bytes(root / MANIFEST_NAME, data)


__all__ = [
    "MANIFEST_NAME", "PRECISIONS", "ROLE_ENGINE", "ROLE_ONNX", "ROLE_OPENVINO", "ROLE_TIMING_CACHE",
    "SCHEMA", "SCHEMA_VERSION", "BundleError", "Manifest", "hash_files", "load_manifest_dict", "read_manifest",
    "verify_files", "write_manifest",
]
