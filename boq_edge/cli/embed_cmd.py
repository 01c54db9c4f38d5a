"""``boq-edge embed``: descriptors for images through a bundle's runtime. Never imports torch
(unless ``--backend torch`` is asked for)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import typer
from rich.table import Table

from boq_edge.cli.app import app, checked_output, console, fail

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def expand_images(items: list[Path]) -> list[Path]:
    """Files as given; directories expanded to their images, sorted, recursively."""
    out: list[Path] = []
    for p in items:
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTS and q.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            fail(f"{p}: no such file or directory")
    return out


@app.command("embed")
def embed_cmd(
    bundle: Path = typer.Argument(..., help="An artifact bundle directory."),
    images: list[Path] = typer.Argument(..., help="Image files and/or folders (expanded recursively, sorted)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the (N, D) float32 descriptors (.npy)."),
    backend: str | None = typer.Option(None, help="onnxruntime, openvino, tensorrt (default: the bundle's)."),
    threads: int | None = typer.Option(None, min=1, help="Inference threads."),
    batch_size: int = typer.Option(16, min=1, help="Images per preprocessing + inference step."),
    list_out: Path | None = typer.Option(None, help="Also write the image paths, one per row, in order."),
) -> None:
    """Embed images with a bundle: the manifest's preprocessing, L2-normalised descriptors."""
    import numpy as np

    from boq_edge.fileio import atomic_write_bytes
    from boq_edge.preprocess import CorruptImageError
    from boq_edge.runtime import BundleError, RuntimeUnavailable, load_runtime

    files = expand_images(images)
    if not files:
        fail("no images found in the given paths")
    for target in (out, list_out):
        if target is not None:
            checked_output(target, inputs=[*files, bundle], what="descriptor output")
    try:
        rt = load_runtime(bundle, backend=backend, threads=threads)
    except (BundleError, RuntimeUnavailable, ValueError) as e:
        fail(str(e))
    t0 = time.perf_counter()
    try:
        desc = np.concatenate([rt.embed(files[i:i + batch_size]) for i in range(0, len(files), batch_size)])
    except (CorruptImageError, OSError, ValueError) as e:  # ValueError: non-finite descriptors, odd arrays
        fail(str(e))
    seconds = time.perf_counter() - t0
    buf = io.BytesIO()
    np.save(buf, desc.astype(np.float32))
    atomic_write_bytes(out, buf.getvalue())
    if list_out is not None:
        atomic_write_bytes(list_out, "".join(f"{p}\n" for p in files).encode())
    info = rt.info()
    t = Table(show_header=False, title=f"embed → {out}")
    t.add_row("images", str(len(files)))
    t.add_row("descriptors", f"{desc.shape[0]} × {desc.shape[1]} float32, L2-normalised")
    t.add_row("backend", f"{info['backend']} ({info['precision']})")
    t.add_row("time", f"{seconds:.2f} s ({len(files) / seconds:.1f} images/s)")
    console.print(t)
