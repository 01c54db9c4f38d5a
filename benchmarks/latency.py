"""Latency of torch eager FP32 vs every CPU artifact of one preset: batch 1, N threads, median of >= 50 runs.

One command builds the model (random init, seed 0; MobileNetV2 gets the ImageNet backbone
from ../shared when present), writes a checkpoint and the ONNX / OpenVINO bundles in FP32
and FP16 through ``export_model``, then times each in its own fresh process (so thread
pools and caches of one runtime never colour another). Timing is
``boq_edge.bench.time_callable`` on one preprocessed batch; preprocessing is excluded
(it is the same numpy code for every row). The OpenVINO FP16 bundle is timed a second
time with bf16 inference — what the CPU plugin picks by itself on AMX/AVX512-BF16 CPUs —
to show what the explicit f32 setting costs.

Run: python benchmarks/latency.py [--preset resnet50-16384] [--threads 2] [--runs 50]
Writes benchmarks/results/latency-PRESET-DATE.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process: load one thing, time it, print JSON."""
    import numpy as np

    from boq_edge.bench import time_callable
    from boq_edge.runtime import load_runtime

    warnings.filterwarnings("ignore")
    threads = spec["threads"]
    if spec["kind"] == "torch":
        import torch
        from boq_edge.export.fold import fold

        from boq_edge.model import load_checkpoint

        torch.set_num_threads(threads)
        model, config, _ = load_checkpoint(spec["checkpoint"])
        if spec["folded"]:
            model = fold(model)
        h, w = config.image_size
        x = np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32)

        def fn(a: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(a)).numpy()

        info = {"backend": "torch", "precision": "fp32", "torch": torch.__version__, "folded": spec["folded"]}
    else:
        rt = load_runtime(spec["bundle"], threads=threads, **spec.get("options", {}))
        h, w = rt.input_size
        x = np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32)
        fn, info = rt, rt.info()
    stats = time_callable(fn, x, warmup=spec["warmup"], iters=spec["runs"])
    return {"info": info, "latency_ms": stats.to_dict()}


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['label']} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="resnet50-16384")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return
    if args.runs < 50:
        ap.error("--runs must be at least 50 (the issue's bar for a median)")

    import torch
    from boq_edge.export.api import export_model

    from boq_edge.bench import system_info
    from boq_edge.model import build_model, get_preset, save_checkpoint

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    config = get_preset(args.preset)
    weights = SHARED / "weights/mobilenetv2_imagenet_features.pt"
    use_weights = config.backbone == "mobilenetv2" and weights.is_file()
    model = build_model(config, weights if use_weights else None)
    common = {"threads": args.threads, "runs": args.runs, "warmup": args.warmup}
    rows = []
    with tempfile.TemporaryDirectory(prefix="boq-latency-") as tmp:
        ckpt = save_checkpoint(model, Path(tmp) / "model.boq", {"source": "benchmarks/latency.py"})
        specs: list[dict[str, Any]] = [
            {"label": "torch eager FP32", "kind": "torch", "checkpoint": str(ckpt), "folded": False},
            {"label": "torch eager FP32, folded", "kind": "torch", "checkpoint": str(ckpt), "folded": True},
        ]
        for target, fp16, label in (("onnx", False, "ONNX Runtime FP32"), ("onnx", True, "ONNX Runtime FP16"),
                                    ("openvino", False, "OpenVINO FP32"), ("openvino", True, "OpenVINO FP16")):
            bundle = export_model(ckpt, target, Path(tmp) / label.replace(" ", "-"), fp16=fp16)
            specs.append({"label": label, "kind": "bundle", "bundle": str(bundle)})
            print(f"exported {label}", flush=True)
        specs.append({"label": "OpenVINO FP16, bf16 inference (plugin default here)", "kind": "bundle",
                      "bundle": specs[-1]["bundle"], "options": {"inference_precision": "bf16"}})
        for spec in specs:
            r = _measure({**spec, **common})
            rows.append({"artifact": spec["label"], **r})
            print(f"{spec['label']:52s} p50 {r['latency_ms']['p50']:8.2f} ms", flush=True)

    base = rows[0]["latency_ms"]["p50"]
    stamp = dt.date.today().isoformat()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "preset": config.name,
              "input": list(config.image_size), "batch": 1, "threads": args.threads, "runs": args.runs,
              "warmup": args.warmup, "weights": "ImageNet backbone" if use_weights else "random init (seed 0)",
              "system": system_info(), "rows": rows}
    stem = f"latency-{config.name}-{stamp}"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    sysinfo = report["system"]
    lines = [f"{config.name} at {config.image_size[0]}×{config.image_size[1]}, batch 1, {args.threads} threads, "
             f"median of {args.runs} runs after {args.warmup} warm-up; {sysinfo['cpu']} "
             f"({', '.join(sysinfo['cpu_flags'])}).", "",
             "| artifact | precision | p50 ms | p90 ms | mean ± std ms | speedup vs torch eager |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lat, info = r["latency_ms"], r["info"]
        prec = info.get("precision", "?")
        if info.get("inference_precision"):
            prec += f", CPU {info['inference_precision']}"
        lines.append(f"| {r['artifact']} | {prec} | {lat['p50']:.2f} | {lat['p90']:.2f} | "
                     f"{lat['mean']:.2f} ± {lat['std']:.2f} | {base / lat['p50']:.2f}× |")
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
