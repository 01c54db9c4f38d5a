"""INT8 accuracy on a trained model: PTQ vs QAT for every target, validated side by side in one run.

On the MobileNetV2 BoQ trained on Nordland frames < 25000 (``benchmarks/train_nordland.py``):

1. a calibration set of ``--calib`` images from the training frames (< 25000), the
   evaluation split (≥ 25000) excluded by content;
2. bundles through the public export stage: ONNX FP32 (the size reference), then INT8 by
   PTQ and by QAT (``--qat-epochs``) for OpenVINO, ONNX Runtime and TensorRT (its Q/DQ
   ONNX, run in ONNX Runtime where TensorRT is absent; every one passes ``lint-qdq``);
3. ``boq_edge.validate.validate`` of all bundles against the torch FP32 checkpoint on
   frames ≥ 25000 (summer queries → winter database, ±1 frame): R@1/5/10, drop in pp,
   cosine, latency (batch 1, ``--threads``), plus each model file's size vs the FP32 ONNX.

Run from the repository root:
    python benchmarks/int8_nordland.py --checkpoint runs/nordland-mnv2/best.boq
Writes benchmarks/results/int8-nordland-<date>.{json,md}; bundles and the full validation
report go to ``--work`` (default runs/int8-nordland).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from boq_edge.calibration import ValidationSpec

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data" / "nordland-64x32"
TRAIN_FRAMES, EVAL_FRAMES = ":25000", "25000:"


def variants(qat_epochs: int, max_r1_drop: float | None, val_frames: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, target, Int8Options fields without the calibration; None for FP32) — FP32 first."""
    out: list[tuple[str, str, dict[str, Any] | None]] = [("onnx-fp32", "onnx", None)]
    for target in ("openvino", "onnx", "tensorrt"):
        out.append((f"{target}-int8-ptq", target, {}))
    if qat_epochs > 0:  # the onnx row runs QAT's signed Q/DQ (the TensorRT file) in ONNX Runtime as its own bundle
        for target in ("openvino", "onnx", "tensorrt"):
            out.append((f"{target}-int8-qat", target, {"qat_epochs": qat_epochs}))
    if max_r1_drop is not None:
        val = ValidationSpec(DATA, "aligned", {"frames": val_frames})
        for target in ("openvino", "onnx", "tensorrt"):
            out.append((f"{target}-int8-ac", target, {"max_r1_drop": max_r1_drop, "validation": val}))
    return out  # type: ignore[return-value]


def model_bytes(bundle: Path) -> int:
    """Bytes of everything a runtime loads: for OpenVINO the topology ``.xml`` as well as the ``.bin``."""
    files = json.loads((bundle / "manifest.json").read_text())["files"]
    return sum((bundle / f).stat().st_size for f in files if f.endswith((".onnx", ".bin", ".xml", ".engine")))


def _secs(x: float) -> str:
    return "—" if x != x else f"{x:.0f}"  # NaN: a reused bundle


def _val_drop(r: dict[str, Any]) -> str:
    if r.get("val_r1_fp32") is None or r.get("val_r1_int8") is None:
        return "—"
    return f"{r['val_r1_fp32'] - r['val_r1_int8']:+.2f}"


def to_markdown(res: dict[str, Any]) -> str:
    ref = res["reference"]
    lines = [
        f"# INT8 on the Nordland-trained MobileNetV2 BoQ — {res['date']}",
        "",
        f"Command: `{res['command']}`",
        "",
        f"Checkpoint `{res['checkpoint']}`; evaluation on {res['benchmark']} (summer → winter, ±1 frame); "
        f"calibration: {res['calibration']['images']} training-frame images (sha256 "
        f"`{res['calibration']['sha256'][:12]}…`); QAT {res['qat_epochs']} epochs of label-free distillation; "
        f"accuracy control (`-ac`): budget {res['max_r1_drop']} pp on frames {res['val_frames']} (training frames). "
        f"Latency: batch 1, {res['threads']} threads, median of {res['latency_iters']} runs, in this process.",
        f"Machine: {res['system'].get('cpu')} ({res['system'].get('logical_cpus')} logical CPUs).",
        "",
        f"torch FP32 reference: R@1 **{ref['R@1']:.2f}**, R@5 {ref['R@5']:.2f}, R@10 {ref['R@10']:.2f}, "
        f"p50 {ref['p50_ms']:.2f} ms.",
        "",
        "| artifact | runtime | R@1 | ΔR@1 pp | R@5 | R@10 | cos mean | cos min | p50 ms | speedup | "
        "model MB | % of FP32 ONNX | float ops | val ΔR@1 pp | export s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['name']} | {r['backend']} | {r['R@1']:.2f} | {r['drop_pp']:+.2f} | {r['R@5']:.2f} | {r['R@10']:.2f} "
            f"| {r['cos_mean']:.4f} | {r['cos_min']:.4f} | {r['p50_ms']:.2f} | {r['speedup']:.2f}× "
            f"| {r['model_mb']:.2f} | {r['size_pct']:.1f}% | {r['float_ops']} | {_val_drop(r)} "
            f"| {_secs(r['export_s'])} |")
    for name, why in res.get("failed", {}).items():
        lines.append(f"| {name} | failed: {why[:300]} |" + " |" * 13)
    lines += ["", "ΔR@1 = torch FP32 − artifact (positive = lost). `float ops` = quantizable ops left in float "
              "(the attention MatMuls, the ill-conditioned first MobileNetV2 layers, plus what accuracy control "
              "reverted). `val ΔR@1` = the drop accuracy control measured on its validation split (training "
              "frames), next to the evaluation-split drop it is meant to predict. OpenVINO sizes include the "
              "topology .xml. "
              "The TensorRT rows are the Q/DQ ONNX that `build-engine` compiles, run "
              "in ONNX Runtime because TensorRT cannot be installed here."]
    return "\n".join(lines) + "\n"


def main() -> None:
    from boq_edge.calibration import (
        FewCalibrationImagesWarning,
        Int8Options,
        build_calibration_set,
        save_calibration_set,
    )
    from boq_edge.export.api import export_model
    from boq_edge.export.options import ExportOptions

    from boq_edge.bench import system_info
    from boq_edge.data import read_benchmark
    from boq_edge.validate import validate, write_report

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "runs/nordland-mnv2/best.boq")
    ap.add_argument("--calib", type=int, default=512, help="Calibration images from frames < 25000.")
    ap.add_argument("--qat-epochs", type=int, default=6, help="0 skips the QAT rows.")
    ap.add_argument("--max-r1-drop", type=float, default=0.5, help="Accuracy-controlled rows' budget (pp); "
                    "negative skips them.")
    ap.add_argument("--val-frames", default="10000:25000",
                    help="Validation split for accuracy control (training frames, never the evaluation split).")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--latency-iters", type=int, default=50)
    ap.add_argument("--work", type=Path, default=ROOT / "runs/int8-nordland")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    ap.add_argument("--reuse", action="store_true",
                    help="Keep bundles already in --work (export time not re-measured).")
    args = ap.parse_args()
    if not args.checkpoint.is_file():
        sys.exit(f"{args.checkpoint}: no checkpoint; train one with python benchmarks/train_nordland.py")

    bench = read_benchmark(DATA, "aligned", frames=EVAL_FRAMES)
    args.work.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewCalibrationImagesWarning)
        calib = build_calibration_set(DATA, args.calib, seed=0, format="aligned", options={"frames": TRAIN_FRAMES},
                                      exclude=[bench])
    calib = save_calibration_set(calib, args.work / "calibration.json")  # same seed: same set, same hash
    print(f"calibration: {len(calib)} images, sha256 {calib.content_hash()[:12]}", flush=True)

    bundles, export_s, failed = [], {}, {}
    budget = args.max_r1_drop if args.max_r1_drop >= 0 else None
    for name, target, int8 in variants(args.qat_epochs, budget, args.val_frames):
        out = args.work / name
        options = ExportOptions(target) if int8 is None else ExportOptions(
            target, "int8", int8=Int8Options(calibration=calib, **int8, log=lambda m: print("  " + m, flush=True)))
        if args.reuse and (out / "manifest.json").is_file():
            export_s[name] = float("nan")
            bundles.append(out)
            continue
        t0 = time.perf_counter()
        try:
            export_model(args.checkpoint, out, options, overwrite=True)
        except (RuntimeError, ValueError) as e:  # a missed budget or a refused model is a result, not a crash
            failed[name] = f"{type(e).__name__}: {e}"
            print(f"{name} failed: {failed[name]}", flush=True)
            continue
        export_s[name] = time.perf_counter() - t0
        print(f"exported {name} in {export_s[name]:.0f} s", flush=True)
        bundles.append(out)

    report = validate(bundles, args.checkpoint, bench, threads=args.threads, latency_iters=args.latency_iters,
                      backends={"tensorrt": "onnxruntime"}, progress=False)
    write_report(report, args.work / "validation")
    fp32_bytes = model_bytes(bundles[0])
    ref = report["reference"]["by_input"][0]
    rows = []
    for bundle, art in zip(bundles, report["artifacts"], strict=True):
        q = json.loads((bundle / "manifest.json").read_text()).get("quantization") or {}
        nbytes = model_bytes(bundle)
        rows.append({
            "name": bundle.name, "backend": art["runtime"].get("backend"), "method": q.get("method", "fp32"),
            "R@1": art["recall"]["1"], "R@5": art["recall"]["5"], "R@10": art["recall"]["10"],
            "drop_pp": art["recall_drop_pp"]["1"], "cos_mean": art["cosine"]["mean"],
            "cos_min": art["cosine"]["min"], "p50_ms": art["latency_ms"]["p50"], "speedup": art["speedup"],
            "model_mb": nbytes / 2**20, "size_pct": 100 * nbytes / fp32_bytes,
            "float_ops": len(q.get("float_ops") or []), "export_s": export_s[bundle.name],
            "scheme": q.get("scheme"), "qat_loss": (q.get("qat") or {}).get("loss_history"),
            "lint": q.get("lint"), "reverted_to_float": q.get("reverted_to_float"),
            "val_r1_fp32": q.get("r1_fp32"), "val_r1_int8": q.get("r1_int8"),
        })
    date = dt.date.today().isoformat()
    res = {
        "date": date, "command": "python benchmarks/int8_nordland.py " + shlex.join(sys.argv[1:]),
        "checkpoint": str(args.checkpoint), "benchmark": bench.name, "qat_epochs": args.qat_epochs,
        "max_r1_drop": budget, "val_frames": args.val_frames,
        "threads": args.threads, "latency_iters": args.latency_iters,
        "calibration": {"images": len(calib), "sha256": calib.content_hash(), "frames": TRAIN_FRAMES},
        "reference": {**{f"R@{k}": v for k, v in ref["recall"].items()}, "p50_ms": ref["latency_ms"]["p50"]},
        "system": system_info(), "rows": rows, "failed": failed,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"int8-nordland-{date}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    md = to_markdown(res)
    (args.out / f"int8-nordland-{date}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
