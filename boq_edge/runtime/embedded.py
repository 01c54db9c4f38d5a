"""Deployment facts written into the model file itself, so the file's hash protects them.

``manifest.json`` says how to feed a model (preprocessing, input/output names and shapes,
descriptor size, precision). The manifest is not hashed by itself, so an edited manifest —
mean 0 / std 1 instead of ImageNet's — would change every descriptor while every file still
verifies. The export therefore writes the same facts into the model file (ONNX
``metadata_props``, OpenVINO ``rt_info``), whose sha256 the manifest lists; readers compare
the two and refuse a bundle where they differ.

Reading needs neither onnx nor openvino (a device has one runtime at most, maybe neither
for ``info``): the ONNX reader walks the protobuf wire format of ``ModelProto`` and skips
the graph by its length; the OpenVINO reader parses the IR's XML.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import IO, Any

KEY = "boq_edge.deployment"  # ONNX metadata_props key; OpenVINO rt_info path boq_edge/deployment
_METADATA_PROPS = 14  # ModelProto field number of metadata_props


class EmbeddedFieldsError(ValueError):
    """A model file whose embedded deployment facts are missing, unreadable or unlike the manifest's."""


def deployment_fields(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest fields a device depends on to feed the model and read its output."""
    inp, out = manifest["input"], manifest["output"]
    return {
        "target": manifest["target"], "precision": manifest["precision"],
        "preprocessing": manifest["preprocessing"], "descriptor_dim": manifest["descriptor_dim"],
        "input": {"name": inp["name"], "shape": list(inp["shape"])},
        "output": {"name": out["name"], "shape": list(out["shape"])},
    }


def encode(fields: dict[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


# --- ONNX ----------------------------------------------------------------------------


def _varint(f: IO[bytes]) -> int | None:
    shift = result = 0
    while True:
        b = f.read(1)
        if not b:
            return None if shift == 0 else _bad("truncated varint")
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            _bad("varint too long")


def _bad(why: str) -> Any:
    raise EmbeddedFieldsError(f"not a readable ONNX model ({why})")


def _skip(f: IO[bytes], wire: int) -> None:
    if wire == 0:
        _varint(f)
    elif wire == 1:
        f.seek(8, os.SEEK_CUR)
    elif wire == 2:
        n = _varint(f)
        f.seek(n or 0, os.SEEK_CUR)
    elif wire == 5:
        f.seek(4, os.SEEK_CUR)
    else:
        _bad(f"wire type {wire}")


def _string_pair(data: bytes) -> tuple[str, str]:
    """A StringStringEntryProto: field 1 key, field 2 value."""
    import io

    f, out = io.BytesIO(data), {1: b"", 2: b""}
    while (tag := _varint(f)) is not None:
        field, wire = tag >> 3, tag & 7
        if wire == 2 and field in out:
            n = _varint(f) or 0
            out[field] = f.read(n)
        else:
            _skip(f, wire)
    return out[1].decode("utf-8", "replace"), out[2].decode("utf-8", "replace")


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """``metadata_props`` of an ONNX file, read from the wire format (the graph is skipped, not parsed)."""
    props: dict[str, str] = {}
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        while (tag := _varint(f)) is not None:
            field, wire = tag >> 3, tag & 7
            if field == _METADATA_PROPS and wire == 2:
                n = _varint(f) or 0
                key, value = _string_pair(f.read(n))
                props[key] = value
            else:
                _skip(f, wire)
            if f.tell() > size:
                _bad("a field runs past the end of the file")
    return props


def read_onnx_metadata_value(path: str | os.PathLike) -> str | None:
    """The deployment record of an ONNX file, or None."""
    return read_onnx_metadata(path).get(KEY)


def differing_fields(expected: dict[str, Any], found: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ (``preprocessing.mean``)."""
    out = []
    for k in sorted(set(expected) | set(found)):
        a, b = expected.get(k), found.get(k)
        name = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += differing_fields(a, b, f"{name}.")
        elif a != b:
            out.append(name)
    return out


def write_onnx_metadata(path: str | os.PathLike, key: str, value: str) -> None:
    """Set one ``metadata_props`` entry of an ONNX file in place (external weights stay where they are)."""
    import onnx

    from boq_edge.fileio import atomic_write_bytes

    model = onnx.load(str(path), load_external_data=False)
    for entry in list(model.metadata_props):
        if entry.key == key:
            model.metadata_props.remove(entry)
    model.metadata_props.add(key=key, value=value)
    atomic_write_bytes(path, model.SerializeToString())


# --- OpenVINO ------------------------------------------------------------------------


def read_openvino_rt_info(xml_path: str | os.PathLike) -> str | None:
    """The ``rt_info`` value at ``boq_edge/deployment`` of an IR's ``.xml``, or None."""
    try:
        for _, el in ET.iterparse(str(xml_path), events=("end",)):
            if el.tag == "deployment":
                return el.get("value")
    except ET.ParseError as e:
        raise EmbeddedFieldsError(f"{Path(xml_path).name} is not a readable OpenVINO IR ({e})") from None
    return None


def write_openvino_rt_info(xml_path: str | os.PathLike, value: str) -> None:
    """Store ``value`` at ``rt_info/boq_edge/deployment`` of an IR's ``.xml`` (the ``.bin`` is not touched)."""
    from boq_edge.fileio import atomic_write

    tree = ET.parse(str(xml_path))
    net = tree.getroot()
    rt = net.find("rt_info")
    if rt is None:
        rt = ET.SubElement(net, "rt_info")
    ours = rt.find("boq_edge")
    if ours is not None:
        rt.remove(ours)
    ET.SubElement(ET.SubElement(rt, "boq_edge"), "deployment", {"value": value})
    atomic_write(xml_path, lambda fh: tree.write(fh, encoding="utf-8", xml_declaration=True))


def embed(bundle_dir: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Write the deployment record into every model file the manifest names (ONNX, OpenVINO IR)."""
    from boq_edge.runtime.manifest import ROLE_ONNX, ROLE_OPENVINO

    value = encode(deployment_fields(manifest))
    root = Path(bundle_dir)
    artifacts = manifest.get("artifacts", {})
    if ROLE_ONNX in artifacts:
        write_onnx_metadata(root / artifacts[ROLE_ONNX], KEY, value)
    if ROLE_OPENVINO in artifacts:
        write_openvino_rt_info(root / artifacts[ROLE_OPENVINO], value)


__all__ = ["KEY", "EmbeddedFieldsError", "deployment_fields", "differing_fields", "embed", "encode",
           "read_onnx_metadata", "read_onnx_metadata_value", "read_openvino_rt_info", "write_onnx_metadata",
           "write_openvino_rt_info"]
