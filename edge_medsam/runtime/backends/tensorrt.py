"""TensorRT engines (TensorRT 10 Python API) built on the target device from the bundle's ONNX files.

Engines are specific to a GPU and a TensorRT version, so bundles never ship them: the device-side tools in
``export/`` build ``<engine_dir>/<graph>.<precision>.plan`` (engine_dir defaults to ``<bundle>/tensorrt``; see
``Bundle.engine_dir``). Device memory comes from cuda-python. ``tensorrt`` and ``cuda`` are imported only when
an engine is loaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.runtime.backends.base import Backend, BackendOptions, GraphRunner, input_arrays, output_names
from edge_medsam.runtime.bundle import Bundle

_BUILD_FIX = "build the engines on this device with the export/ tools (they write <bundle>/tensorrt/*.plan)"


def engine_file(engine_dir: Path, graph: str, precision: str) -> Path:
    """Where the engine of ``graph`` at ``precision`` is expected."""
    return engine_dir / f"{graph}.{precision}.plan"


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart as runtime  # older cuda-python
    return runtime


def _check(result: Any, what: str) -> Any:
    """cuda-python returns (error, *values): raise on an error, return the value(s)."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise EdgeMedSAMError(f"CUDA call {what} failed ({error})", fix="check the GPU driver and free GPU memory")
    return values[0] if len(values) == 1 else values


class _EngineRunner:
    """One execution context, device buffers grown on demand, one CUDA stream."""

    def __init__(self, engine: Any, graph: str, cudart: Any, trt: Any):
        self.engine, self.graph, self.cudart = engine, graph, cudart
        self.context = engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.buffers: dict[str, tuple[int, int]] = {}  # name → (device pointer, capacity in bytes)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.dtypes = {name: np.dtype(trt.nptype(engine.get_tensor_dtype(name))) for name in names}

    def _buffer(self, name: str, nbytes: int) -> int:
        pointer, capacity = self.buffers.get(name, (0, 0))
        if capacity < nbytes:
            if pointer:
                _check(self.cudart.cudaFree(pointer), "cudaFree")
            pointer = int(_check(self.cudart.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))
            self.buffers[name] = (pointer, nbytes)
        return pointer

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart, context = self.cudart, self.context
        host_inputs = {name: np.ascontiguousarray(value, dtype=self.dtypes[name])
                       for name, value in input_arrays(self.graph, feeds).items()}
        for name, value in host_inputs.items():
            if not context.set_input_shape(name, value.shape):
                raise EdgeMedSAMError(f"the TensorRT engine does not accept {name} of shape {value.shape}",
                                      fix="rebuild the engine with an optimisation profile covering this many prompts")
            pointer = self._buffer(name, value.nbytes)
            _check(cudart.cudaMemcpyAsync(pointer, value.ctypes.data, value.nbytes,
                                          cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream), "cudaMemcpyAsync")
            context.set_tensor_address(name, pointer)
        outputs = {}
        for name in output_names(self.graph):
            array = np.empty(tuple(context.get_tensor_shape(name)), self.dtypes[name])
            outputs[name] = array
            context.set_tensor_address(name, self._buffer(name, array.nbytes))
        if not context.execute_async_v3(int(self.stream)):
            raise EdgeMedSAMError(f"TensorRT failed to run the {self.graph}", fix=_BUILD_FIX)
        for name, array in outputs.items():
            _check(cudart.cudaMemcpyAsync(array.ctypes.data, self.buffers[name][0], array.nbytes,
                                          cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream), "cudaMemcpyAsync")
        _check(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return outputs

    def __del__(self) -> None:
        for pointer, _ in getattr(self, "buffers", {}).values():
            self.cudart.cudaFree(pointer)


class TensorRTBackend(Backend):
    """Runs engines from ``bundle.engine_dir`` on an NVIDIA GPU (x86 or Jetson)."""

    name = "tensorrt"
    module = "tensorrt"
    install = ("install TensorRT's Python bindings and cuda-python (Jetson: apt install python3-libnvinfer; "
               "x86: pip install tensorrt cuda-python from NVIDIA's index)")

    def __init__(self) -> None:
        self._device = "cuda:0"

    def available(self) -> bool:
        """TensorRT and cuda-python are both importable."""
        return super().available() and importlib.util.find_spec("cuda") is not None

    def can_run(self, bundle: Bundle, precision: str) -> bool:
        """Engines for both graphs at ``precision`` have been built into the bundle's engine folder."""
        return all(engine_file(bundle.engine_dir, g, precision).is_file() for g in ("encoder", "decoder"))

    def load(self, bundle: Bundle, graph: str, precision: str, options: BackendOptions) -> GraphRunner:
        """Deserialise the engine on the chosen GPU (``cuda:N``; default 0)."""
        self.require()
        path = engine_file(bundle.engine_dir, graph, precision)
        if not path.is_file():
            raise EdgeMedSAMError(f"no TensorRT {precision} engine for the {graph}", path=path, fix=_BUILD_FIX)
        import tensorrt as trt

        cudart = _cudart()
        device = (options.device or "cuda:0").strip().lower()
        _, _, index = device.partition(":")
        if not device.startswith("cuda") or (index and not index.isdigit()):
            raise EdgeMedSAMError(f"TensorRT has no device {device!r}", fix="use cuda or cuda:N")
        _check(cudart.cudaSetDevice(int(index or 0)), "cudaSetDevice")
        self._device = device
        logger = trt.Logger(trt.Logger.WARNING)
        engine = trt.Runtime(logger).deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EdgeMedSAMError("TensorRT cannot deserialise the engine (built for another GPU or TensorRT "
                                  f"version than {trt.__version__})", path=path, fix=_BUILD_FIX)
        return _EngineRunner(engine, graph, cudart, trt)

    def describe(self) -> str:
        """The GPU the engines run on."""
        return f"{self.name} ({self._device})"
