"""``boq-edge build-engine``: a thin wrapper over the TensorRT target's ``build_engine_for_bundle``.

Runs on the GPU device and never imports torch.
"""

from __future__ import annotations

from pathlib import Path

import typer

from boq_edge.cli.app import app, console, fail
from boq_edge.cli.reports import print_bundle


@app.command("build-engine")
def build_engine_cmd(
    bundle: Path = typer.Argument(..., help="A TensorRT bundle written by `boq-edge export --target tensorrt`."),
    workspace_gib: float = typer.Option(4.0, help="Builder workspace limit in GiB."),
    timing_cache: Path | None = typer.Option(None, help="Also read/update this timing cache file."),
    tf32: bool = typer.Option(False, "--tf32", help="Allow TF32 in FP32 layers (faster, ~1e-3 relative error)."),
    opt_level: int | None = typer.Option(None, help="TensorRT builder optimization level (0-5)."),
    force: bool = typer.Option(False, "--force", help="Rebuild an existing engine."),
    verbose: bool = typer.Option(False, "--verbose", help="Show TensorRT's build log."),
) -> None:
    """Build the TensorRT engine of a bundle on this GPU device (torch is not needed)."""
    from boq_edge.export.targets.tensorrt import SECTION, TensorRTOptions, build_engine_for_bundle
    from boq_edge.runtime.base import RuntimeUnavailable
    from boq_edge.runtime.manifest import BundleError

    opts = TensorRTOptions(workspace_gib=workspace_gib, timing_cache=timing_cache, tf32=tf32,
                           builder_optimization_level=opt_level, verbose=verbose)
    try:
        m = build_engine_for_bundle(bundle, opts, force=force)
    except (RuntimeUnavailable, BundleError, RuntimeError) as e:
        fail(str(e))
    info = m.section(SECTION)
    console.print(f"built {bundle / 'model.engine'} with TensorRT {info.get('version')} on {info.get('gpu')} "
                  f"(batch {':'.join(map(str, m.batch_range))})", highlight=False)
    print_bundle(bundle)
