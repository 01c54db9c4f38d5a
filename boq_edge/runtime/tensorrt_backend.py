"""TensorRT backend: runs the bundle's ``model.engine`` (a pure serialized plan).

Engines are specific to the GPU and TensorRT version that built them, so they are built
on the device (``boq-edge build-engine BUNDLE``). Device memory comes from torch CUDA
tensors when torch is installed, otherwise from cuda-python (``cuda.bindings.runtime``,
or the older ``cuda.cudart``); with neither, the error says what to install.
The TensorRT 10/11 name-based API is used: ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from boq_edge.runtime.base import Runtime, RuntimeUnavailable
from boq_edge.runtime.manifest import ROLE_ENGINE, BundleError, Manifest

INSTALL_HINT = "install boq-edge[tensorrt] on the GPU device (NVIDIA's wheels: pip install tensorrt)"


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or :class:`RuntimeUnavailable` saying what to install."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise RuntimeUnavailable(f"tensorrt is not installed: {INSTALL_HINT}") from e
    return trt


class _TorchCuda:
    """Device buffers and a stream from torch (preferred when torch is there anyway)."""

    name = "torch"

    def __init__(self, device_index: int) -> None:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeUnavailable("no CUDA GPU found: TensorRT engines need an NVIDIA GPU and driver")
        self.torch = torch
        self.device = torch.device("cuda", device_index)
        self.stream = torch.cuda.Stream(device=self.device)

    def device_name(self) -> str:
        return str(self.torch.cuda.get_device_name(self.device))

    def run(self, context: Any, in_name: str, out_name: str, batch: np.ndarray, out_shape: tuple[int, ...],
            out_dtype: np.dtype) -> np.ndarray:
        torch = self.torch
        with torch.cuda.stream(self.stream):
            x = torch.from_numpy(batch).to(self.device, non_blocking=False)
            y = torch.empty(out_shape, dtype=torch.from_numpy(np.zeros(0, out_dtype)).dtype, device=self.device)
            context.set_tensor_address(in_name, x.data_ptr())
            context.set_tensor_address(out_name, y.data_ptr())
            if not context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            self.stream.synchronize()
            return y.cpu().numpy()


class _CudaPython:
    """Device buffers and a stream from cuda-python, for devices without torch."""

    name = "cuda-python"

    def __init__(self, device_index: int) -> None:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            try:
                from cuda import cudart  # type: ignore[no-redef]  # older cuda-python
            except ImportError as e:
                raise RuntimeUnavailable("the TensorRT backend needs torch (CUDA build) or cuda-python for GPU "
                                         "memory: pip install cuda-python") from e
        self.cudart = cudart
        count = self._check(cudart.cudaGetDeviceCount())
        if not count:
            raise RuntimeUnavailable("no CUDA GPU found: TensorRT engines need an NVIDIA GPU and driver")
        self._check(cudart.cudaSetDevice(device_index))
        self.device_index = device_index
        self.stream = self._check(cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, bytes)

    def _check(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.cudart.cudaError_t.cudaSuccess:
            raise RuntimeError(f"CUDA error: {err}")
        return rest[0] if len(rest) == 1 else rest

    def device_name(self) -> str:
        props = self._check(self.cudart.cudaGetDeviceProperties(self.device_index))
        name = props.name
        return name.decode(errors="replace").rstrip("\x00") if isinstance(name, bytes) else str(name)

    def _buffer(self, key: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(key, (0, 0))
        if size < nbytes:
            if ptr:
                self._check(self.cudart.cudaFree(ptr))
            ptr = self._check(self.cudart.cudaMalloc(nbytes))
            self._buffers[key] = (ptr, nbytes)
        return ptr

    def run(self, context: Any, in_name: str, out_name: str, batch: np.ndarray, out_shape: tuple[int, ...],
            out_dtype: np.dtype) -> np.ndarray:
        cudart = self.cudart
        out = np.empty(out_shape, dtype=out_dtype)
        d_in = self._buffer("in", batch.nbytes)
        d_out = self._buffer("out", out.nbytes)
        self._check(cudart.cudaMemcpyAsync(d_in, batch.ctypes.data, batch.nbytes,
                                           cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
        context.set_tensor_address(in_name, d_in)
        context.set_tensor_address(out_name, d_out)
        if not context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        self._check(cudart.cudaMemcpyAsync(out.ctypes.data, d_out, out.nbytes,
                                           cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
        self._check(cudart.cudaStreamSynchronize(self.stream))
        return out

    def __del__(self) -> None:
        try:
            for ptr, _ in self._buffers.values():
                self.cudart.cudaFree(ptr)
            self.cudart.cudaStreamDestroy(self.stream)
        except Exception:  # noqa: BLE001 (interpreter shutdown)
            pass


def cuda_memory(device_index: int = 0) -> _TorchCuda | _CudaPython:
    """torch CUDA if torch imports, else cuda-python; raises RuntimeUnavailable with the fix."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return _CudaPython(device_index)
    return _TorchCuda(device_index)


class TensorRTBackend(Runtime):
    backend = "tensorrt"

    def __init__(self, manifest: Manifest, threads: int | None = None, device_index: int = 0) -> None:
        super().__init__(manifest, threads)
        path = manifest.artifact_path(ROLE_ENGINE)
        if path is None:
            raise BundleError(f"{manifest.bundle_dir}: the TensorRT engine has not been built yet; on the GPU "
                              f"device run: boq-edge build-engine {manifest.bundle_dir}")
        trt = import_tensorrt()
        self._cuda = cuda_memory(device_index)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            built = manifest.section("tensorrt")
            raise RuntimeError(
                f"TensorRT {trt.__version__} could not load {path.name} (built with TensorRT "
                f"{built.get('version')} on {built.get('gpu')}); rebuild it here: "
                f"boq-edge build-engine {manifest.bundle_dir} --force")
        self._context = self._engine.create_execution_context()
        self._in, self._out = manifest.input_name, manifest.output_name
        self._out_dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(self._out)))
        in_dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(self._in)))
        if in_dtype != np.float32:
            raise BundleError(f"{path}: engine input {self._in} is {in_dtype}, expected float32")
        self._version = trt.__version__

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if not self._context.set_input_shape(self._in, tuple(batch.shape)):
            raise ValueError(f"batch shape {batch.shape} is outside the engine's optimization profile "
                             f"{self.manifest.batch_range}")
        out_shape = tuple(int(d) for d in self._context.get_tensor_shape(self._out))
        return self._cuda.run(self._context, self._in, self._out, batch, out_shape, self._out_dtype)

    def _backend_info(self) -> dict[str, Any]:
        return {"tensorrt": self._version, "gpu": self._cuda.device_name(), "cuda_memory": self._cuda.name}
