"""The training must-show: MobileNetV2 edge preset on nordland-64x32, timed, then re-evaluated independently.

Runs the exact ``boq-edge train`` command below in a subprocess (wall time measured
around the whole process, start-up included), then evaluates the resulting ``best.boq``
with ``boq-edge eval`` — the evaluation stage's own code, not the training validator —
on frames ≥ 25000 (summer queries → winter database, ±1 file). Writes
``benchmarks/results/training-nordland-mnv2-DATE.{json,md}``.

Run from the repository root: python benchmarks/train_nordland.py [--out runs/nordland-mnv2]
The 1-minute load average before and after is recorded: the machine is shared, and
wall time scales with what else runs on its two cores.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path("../shared")


def train_command(out: str) -> list[str]:
    return [
        "boq-edge", "train", "--preset", "mobilenetv2-edge",
        "--backbone-weights", str(SHARED / "weights/mobilenetv2_imagenet_features.pt"),
        "--data", str(SHARED / "data/nordland-64x32"), "--format", "aligned", "--frames", ":25000",
        "--val", str(SHARED / "data/nordland-64x32"), "--val-frames", "25000:",
        "--image-size", "64", "128", "--trainable-stages", "7",
        "--epochs", "20", "--batch-places", "64", "--lr", "6e-4", "--warmup-epochs", "0.5",
        "--lr-step-epochs", "8", "--max-minutes", "15", "--seed", "0",
        "--out", out, "--no-progress",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/nordland-mnv2")
    args = ap.parse_args()
    cmd = train_command(args.out)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, text=True, capture_output=True)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()[0]
    sys.stderr.write(proc.stderr[-4000:])
    if proc.returncode:
        sys.exit(f"training failed ({proc.returncode})")
    run = Path(args.out)
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    report_json = run / "eval-best.json"
    ev = subprocess.run(["boq-edge", "eval", str(run / "best.boq"), "--dataset", str(SHARED / "data/nordland-64x32"),
                         "--format", "aligned", "--frames", "25000:", "--k", "1,5,10", "--no-cache",
                         "--output", str(report_json)], text=True, capture_output=True)
    if ev.returncode:
        sys.exit(f"evaluation failed: {ev.stderr[-2000:]}")
    recalls = json.loads(report_json.read_text())["recall"]["recalls"]
    best = max(rows, key=lambda r: float(r["R@1"] or 0))
    result = {
        "date": dt.date.today().isoformat(), "command": shlex.join(cmd), "wall_seconds": round(wall, 1),
        "load_average_1min": {"before": load_before, "after": load_after}, "epochs_run": len(rows),
        "best_epoch": int(best["epoch"]),
        "validation_recalls_best": {k: float(best[k]) for k in ("R@1", "R@5", "R@10")},
        "eval_recalls_best_boq": recalls, "best_checkpoint": str(run / "best.boq"), "metrics": rows,
    }
    out_dir = Path("benchmarks/results")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"training-nordland-mnv2-{result['date']}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Training must-show, {result['date']}", "", "```bash", result["command"], "```", "",
        f"- wall time (whole process): **{wall / 60:.1f} min** ({wall:.0f} s); 1-min load average "
        f"{load_before:.1f} before, {load_after:.1f} after (2 cores, shared)",
        f"- epochs run: {len(rows)}; best epoch {result['best_epoch']}",
        "- `boq-edge eval best.boq` on frames ≥ 25000 (summer → winter, ±1 file): "
        + ", ".join(f"R@{k} **{float(v):.2f}**" for k, v in recalls.items()),
        "", "| epoch | loss | batch acc | R@1 | R@5 | R@10 | epoch s |", "|---|---|---|---|---|---|---|",
        *[f"| {r['epoch']} | {r['loss']} | {r['batch_accuracy']} | {r['R@1']} | {r['R@5']} | {r['R@10']} | "
          f"{r['epoch_seconds']} |" for r in rows],
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
