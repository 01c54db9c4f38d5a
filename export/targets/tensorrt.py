"""Target ``tensorrt``: the ONNX a TensorRT engine is built from, and the engine (built on the device).

Engines are tied to one GPU model and one TensorRT version, so they are built where they
run: ``boq-edge build-engine BUNDLE`` calls :func:`build_engine_for_bundle`; at export the
engine is built only where TensorRT and a GPU are present, else the bundle is written
"engine pending". This module is torch-free (the device imports it).

Precision lives in the ONNX graph, never in builder flags: the network is strongly typed
(TensorRT 10: ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``; TensorRT 11: always, the
weak-typing flags such as ``BuilderFlag.FP16`` are gone). An FP32 bundle's ONNX builds an
FP32 engine (TF32 off unless asked), an FP16 bundle carries the mixed-precision FP16 ONNX,
an INT8 bundle an explicit Q/DQ ONNX (signed INT8, zero-point 0, per-channel weights,
Q/DQ only on Conv/MatMul/Gemm inputs; :mod:`boq_edge.calibration.qdq_tensorrt`), checked by
``lint-qdq`` before it is written. No implicit calibrator, ever. One optimization profile
covers the bundle's batch range; the workspace is limited; a timing cache is reused and
saved beside the engine.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from boq_edge.export.onnx_export import ONNX_FILE, ExportError
from boq_edge.export.targets.onnx import OnnxTarget

from boq_edge.fileio import atomic_write_bytes
from boq_edge.runtime.manifest import (
    ROLE_ENGINE,
    ROLE_ONNX,
    ROLE_TIMING_CACHE,
    BundleError,
    Manifest,
    read_manifest,
)
from boq_edge.runtime.tensorrt_backend import INSTALL_HINT, import_tensorrt

if TYPE_CHECKING:
    from boq_edge.calibration.pipeline import Int8Job, Int8Outcome
    from boq_edge.export.bundle import ManifestDraft
    from boq_edge.export.options import ExportOptions

ENGINE_FILE = "model.engine"
TIMING_CACHE_FILE = "timing.cache"
SECTION = "tensorrt"  # this target's manifest section: engine state, build info


@dataclass(frozen=True)
class TensorRTOptions:
    """Engine build settings; at export, ``build_engine`` says whether to build now (None: where possible).

    ``batch_range`` and ``input_name`` are the bundle's own: :func:`build_engine_for_bundle`
    takes them from the manifest (they are here for :func:`build_engine` on a bare ONNX file).
    """

    batch_range: tuple[int, int, int] = (1, 1, 8)
    input_name: str = "images"
    workspace_gib: float = 4.0
    timing_cache: Path | None = None  # extra cache file to read and update (e.g. shared across bundles)
    tf32: bool = False
    builder_optimization_level: int | None = None
    verbose: bool = False
    build_engine: bool | None = None
    flags: ClassVar[str] = "TensorRTOptions (--workspace-gib, --build-engine)"


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str


def cuda_gpu() -> GpuInfo | None:
    """The first CUDA GPU via the driver library (no torch, no cuda-python); None if there is none."""
    for lib in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(lib)
            break
        except OSError:
            continue
    else:
        return None
    count, dev = ctypes.c_int(0), ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return None
    cuda.cuDeviceGet(ctypes.byref(dev), 0)
    name = ctypes.create_string_buffer(256)
    cuda.cuDeviceGetName(name, 256, dev)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # ..._MINOR
    return GpuInfo(name.value.decode(errors="replace"), f"{major.value}.{minor.value}")


def tensorrt_status() -> tuple[bool, str]:
    """(True, 'TensorRT x on GPU') when an engine can be built here, else (False, why)."""
    try:
        trt = import_tensorrt()
    except ImportError:
        return False, f"TensorRT is not installed here ({INSTALL_HINT})"
    gpu = cuda_gpu()
    if gpu is None:
        return False, f"TensorRT {trt.__version__} is installed but no CUDA GPU was found"
    return True, f"TensorRT {trt.__version__} on {gpu.name} (sm {gpu.compute_capability})"


def _major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def build_engine(onnx_path: str | os.PathLike, options: TensorRTOptions,
                 timing_cache: bytes = b"") -> tuple[bytes, bytes, dict[str, Any]]:
    """Build a serialized plan from an ONNX file: (plan, timing cache, build info)."""
    trt = import_tensorrt()
    gpu = cuda_gpu()
    if gpu is None:
        raise RuntimeError("no CUDA GPU found: TensorRT engines must be built on the NVIDIA GPU device that runs them")

    class _Logger(trt.ILogger):  # type: ignore[name-defined]  # keeps errors so a failed build can say why
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(msg)
            if options.verbose or severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                print(f"[TensorRT] {msg}", flush=True)

    logger = _Logger()
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None and _major(trt.__version__) < 11:  # 11.x: always strongly typed
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError(f"TensorRT could not parse {Path(onnx_path).name}: " + "; ".join(errors or logger.errors))

    inp = network.get_input(0)
    if inp.name != options.input_name:
        raise RuntimeError(f"ONNX input is {inp.name!r}, expected {options.input_name!r}")
    chw = tuple(int(d) for d in inp.shape)[1:]
    lo, opt, hi = options.batch_range
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gib * (1 << 30)))
    if not options.tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # FP32 means FP32; TF32 matmuls cost ~1e-3 relative error
    if options.builder_optimization_level is not None:
        config.builder_optimization_level = int(options.builder_optimization_level)
    profile = builder.create_optimization_profile()
    profile.set_shape(options.input_name, (lo, *chw), (opt, *chw), (hi, *chw))
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache)
    config.set_timing_cache(cache, ignore_mismatch=False)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT engine build failed: " + ("; ".join(logger.errors) or "see the log above"))
    plan_bytes = bytes(memoryview(plan))
    if trt.Runtime(logger).deserialize_cuda_engine(plan_bytes) is None:
        raise RuntimeError("TensorRT built a plan it cannot deserialize: " + "; ".join(logger.errors))
    cache_bytes = bytes(memoryview(config.get_timing_cache().serialize()))
    info = {
        "engine": "built", "version": trt.__version__, "gpu": gpu.name, "compute_capability": gpu.compute_capability,
        "strongly_typed": True, "tf32": options.tf32, "workspace_gib": options.workspace_gib,
        "profile": {"min": [lo, *chw], "opt": [opt, *chw], "max": [hi, *chw]},
        "builder_optimization_level": options.builder_optimization_level,
    }
    return plan_bytes, cache_bytes, info


def build_engine_command(bundle_dir: str | os.PathLike) -> str:
    """The exact command to run on the GPU device for a TensorRT-ready bundle."""
    return f"boq-edge build-engine {bundle_dir}"


def build_engine_for_bundle(bundle_dir: str | os.PathLike, options: TensorRTOptions | None = None,
                            force: bool = False) -> Manifest:
    """Build the engine of a verified TensorRT bundle in place and record it in the manifest."""
    from boq_edge.export.bundle import update_bundle

    root = Path(bundle_dir)
    manifest = read_manifest(root, verify=True)
    if manifest.target != TensorRTTarget.name:
        raise BundleError(f"{root} was exported for {manifest.target}, not {TensorRTTarget.name}; "
                          f"re-export with --target {TensorRTTarget.name}")
    if manifest.artifact_path(ROLE_ENGINE) is not None and not force:
        raise BundleError(f"{root} already has an engine; pass --force to rebuild it")
    onnx_path = manifest.artifact_path(ROLE_ONNX)
    if onnx_path is None:
        raise BundleError(f"{root}: no ONNX model to build from")
    options = replace(options or TensorRTOptions(), batch_range=manifest.batch_range,
                      input_name=manifest.input_name)
    cache_in = b""
    for candidate in (options.timing_cache, manifest.artifact_path(ROLE_TIMING_CACHE)):
        if candidate is not None and Path(candidate).is_file():
            cache_in = Path(candidate).read_bytes()
            break
    plan, cache, info = build_engine(onnx_path, options, cache_in)
    if options.timing_cache is not None:
        atomic_write_bytes(options.timing_cache, cache)
    artifacts = {**manifest.artifacts, ROLE_ENGINE: ENGINE_FILE, ROLE_TIMING_CACHE: TIMING_CACHE_FILE}
    toolchain = {**manifest.toolchain, "tensorrt": info["version"]}
    return update_bundle(root, {ENGINE_FILE: plan, TIMING_CACHE_FILE: cache},
                         {"artifacts": artifacts, "toolchain": toolchain,
                          SECTION: {**manifest.section(SECTION), **info}})


class TensorRTTarget(OnnxTarget):
    """The ONNX target's model (INT8: the TensorRT Q/DQ scheme, lint-checked) plus a device-built engine."""

    name = "tensorrt"
    aliases = ("trt", "engine")
    default_backend = "tensorrt"
    summary = "ONNX for a TensorRT engine built on the device; INT8 as explicit s8 Q/DQ (lint-qdq)"
    options_type = TensorRTOptions
    ptq_scheme = "qdq-s8s8-tensorrt"

    def check(self, options: ExportOptions) -> None:
        if options.options_of_target.build_engine:
            can, why_not = tensorrt_status()
            if not can:
                raise ExportError(f"cannot build a TensorRT engine here: {why_not}")

    def prepare(self, draft: ManifestDraft, options: ExportOptions, out_dir: Path) -> None:
        draft.sections[SECTION] = {"engine": "pending", "build_command": build_engine_command(out_dir.name)}

    def quantize(self, job: Int8Job) -> Int8Outcome:
        import onnx
        from boq_edge.calibration.qdq_tensorrt import check_tensorrt_qdq

        outcome = super().quantize(job)
        lr = check_tensorrt_qdq(onnx.load(str(outcome.files[ONNX_FILE])), f"TensorRT INT8 model for {job.fp32_onnx}")
        outcome.lint = {"ok": True, "quantized_nodes": len(lr.quantized_nodes), "float_matmuls": lr.float_nodes,
                        "quantize_linear": lr.num_quantize, "dequantize_linear": lr.num_dequantize}
        return outcome

    def finish(self, bundle: Path, options: ExportOptions) -> None:
        opts = options.options_of_target
        if opts.build_engine or (opts.build_engine is None and tensorrt_status()[0]):
            build_engine_for_bundle(bundle, opts, force=True)

    def describe(self, manifest: Manifest) -> list[tuple[str, str]]:
        trt = manifest.section(SECTION)
        if trt.get("engine") == "built":
            return [("TensorRT engine", f"built with TensorRT {trt.get('version')} on {trt.get('gpu')}")]
        return [("TensorRT engine", f"pending: run `{trt.get('build_command')}` on the GPU device")]

    def next_step(self, manifest: Manifest) -> str | None:
        if manifest.artifact_path(ROLE_ENGINE) is not None:
            return None
        _, why = tensorrt_status()
        return (f"engine pending: {why}. Copy {manifest.bundle_dir} to the GPU device and run there:\n"
                f"    {build_engine_command(manifest.bundle_dir)}")


__all__ = ["ENGINE_FILE", "SECTION", "TIMING_CACHE_FILE", "GpuInfo", "TensorRTOptions", "TensorRTTarget",
           "build_engine", "build_engine_command", "build_engine_for_bundle", "cuda_gpu", "tensorrt_status"]
