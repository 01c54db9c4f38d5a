"""Descriptor parity of exported bundles vs the torch FP32 model, on real Nordland images.

For each preset: export ONNX and OpenVINO bundles in FP32 and FP16 with
``boq_edge.export.api.export_model`` (the shipped path: fold → emit → manifest), run them
through ``boq_edge.runtime`` with the manifest's preprocessing, and report the minimum
cosine to the *unfolded* torch FP32 model over the batch (so folding is inside the
measurement). The ONNX FP32 bundle is also run at batch 1 and 3 to prove the dynamic
batch axis. MobileNetV2 uses the ImageNet backbone weights from ../shared; ResNet-50 and
DINOv2 are randomly initialised (seed 0) — no official weights can be downloaded here.

Run: python benchmarks/parity.py [--presets P ...] [--images 16] [--threads 2]
Writes benchmarks/results/parity-DATE.{json,md}. Takes ~15 min on 2 cores for all three presets.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from boq_edge.export.api import export_model
from boq_edge.export.options import ExportOptions, Precision

from boq_edge.model import build_model, get_preset
from boq_edge.preprocess import preprocess_batch
from boq_edge.runtime import load_runtime

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PRESETS = ("resnet50-16384", "dinov2-12288", "mobilenetv2-2048")
VARIANTS = (("onnx", False), ("onnx", True), ("openvino", False), ("openvino", True))


def nordland_images(n: int) -> list[Path]:
    """n frames from the evaluation split (>= 25000), half summer, half winter, blank files skipped."""
    out: list[Path] = []
    for season in ("summer", "winter"):
        files = [p for p in sorted((SHARED / "data/nordland-64x32" / season).glob("images-*.png"))
                 if int(p.stem.split("-")[1]) >= 25000 and p.stat().st_size > 200]
        step = max(1, len(files) // (n // 2))
        out.extend(files[::step][: n // 2])
    return out


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def run_preset(name: str, files: list[Path], threads: int, tmp: Path) -> dict:
    torch.manual_seed(0)
    config = get_preset(name)
    weights = SHARED / "weights/mobilenetv2_imagenet_features.pt" if config.backbone == "mobilenetv2" else None
    model = build_model(config, weights)
    x = preprocess_batch(files, config.preprocessing)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    row: dict = {"preset": name, "input": list(config.image_size), "descriptor_dim": config.descriptor_dim,
                 "weights": "ImageNet backbone (shared/weights)" if weights else "random init (seed 0)",
                 "images": len(files), "results": {}}
    for target, fp16 in VARIANTS:
        key = f"{target} {'fp16' if fp16 else 'fp32'}"
        t0 = time.perf_counter()
        bundle = export_model(model, tmp / f"{name}-{key.replace(' ', '-')}",
                              ExportOptions(target, Precision.from_flags(fp16=fp16)), overwrite=True)
        export_s = time.perf_counter() - t0
        rt = load_runtime(bundle, threads=threads)
        out = rt(x)
        info = rt.info()
        res = {"cosine_min": cosine_min(out, ref), "export_seconds": round(export_s, 1), "backend": info["backend"]}
        if "inference_precision" in info:  # OpenVINO reports what the compiled model runs in
            res["inference_precision"] = info["inference_precision"]
        if (target, fp16) == VARIANTS[0]:  # dynamic batch: batch 1 and 3 give the batch-16 answers
            res["max_abs_diff_batch1_batch3"] = float(max(np.abs(rt(x[:1]) - out[:1]).max(),
                                                          np.abs(rt(x[1:4]) - out[1:4]).max()))
        row["results"][key] = res
        print(f"{name:18s} {key:14s} cos min {res['cosine_min']:.7f}  (export {export_s:.0f}s)", flush=True)
        del rt
    return row


def write(rows: list[dict], out_dir: Path) -> None:
    stamp = dt.date.today().isoformat()
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "reference": "unfolded torch FP32 model, eager, CPU", "presets": rows}
    (out_dir / f"parity-{stamp}.json").write_text(json.dumps(meta, indent=2) + "\n")
    keys = [f"{t} {'fp16' if f else 'fp32'}" for t, f in VARIANTS]
    lines = [f"Min cosine to torch FP32 (unfolded), {rows[0]['images']} Nordland images (eval split, summer+winter)."
             " Pass: FP32 >= 0.99999, FP16 >= 0.999.", "",
             "| preset | input | weights | " + " | ".join(keys) + " |", "|---" * (3 + len(keys)) + "|"]
    for r in rows:
        cells = [f"{r['results'][k]['cosine_min']:.7f}" for k in keys]
        size = f"{r['input'][0]}×{r['input'][1]}"
        lines.append(f"| {r['preset']} | {size} | {r['weights']} | " + " | ".join(cells) + " |")
    (out_dir / f"parity-{stamp}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=list(PRESETS))
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    files = nordland_images(args.images)
    with tempfile.TemporaryDirectory(prefix="boq-parity-") as tmp:
        rows = [run_preset(p, files, args.threads, Path(tmp)) for p in args.presets]
    write(rows, args.out)


if __name__ == "__main__":
    main()
