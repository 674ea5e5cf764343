"""ONNX Runtime: the CPU provider everywhere, CUDA and TensorRT execution providers where onnxruntime-gpu has them."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.runtime.backends.base import (
    Backend,
    BackendOptions,
    GraphPorts,
    GraphRunner,
    check_graph_io,
    input_arrays,
    load_failed,
    output_names,
)
from edge_medsam.runtime.bundle import Bundle

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def _device_index(device: str) -> int:
    _, _, index = device.partition(":")
    if index and not index.isdigit():
        raise EdgeMedSAMError(f"device {device!r} has no valid GPU index", fix="write cuda or cuda:0, cuda:1, ...")
    return int(index or 0)


def providers_for(device: str | None, available: list[str], options: BackendOptions,
                  precision: str) -> list[Any]:
    """The execution providers (best first) for a device; CPU always comes last.

    None / "auto": CUDA where onnxruntime-gpu has it. "tensorrt": ORT's TensorRT provider (it builds engines on
    the first run: give ``cache_dir`` so later starts reuse them), then CUDA. "cuda[:N]": CUDA on GPU N.
    """
    device = (device or "auto").strip().lower()
    if device == "cpu":
        return [CPU]
    gpu_id = 0 if device in ("auto", "tensorrt") else _device_index(device)
    wanted = {"auto": [CUDA], "tensorrt": [TENSORRT, CUDA]}.get(device)
    if wanted is None:
        if not device.startswith("cuda"):
            raise EdgeMedSAMError(f"ONNX Runtime has no device {device!r}", fix="use cpu, cuda, cuda:N or tensorrt")
        wanted = [CUDA]
    if device != "auto" and wanted[0] not in available:
        raise EdgeMedSAMError(f"this ONNX Runtime has no {wanted[0]} (it has {', '.join(available)})",
                              fix="pip install onnxruntime-gpu (in place of onnxruntime), or use device cpu")
    providers: list[Any] = []
    for name in wanted:
        if name not in available:
            continue
        settings: dict[str, Any] = {"device_id": gpu_id}
        if name == TENSORRT and options.cache_dir is not None:
            settings |= {"trt_engine_cache_enable": True,
                         "trt_engine_cache_path": str(options.cache_dir / "ort-tensorrt" / precision)}
        providers.append((name, settings))
    return [*providers, CPU]


def _ports(args: list[Any]) -> GraphPorts:
    """ONNX Runtime's NodeArgs as name → (numpy dtype name, dims with None where symbolic)."""
    dtypes = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(bool)": "bool"}
    return {arg.name: (dtypes.get(arg.type, arg.type), [d if isinstance(d, int) else None for d in arg.shape or []])
            for arg in args}


class OnnxRuntimeBackend(Backend):
    """Runs the bundle's ONNX variants."""

    name = "onnxruntime"
    module = "onnxruntime"
    install = "pip install 'edge-medsam[runtime]' (or pip install onnxruntime)"

    def __init__(self) -> None:
        self._providers: list[str] = []

    def can_run(self, bundle: Bundle, precision: str) -> bool:
        """The bundle has ONNX files for both graphs at ``precision``."""
        return precision in bundle.precisions("onnx")

    def load(self, bundle: Bundle, graph: str, precision: str, options: BackendOptions) -> GraphRunner:
        """An inference session with sequential execution, one inter-op thread and full graph optimisation."""
        self.require()
        import onnxruntime as ort

        path = bundle.graph_path(graph, precision, "onnx")
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.threads or 0
        session_options.inter_op_num_threads = 1
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.log_severity_level = 3  # fused-node and provider-assignment chatter is not for users
        # Spinning workers would hold the cores that numpy pre/postprocessing needs between graph runs.
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = providers_for(options.device, ort.get_available_providers(), options, precision)
        try:
            session = ort.InferenceSession(str(path), session_options, providers=providers)
        except Exception as err:  # ORT raises its own Fail / InvalidGraph / RuntimeException types
            raise load_failed(self.name, path, err, "re-export the bundle, or try --backend openvino") from err
        check_graph_io(bundle, graph, path, _ports(session.get_inputs()), _ports(session.get_outputs()))
        self._providers = session.get_providers()
        names = output_names(graph)

        def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return dict(zip(names, session.run(names, input_arrays(graph, feeds)), strict=True))

        return run

    def describe(self) -> str:
        """The providers the sessions use."""
        return f"{self.name} ({', '.join(p.removesuffix('ExecutionProvider') for p in self._providers)})"
