"""On-device latency benchmarking, torch-free.

Each bundle is measured in its own fresh process so that its load time and peak memory
are its own, not those of whatever ran before it in the same interpreter. Latency is the
wall time of one ``runtime(batch)`` call on an already-preprocessed batch (preprocessing
is the same numpy code for every backend, so it is measured once, separately).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    batch: int
    runs: int
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    max: float

    @property
    def throughput(self) -> float:
        """Images per second at the median latency."""
        return self.batch * 1000.0 / self.p50 if self.p50 > 0 else float("nan")

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "throughput_ips": round(self.throughput, 2)}


def time_callable(fn: Callable[[np.ndarray], Any], x: np.ndarray, warmup: int = 5, iters: int = 50,
                  min_time: float = 0.0) -> LatencyStats:
    """Time ``fn(x)`` after ``warmup`` calls: at least ``iters`` runs and at least ``min_time`` seconds."""
    if iters < 1:
        raise ValueError("iters must be at least 1")
    for _ in range(warmup):
        fn(x)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < iters or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t0) * 1000.0)
    q = np.percentile(np.asarray(times), [50, 90, 99])
    return LatencyStats(
        batch=int(x.shape[0]), runs=len(times), p50=float(q[0]), p90=float(q[1]), p99=float(q[2]),
        mean=statistics.fmean(times), std=statistics.pstdev(times), min=min(times), max=max(times))


def peak_rss_mb() -> float:
    """Peak resident set size of this process's own address space.

    Linux: ``VmHWM`` from /proc, which starts afresh at exec. ``ru_maxrss`` does not: it
    carries over the parent's peak through fork+exec, so a benchmark launched from a big
    process (torch loaded) would report the parent's memory as the bundle's.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except OSError:
        return float("nan")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def system_info() -> dict[str, Any]:
    """CPU model and the flags that decide INT8 speed, runtime versions, GPU and power mode if readable."""
    cpu_model, flags = platform.processor() or "unknown", set[str]()
    cpuinfo = _read("/proc/cpuinfo") or ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and cpu_model in ("unknown", "", platform.machine()):
            cpu_model = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = set(value.split())
    interesting = ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8",
                   "amx_bf16", "asimd", "asimddp", "i8mm", "sve"]
    info: dict[str, Any] = {
        "cpu": cpu_model,
        "cpu_flags": [f for f in interesting if f in flags],
        "logical_cpus": os.cpu_count(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {d: v for d in ("boq-edge", "numpy", "onnxruntime", "openvino", "tensorrt", "torch", "nncf")
                     if (v := _version(d))},
    }
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    if governor:
        info["cpu_governor"] = governor
    nvpmodel = _read("/etc/nvpmodel.conf")  # Jetson: the active power mode is in the status file
    status = _read("/var/lib/nvpmodel/status")
    if nvpmodel and status:
        info["power_mode"] = status
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,power.limit",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            info["gpus"] = [line.strip() for line in out.stdout.strip().splitlines()]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


def bench_bundle_inprocess(bundle: str | os.PathLike, backend: str | None = None, batch: int = 1,
                           threads: int | None = None, warmup: int = 5, iters: int = 50,
                           min_time: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """Load one bundle and time it here; meant to run in a fresh process (see :func:`bench_bundle`)."""
    from boq_edge.runtime import load_runtime

    rss_before = current_rss_mb()
    t0 = time.perf_counter()
    rt = load_runtime(bundle, backend=backend, threads=threads)
    load_s = time.perf_counter() - t0
    rss_loaded = current_rss_mb()
    h, w = rt.input_size
    x = np.random.default_rng(seed).standard_normal((batch, 3, h, w)).astype(np.float32)
    stats = time_callable(rt, x, warmup=warmup, iters=iters, min_time=min_time)
    return {
        "bundle": str(bundle),
        "runtime": rt.info(),
        "batch": batch,
        "threads": threads,
        "load_seconds": round(load_s, 3),
        "rss_mb": {"before_load": round(rss_before, 1), "after_load": round(rss_loaded, 1),
                   "peak": round(peak_rss_mb(), 1)},
        "latency_ms": stats.to_dict(),
    }


def bench_bundle(bundle: str | os.PathLike, backend: str | None = None, batch: int = 1, threads: int | None = None,
                 warmup: int = 5, iters: int = 50, min_time: float = 0.0, timeout: float | None = None
                 ) -> dict[str, Any]:
    """Benchmark one bundle in a fresh Python process and return its measurements."""
    args = {"bundle": str(bundle), "backend": backend, "batch": batch, "threads": threads, "warmup": warmup,
            "iters": iters, "min_time": min_time}
    proc = subprocess.run([sys.executable, "-m", "boq_edge.bench", json.dumps(args)], capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"benchmark of {bundle} failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worker() -> None:
    args = json.loads(sys.argv[1])
    result = bench_bundle_inprocess(**args)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    _worker()
