"""The side-by-side latency matrix for one preset, measured in one run on one machine.

Rows:
- torch eager FP32, the model as the official repository runs it (unfolded);
- a plain hand export: ``torch.onnx.export`` of the unfolded model → ONNX Runtime FP32;
- OpenVINO FP32 from that hand ONNX with default compile settings;
- OpenVINO INT8 with NNCF PTQ defaults, as a user would do it by hand;
- every boq-edge artifact: ONNX FP32/FP16, OpenVINO FP32/FP16, and the INT8 bundles
  (OpenVINO, ONNX Runtime, the TensorRT QDQ ONNX run in ONNX Runtime) when the INT8
  stage is available.
Batch 1 (``--batch``), ``--threads`` threads, median of ``--iters`` runs after warm-up.
boq-edge bundles are timed in a fresh process each (``boq_edge.bench.bench_bundle``), so
their load time and peak RSS are their own. Weights are random (seed 0) unless
``--checkpoint`` is given: latency does not depend on weight values.

Run: nox -s benchmarks -- --preset resnet50-16384   (or python benchmarks/run.py ...)
Writes benchmarks/results/matrix-<preset>-<date>.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TRT_ENGINE_LABEL = "boq-edge TensorRT INT8 engine"
TRT_ORT_LABEL = "boq-edge TensorRT QDQ INT8 (run in ONNX Runtime)"


def _calibration_images(n: int) -> list[Path]:
    """Training-split Nordland frames (< 25000) for the hand PTQ baseline; never the evaluation split."""
    files = [p for p in sorted((SHARED / "data/nordland-64x32/summer").glob("images-*.png"))
             if int(p.stem.split("-")[1]) < 25000 and p.stat().st_size > 200]
    return files[:: max(1, len(files) // n)][:n]


def _row(name: str, kind: str, stats: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "latency_ms": stats, **extra}


def hand_baselines(model: Any, size: tuple[int, int], threads: int, batch: int, warmup: int, iters: int,
                   calib: np.ndarray, tmp: Path) -> list[dict[str, Any]]:
    """What a user gets without boq-edge: eager torch, a plain ONNX export, OpenVINO, NNCF PTQ defaults."""
    import nncf
    import onnxruntime as ort
    import openvino as ov
    import torch

    from boq_edge.bench import time_callable

    torch.set_num_threads(threads)
    x = np.random.default_rng(0).standard_normal((batch, 3, *size)).astype(np.float32)
    rows = []

    def eager(a: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(a)).numpy()

    rows.append(_row("torch eager FP32 (official model)", "baseline",
                     time_callable(eager, x, warmup, iters).to_dict()))

    onnx_path = tmp / "hand.onnx"
    torch.onnx.export(model, (torch.from_numpy(x),), str(onnx_path), dynamo=True, opset_version=18,
                      external_data=False, verbose=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    rows.append(_row("hand export → ONNX Runtime FP32", "baseline",
                     time_callable(lambda a: sess.run(None, {name: a})[0], x, warmup, iters).to_dict(),
                     file_mb=round(onnx_path.stat().st_size / 2**20, 2)))

    core = ov.Core()
    ov_model = ov.convert_model(str(onnx_path))
    compiled = core.compile_model(ov_model, "CPU", {"INFERENCE_NUM_THREADS": threads})
    rows.append(_row("hand ONNX → OpenVINO FP32 (default hints)", "baseline",
                     time_callable(lambda a: compiled(a)[0], x, warmup, iters).to_dict(),
                     inference_precision=str(compiled.get_property("INFERENCE_PRECISION_HINT"))))

    q_model = nncf.quantize(ov_model, nncf.Dataset([c[None] for c in calib]), subset_size=len(calib))
    compiled_q = core.compile_model(q_model, "CPU", {"INFERENCE_NUM_THREADS": threads})
    ov.save_model(q_model, str(tmp / "hand_int8.xml"))
    rows.append(_row("hand OpenVINO + NNCF PTQ defaults INT8", "baseline",
                     time_callable(lambda a: compiled_q(a)[0], x, warmup, iters).to_dict(),
                     file_mb=round(sum((tmp / f"hand_int8.{e}").stat().st_size for e in ("xml", "bin")) / 2**20, 2)))
    return rows


def boq_edge_bundles(source: Any, tmp: Path, size: tuple[int, int], calibration: Any | None
                     ) -> list[tuple[str, Path, str | None]]:
    """(label, bundle, backend to time it with — None: the target's own) for every boq-edge variant.

    INT8 bundles are PTQ with each target's default placement, over ``calibration`` (None: no INT8 rows).
    """
    from boq_edge.calibration import Int8Options
    from boq_edge.export.api import export_model
    from boq_edge.export.options import ExportOptions
    from boq_edge.export.targets.tensorrt import tensorrt_status

    def opts(target: str, precision: str = "fp32") -> ExportOptions:
        int8 = Int8Options(calibration=calibration) if precision == "int8" else None
        return ExportOptions(target, precision, int8=int8, image_size=size, batch_range=(1, 1, 8))

    variants: list[tuple[str, ExportOptions, str | None]] = [
        ("boq-edge ONNX FP32", opts("onnx"), None), ("boq-edge ONNX FP16", opts("onnx", "fp16"), None),
        ("boq-edge OpenVINO FP32", opts("openvino"), None), ("boq-edge OpenVINO FP16", opts("openvino", "fp16"), None),
    ]
    if calibration is not None:
        engine = tensorrt_status()[0]  # without TensorRT the same Q/DQ ONNX is timed by ONNX Runtime
        variants += [("boq-edge OpenVINO INT8", opts("openvino", "int8"), None),
                     ("boq-edge ONNX Runtime INT8", opts("onnx", "int8"), None),
                     (TRT_ENGINE_LABEL if engine else TRT_ORT_LABEL, opts("tensorrt", "int8"),
                      None if engine else "onnxruntime")]
    out = []
    for label, options, backend in variants:
        d = tmp / label.replace(" ", "_").replace("(", "").replace(")", "")
        export_model(source, d, options)
        out.append((label, d, backend))
    return out


def to_markdown(result: dict[str, Any]) -> str:
    s = result["system"]
    lines = [
        f"# Latency matrix — {result['preset']} at {result['input'][0]}×{result['input'][1]}, batch {result['batch']}, "
        f"{result['threads']} threads",
        "",
        f"Measured {result['date']} on {s.get('cpu')} ({s.get('logical_cpus')} logical CPUs, flags: "
        f"{', '.join(s.get('cpu_flags', [])) or 'n/a'}); versions: "
        + ", ".join(f"{k} {v}" for k, v in s.get("versions", {}).items()) + ".",
        f"Median of ≥ {result['iters']} runs after {result['warmup']} warm-up runs. Command: `{result['command']}`.",
        "",
        "| variant | p50 ms | p90 ms | p99 ms | speedup vs torch eager | model MB | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    base = result["rows"][0]["latency_ms"]["p50"]
    for r in result["rows"]:
        lat = r["latency_ms"]
        rss = r.get("rss_mb", {}).get("peak")
        speedup = base / lat["p50"]
        lines.append(f"| {r['name']} | {lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | {speedup:.2f}× "
                     f"| {r.get('file_mb', '')} | {rss if rss is not None else ''} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import sys

    import torch
    from boq_edge.calibration import calibration_set_from_paths

    from boq_edge.bench import bench_bundle, system_info
    from boq_edge.model import build_model, get_preset, load_checkpoint
    from boq_edge.preprocess import preprocess_batch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="resnet50-16384")
    ap.add_argument("--checkpoint", type=Path, help="Use this .boq instead of random weights.")
    ap.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="Default: the model's.")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--calib", type=int, default=128, help="Calibration images (Nordland frames < 25000).")
    ap.add_argument("--no-int8", action="store_true", help="Skip the INT8 bundles.")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()

    source: Any
    if args.checkpoint:
        model, config, _ = load_checkpoint(args.checkpoint)
        source = args.checkpoint
        size = tuple(args.image_size) if args.image_size else config.image_size
    else:
        config = get_preset(args.preset)
        size = tuple(args.image_size) if args.image_size else config.image_size
        torch.manual_seed(0)
        model = build_model(config.with_image_size(*size))
        source = model
    calib_paths = _calibration_images(args.calib)
    calib = preprocess_batch(calib_paths, config.preprocessing.with_size(*size))

    calibration = None if args.no_int8 else calibration_set_from_paths(calib_paths)

    with tempfile.TemporaryDirectory(prefix="boq-bench-") as t:
        tmp = Path(t)
        rows = hand_baselines(model.eval(), size, args.threads, args.batch, args.warmup, args.iters, calib, tmp)
        for label, bundle, backend in boq_edge_bundles(source, tmp, size, calibration):
            r = bench_bundle(bundle, backend=backend, batch=args.batch, threads=args.threads, warmup=args.warmup,
                             iters=args.iters)
            files = json.loads((bundle / "manifest.json").read_text()).get("files", {})
            # everything the runtime loads: for OpenVINO the topology .xml as well as the .bin
            model_files = [f for f in files if f.endswith((".onnx", ".bin", ".xml", ".engine"))]
            mb = sum((bundle / f).stat().st_size for f in model_files) / 2**20
            rows.append(_row(label, "boq-edge", r["latency_ms"], file_mb=round(mb, 2), rss_mb=r["rss_mb"],
                             load_seconds=r["load_seconds"], runtime=r["runtime"]))
            print(f"{label}: p50 {r['latency_ms']['p50']:.2f} ms", flush=True)
    date = dt.date.today().isoformat()
    result = {"preset": config.name, "input": list(size), "batch": args.batch, "threads": args.threads,
              "iters": args.iters, "warmup": args.warmup, "date": date, "system": system_info(),
              "command": "python benchmarks/run.py " + " ".join(sys.argv[1:]), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"matrix-{config.name}-{size[0]}x{size[1]}-b{args.batch}-{date}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    md = to_markdown(result)
    stem.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
