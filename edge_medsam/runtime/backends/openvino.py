"""OpenVINO: the bundle's IR files (or its ONNX files when it has no IR) on CPU, Intel GPU, NPU or AUTO."""

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

VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")


def _ports(ports: list[Any]) -> GraphPorts:
    """OpenVINO ports as name → (numpy dtype name, dims with None where dynamic), under each of their names."""
    found: GraphPorts = {}
    for port in ports:
        described = (str(port.get_element_type().to_dtype()),
                     [d.get_length() if d.is_static else None for d in port.get_partial_shape()])
        found.update({name: described for name in port.get_names()})
    return found


class OpenVinoBackend(Backend):
    """Compiles each graph once per predictor; the model cache (``cache_dir``) makes the next start fast."""

    name = "openvino"
    module = "openvino"
    install = "pip install 'edge-medsam[openvino]' (or pip install openvino)"

    def __init__(self) -> None:
        self._core: Any = None
        self._device = "CPU"

    def can_run(self, bundle: Bundle, precision: str) -> bool:
        """The bundle has IR files, or ONNX files, for both graphs at ``precision``."""
        return precision in bundle.precisions("openvino") or precision in bundle.precisions("onnx")

    def core(self, options: BackendOptions) -> Any:
        """One ``openvino.Core`` per backend, with the model cache set where asked."""
        if self._core is None:
            import openvino as ov
            import openvino.properties as props

            self._core = ov.Core()
            if options.cache_dir is not None:
                options.cache_dir.mkdir(parents=True, exist_ok=True)
                self._core.set_property({props.cache_dir: str(options.cache_dir / "openvino")})
        return self._core

    def _check_device(self, core: Any, device: str) -> None:
        base = device.split(":")[0].split(".")[0]
        have = list(core.available_devices)
        if base in VIRTUAL_DEVICES:
            return
        if device not in have and base not in {d.split(".")[0] for d in have}:
            raise EdgeMedSAMError(f"OpenVINO has no {device} device here (it has {', '.join(have) or 'none'})",
                                  fix="use --device CPU or AUTO, or install the device's OpenVINO driver")

    def _config(self, device: str, precision: str, options: BackendOptions) -> dict[Any, Any]:
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        mode = hints.PerformanceMode.LATENCY if options.hint == "latency" else hints.PerformanceMode.THROUGHPUT
        config: dict[Any, Any] = {hints.performance_mode: mode}
        if options.threads is not None and device.startswith("CPU"):
            config[props.inference_num_threads] = options.threads
        if precision == "fp32" and not device.startswith("NPU"):
            # CPUs with AMX/AVX512-BF16 would otherwise compute an FP32 graph in bf16.
            config[hints.inference_precision] = ov.Type.f32
        return config

    def load(self, bundle: Bundle, graph: str, precision: str, options: BackendOptions) -> GraphRunner:
        """Compile the graph for ``options.device`` (default CPU) with the latency or throughput hint."""
        self.require()
        fmt = "openvino" if bundle.has(graph, precision, "openvino") else "onnx"
        path = bundle.graph_path(graph, precision, fmt)
        core = self.core(options)
        device = (options.device or "CPU").strip().upper()
        self._check_device(core, device)
        try:
            compiled = core.compile_model(str(path), device, self._config(device, precision, options))
        except Exception as err:  # OpenVINO raises RuntimeError subclasses with multi-line reports
            raise load_failed(self.name, path, err, "re-export the bundle, or try --backend onnxruntime") from err
        check_graph_io(bundle, graph, path, _ports(compiled.inputs), _ports(compiled.outputs))
        self._device = device
        request = compiled.create_infer_request()
        # Under each of their names: read from ONNX, a tensor can carry several (an output that is also an
        # intermediate value), and get_any_name() may pick another one than the contract's.
        ports = {name: port for port in compiled.outputs for name in port.get_names()}
        names = output_names(graph)

        def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            result = request.infer(input_arrays(graph, feeds))
            return {name: np.array(result[ports[name]]) for name in names}

        return run

    def describe(self) -> str:
        """The device the graphs were compiled for."""
        return f"{self.name} ({self._device})"
