"""``read_benchmark``: one entry point over every reader, with per-format options checked."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from boq_edge.data import aligned, openvprlab, vpr_bench, vpr_folder
from boq_edge.data.benchmark import Benchmark
from boq_edge.data.detect import FORMATS, detect_format

READERS: dict[str, Callable[..., Benchmark]] = {
    vpr_folder.FORMAT: vpr_folder.read_vpr_folder,
    vpr_bench.FORMAT: vpr_bench.read_vpr_bench,
    openvprlab.FORMAT: openvprlab.read_openvprlab,
    aligned.FORMAT: aligned.read_aligned,
}


def reader_options(fmt: str) -> list[str]:
    """Keyword options the reader of ``fmt`` accepts."""
    sig = inspect.signature(READERS[fmt])
    return [n for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]


def read_benchmark(path: str | os.PathLike, format: str = "auto", **options: Any) -> Benchmark:
    """Read the benchmark at ``path``; ``format="auto"`` detects it.

    ``options`` go to the format's reader (see :func:`reader_options`); an option the
    format does not take is an error, not silently ignored.
    """
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in READERS:
        raise ValueError(f"unknown dataset format {format!r}; choose auto or one of {', '.join(FORMATS)}")
    accepted = reader_options(fmt)
    extra = sorted(set(options) - set(accepted))
    if extra:
        raise ValueError(
            f"option(s) {', '.join(extra)} do not apply to format {fmt} (it takes: {', '.join(accepted) or 'none'})"
        )
    return READERS[fmt](path, **options)
