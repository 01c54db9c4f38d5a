"""``boq-edge info BUNDLE``: verify every file's sha256 and print the manifest. Torch-free."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from boq_edge.cli.app import console, fail


def show_bundle_info(path: Path) -> None:
    """Refuse (one line, exit 2) a bundle whose manifest or any file does not verify; else describe it."""
    from boq_edge.runtime.manifest import BundleError, read_manifest

    try:
        m = read_manifest(path, verify=True)
    except BundleError as e:
        fail(str(e))
    raw = m.raw
    t = Table(show_header=False, title=f"bundle {path} (schema v{raw['schema_version']}, verified)")
    t.add_row("target", m.target)
    t.add_row("precision", m.precision)
    t.add_row("preset", m.preset)
    t.add_row("descriptor dim", str(m.descriptor_dim))
    t.add_row("input", f"{m.input_name} {m.input_shape} float32 → {m.output_name}")
    t.add_row("batch min:opt:max", ":".join(map(str, m.batch_range)))
    pre = m.preprocessing
    t.add_row("preprocessing", f"{pre['height']}×{pre['width']} {pre['interpolation']}, mean {pre['mean']}, "
              f"std {pre['std']}, {pre['layout']}")
    if m.inference_precision:
        t.add_row("OpenVINO inference precision", m.inference_precision)
    fp16 = (raw.get("onnx") or {}).get("fp16")
    if fp16:
        kept = len(fp16.get("kept_fp32_large_constant_nodes", [])) + len(fp16.get("kept_fp32_normalize_tail", []))
        t.add_row("kept in FP32", f"{', '.join(fp16.get('kept_fp32_op_types', []))} + {kept} nodes")
    t.add_row("quantization", json.dumps(m.quantization) if m.quantization else "none")
    folding = raw.get("folding") or {}
    t.add_row("folding applied", str(folding.get("applied")))
    src = raw.get("source") or {}
    t.add_row("source checkpoint", f"{src.get('checkpoint')} sha256 {src.get('checkpoint_sha256')}")
    if m.target == "tensorrt":
        trt = raw.get("tensorrt") or {}
        state = trt.get("engine", "pending")
        detail = (f"built with TensorRT {trt.get('version')} on {trt.get('gpu')}" if state == "built"
                  else f"pending: run `{trt.get('build_command')}` on the GPU device")
        t.add_row("TensorRT engine", detail)
    tools = {k: v for k, v in (raw.get("toolchain") or {}).items() if v}
    t.add_row("toolchain", ", ".join(f"{k} {v}" for k, v in tools.items()))
    t.add_row("created (UTC)", str(raw.get("created_utc")))
    console.print(t)
    files = Table("file", "bytes", "sha256", "check", title="files")
    for rel, sha in sorted(m.files.items()):
        files.add_row(rel, f"{(path / rel).stat().st_size:,}", sha[:16] + "…", "[green]ok[/]")
    console.print(files)
