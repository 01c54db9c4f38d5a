"""Data-parallel training under torchrun: 2 CPU processes with gloo, both step, rank 0 alone writes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from boq_edge.model import load_checkpoint


def _make_aligned(root: Path, frames: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for i in range(1, frames + 1):
        base = rng.integers(0, 255, (8, 16, 3))
        for t in ("summer", "winter"):
            img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
            (root / t).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / t / f"images-{i * 10:05d}.png")
    return root


def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    data = _make_aligned(tmp_path / "data")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "boq_edge.cli",
           "train", "--preset", "mobilenetv2-edge", "--data", str(data), "--format", "aligned",
           "--image-size", "32", "32", "--epochs", "2", "--batch-places", "4", "--num-workers", "0",
           "--threads", "1", "--log-every-steps", "1", "--no-progress", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    # 16 places / (4 places × 2 ranks) = 2 steps per epoch, 2 epochs: both ranks log steps 1…4.
    for rank in (0, 1):
        steps = sorted(int(s) for s in re.findall(rf"\[rank {rank}\] epoch \d+ step (\d+) loss", log))
        assert steps == [1, 2, 3, 4], (rank, log[-3000:])
    written = sorted(p.name for p in out.iterdir())
    assert written == ["config.json", "last.boq", "last.state.pt", "metrics.csv"]  # one checkpoint, no --val
    _, _, meta = load_checkpoint(out / "last.boq")
    assert meta["world_size"] == 2 and meta["epochs_completed"] == 2 and meta["global_step"] == 4
