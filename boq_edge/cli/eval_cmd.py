"""``boq-edge eval``: Recall@k of a checkpoint (or an untrained preset) on a benchmark.

Thin: parse options, read the benchmark, build the model, call
:func:`boq_edge.evaluate.evaluate_benchmark`, print a rich table, write the JSON report.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from boq_edge.cli.app import app, checked_output, console, err_console, fail

_READ_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, KeyError, ImportError, OSError)


def _parse_k(text: str) -> list[int]:
    try:
        ks = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        fail(f"--k must be comma-separated integers like 1,5,10,20, got {text!r}")
    if not ks or any(k < 1 for k in ks) or ks != sorted(set(ks)):
        fail(f"--k must be increasing positive integers like 1,5,10,20, got {text!r}")
    return ks


def _reader_options(fmt: str, queries: str | None, database: str | None, tolerance: int | None,
                    frames: str | None, threshold: float | None, set_name: str | None) -> dict[str, Any]:
    """CLI flags → the keyword options of the chosen reader; flags a format does not take are errors."""
    given = {"--queries": queries, "--database": database, "--tolerance": tolerance, "--frames": frames,
             "--threshold": threshold, "--set-name": set_name}
    mapping = {
        "aligned": {"--queries": "queries", "--database": "database", "--tolerance": "tolerance", "--frames": "frames"},
        "vpr-folder": {"--queries": "queries_folder", "--database": "database_folder",
                       "--threshold": "positive_dist_threshold"},
        "openvprlab": {"--set-name": "name"},
        "vpr-bench": {},
    }[fmt]
    unused = [flag for flag, v in given.items() if v is not None and flag not in mapping]
    if unused:
        takes = ", ".join(mapping) or "no options"
        fail(f"{', '.join(unused)} do(es) not apply to {fmt} datasets (that format takes: {takes})")
    return {mapping[flag]: v for flag, v in given.items() if v is not None}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "eval"


@app.command("eval")
def eval_cmd(
    ckpt: Path | None = typer.Argument(None, help="A .boq checkpoint (or use --preset for an untrained model)."),
    dataset: Path = typer.Option(..., "--dataset", "-d", help="Benchmark directory."),
    format: str = typer.Option("auto", "--format", "-f",
                               help="auto, vpr-folder, vpr-bench, openvprlab or aligned."),
    preset: str | None = typer.Option(None, "--preset", "-p",
                                         help="Evaluate a preset's freshly built (untrained) model instead of CKPT."),
    backbone_weights: Path | None = typer.Option(None, help="With --preset: local ImageNet backbone weights."),
    seed: int = typer.Option(0, help="With --preset: seed for the random initialisation."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1),
    num_workers: int = typer.Option(2, "--num-workers", "-j", min=0, help="Image loading workers (0: inline)."),
    image_size: tuple[int, int] | None = typer.Option(None, help="Input H W (default: the model's)."),
    k: str = typer.Option("1,5,10,20", "--k", help="Recall@k values, comma-separated."),
    queries: str | None = typer.Option(None, help="aligned / vpr-folder: the query folder (aligned default: summer)."),
    database: str | None = typer.Option(
        None, help="aligned / vpr-folder: the database folder (aligned default: winter)."),
    tolerance: int | None = typer.Option(
        None, help="aligned: positives are database files within ±N files of the query (default 1)."),
    frames: str | None = typer.Option(
        None, help="aligned: keep frame numbers in START:STOP, e.g. 25000: (≥ 25000) or :25000 (< 25000)."),
    threshold: float | None = typer.Option(None, help="vpr-folder: positive distance in metres (default 25)."),
    set_name: str | None = typer.Option(None, help="openvprlab: which <name>_dbImages.npy set to read."),
    skip_corrupt: bool = typer.Option(False, "--skip-corrupt",
                                      help="Skip unreadable images (counted in the report) instead of stopping."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="JSON report path (default: eval_<model>_<data>.json)."),
    cache_dir: Path | None = typer.Option(
        None, help="Descriptor cache (default: $BOQ_EDGE_CACHE or ~/.cache/boq-edge)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Always extract; neither read nor write the cache."),
    device: str = typer.Option("cpu", help="torch device for the model."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Recall@k of a model on a place-recognition benchmark; prints a table and writes JSON."""
    from boq_edge.evaluate.cache import default_cache_dir

    ks = _parse_k(k)
    if (ckpt is None) == (preset is None):
        fail("give either a checkpoint file CKPT or --preset NAME (not both)")
    if backbone_weights is not None and preset is None:
        fail("--backbone-weights applies only with --preset (a checkpoint already has its weights)")
    bench = _read(dataset, format, queries, database, tolerance, frames, threshold, set_name)

    model, config, model_info, model_hash = _build_model(ckpt, preset, backbone_weights, seed)
    out = output or Path(f"eval_{_slug(model_info['name'])}_{_slug(bench.name)}.json")
    checked_output(out, inputs=[p for p in (ckpt, dataset) if p is not None], what="evaluation report")
    try:
        pre = config.preprocessing if image_size is None else config.preprocessing.with_size(*image_size)
    except ValueError as e:
        fail(f"--image-size: {e}")
    n_without = int(bench.queries_without_positives().size)
    console.print(f"[bold]{bench.name}[/] ({bench.format}): {bench.num_queries} queries, {bench.num_db} database "
                  f"images, {n_without} queries without positives; model {model_info['name']} "
                  f"({model_info['source']}), input {pre.height}×{pre.width} {pre.interpolation}", highlight=False)

    from boq_edge.evaluate.extract import torch_embed_fn
    from boq_edge.evaluate.run import evaluate_benchmark
    from boq_edge.preprocess import CorruptImageError

    try:
        report = evaluate_benchmark(
            torch_embed_fn(model, device), bench, pre, model_hash=model_hash, model_info=model_info, k_values=ks,
            batch_size=batch_size, num_workers=num_workers, skip_corrupt=skip_corrupt, progress=progress,
            cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
        )
    except CorruptImageError as e:
        fail(str(e))
    except (ValueError, OSError, RuntimeError) as e:
        fail(f"evaluation failed: {e}")

    _print_report(report)
    try:
        report.write_json(out)
    except OSError as e:
        fail(f"cannot write the report {out}: {e}")
    console.print(f"wrote {out}")


def _read(dataset: Path, format: str, queries: str | None, database: str | None, tolerance: int | None,
          frames: str | None, threshold: float | None, set_name: str | None):  # noqa: ANN202 - a Benchmark
    """The benchmark the flags describe, or one line and exit 2."""
    from boq_edge.data import FORMATS, detect_format, read_benchmark

    if format != "auto" and format not in FORMATS:
        fail(f"unknown --format {format!r}; choose auto or one of {', '.join(FORMATS)}")
    try:
        fmt = detect_format(dataset) if format == "auto" else format
        return read_benchmark(dataset, fmt, **_reader_options(fmt, queries, database, tolerance, frames, threshold,
                                                              set_name))
    except _READ_ERRORS as e:
        fail(str(e).strip("'\""))


def _build_model(ckpt: Path | None, preset: str | None, backbone_weights: Path | None,
                 seed: int) -> tuple[Any, Any, dict[str, Any], str]:
    """(model, config, description for the report, weights hash for the cache)."""
    import torch

    from boq_edge.evaluate.extract import state_dict_sha256
    from boq_edge.model import CheckpointError, build_model, get_preset, load_checkpoint

    try:
        if ckpt is not None:
            model, config, meta = load_checkpoint(ckpt)
            info = {"name": ckpt.stem, "source": str(ckpt), "preset": config.name,
                    "checkpoint_sha256": meta.get("checkpoint_sha256")}
            return model, config, info, f"ckpt:{meta.get('checkpoint_sha256') or state_dict_sha256(model)}"
        torch.manual_seed(seed)
        config = get_preset(preset)  # type: ignore[arg-type]
        model = build_model(config, backbone_weights)
        src = f"untrained preset, seed {seed}" + (f", backbone {backbone_weights.name}" if backbone_weights else
                                                   ", random backbone")
        info = {"name": config.name + ("-imagenet" if backbone_weights else "-random"), "source": src,
                "preset": config.name, "backbone_weights": str(backbone_weights) if backbone_weights else None,
                "seed": seed}
        return model, config, info, f"weights:{state_dict_sha256(model)}"
    except (CheckpointError, KeyError, ValueError, FileNotFoundError) as e:
        fail(str(e).strip("'\""))


def _print_report(report: Any) -> None:
    r = report.recall
    t = Table(title=f"Recall@k — {report.benchmark.name}", title_justify="left")
    t.add_column("k", justify="right")
    t.add_column("recall %", justify="right")
    t.add_column("over queries with positives %", justify="right")
    for kk in r.k_values:
        shown = f"{kk}" + (f" (→{r.k_clamped[kk]})" if kk in r.k_clamped else "")
        t.add_row(shown, f"{r.recalls[kk]:.2f}", f"{r.recalls_over_queries_with_positives[kk]:.2f}")
    console.print(t)
    q, db = report.queries, report.database
    cached = " (from cache: timing of the original run)" if q.from_cache and db.from_cache else ""
    console.print(f"queries evaluated {r.num_queries}, database {r.num_db}, "
                  f"without positives {r.num_queries_without_positives}, "
                  f"skipped unreadable: {len(q.skipped)} queries / {len(db.skipped)} database", highlight=False)
    console.print(f"extraction: {report.images_per_second:.1f} images/s "
                  f"(queries {q.images_per_second:.1f}, database {db.images_per_second:.1f}){cached}", highlight=False)
    if r.k_clamped:
        err_console.print(f"note: k > database size ({r.num_db}); clamped: "
                          + ", ".join(f"{a}→{b}" for a, b in r.k_clamped.items()), highlight=False)
    for p, reason in (q.skipped + db.skipped)[:5]:
        err_console.print(f"skipped {p}: {reason}", highlight=False)
