"""Folding on every preset at its inference size: parameters removed, max |Δ|, ONNX nodes.

Run: python benchmarks/fold_report.py  (≈2 min on 2 cores; writes benchmarks/results/fold-DATE.{json,md})
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import warnings
from pathlib import Path

import torch
from boq_edge.export.fold import fold, fold_report, folding_check

from boq_edge.model import PRESETS, build_model

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
IMAGES = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared/data/nordland-64x32/winter"


def main() -> None:
    torch.manual_seed(0)
    rows = {}
    for name in PRESETS:
        model = build_model(name)
        folded = fold(model)
        rep = fold_report(model, folded)
        rows[name] = {"params_before": rep.params_before, "params_after": rep.params_after,
                      "params_removed": rep.params_removed, "constants_added": rep.constants_added,
                      **folding_check(model, folded, images=str(IMAGES), max_images=16, onnx_nodes=True)}
        print(name, rows[name], flush=True)
    stamp = dt.date.today().isoformat()
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"fold-{stamp}.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| preset | params before | params after | removed | max abs diff random | max abs diff 16 Nordland "
             "| ONNX nodes unfolded | ONNX nodes folded |", "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        real = next(v for k, v in r.items() if k.startswith("max |Δ|") and "real" in k)
        lines.append(f"| {name} | {r['params_before']:,} | {r['params_after']:,} | {r['params_removed']:,} "
                     f"| {r['max |Δ| random inputs']:.2e} | {real:.2e} | {r['ONNX nodes unfolded']} "
                     f"| {r['ONNX nodes folded']} |")
    (out / f"fold-{stamp}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
