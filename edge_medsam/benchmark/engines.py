"""Load one graph of a subject on one backend, precision and thread count, or say why it cannot run here.

ONNX Runtime and OpenVINO get the settings of ``edge_medsam.runtime``'s backends (ORT: sequential, one
inter-op thread, full graph optimisation, no spinning workers; OpenVINO: the LATENCY hint), with the thread count
fixed per session so every backend gets the same core budget. OpenVINO's inference precision is set for every
row (``PRECISION_HINTS``): f32 for the FP32, FP16 and INT8 graphs (else an AVX512-BF16/AMX CPU runs their
unquantized parts in bf16 unasked), bf16 only for the ``bf16`` row (the FP32 graph, on CPUs with bf16 kernels).
Each loaded graph says what it computes in (``edge_medsam.benchmark.precision``).
PyTorch eager runs the FP32 modules with ``torch.set_num_threads``. TensorRT runs engines built on the device
for our bundles (``export/build_trt.py``) through the runtime's backend.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_medsam.benchmark.precision import describe, onnxruntime_session, openvino_compute
from edge_medsam.benchmark.subjects import Subject, graph_inputs, graph_outputs

BACKENDS = ("pytorch", "onnxruntime", "openvino", "tensorrt")
Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
PRECISION_HINTS = {"fp32": "f32", "fp16": "f32", "int8": "f32", "bf16": "bf16"}  # OpenVINO inference precision


def graph_files(precision: str) -> str:
    """The precision of the graph files a row runs: bf16 is the FP32 graph computed in bf16."""
    return "fp32" if precision == "bf16" else precision


class Skipped(Exception):
    """This (subject, backend, precision) cannot run here; the message says why."""


@dataclass
class Loaded:
    """A graph runner and what the backend reports about how it runs."""

    run: Runner
    details: dict[str, Any] = field(default_factory=dict)


def _pytorch(subject: Subject, graph: str, precision: str, threads: int) -> Loaded:
    if importlib.util.find_spec("torch") is None:
        raise Skipped("torch is not installed")
    if subject.torch_graphs is None:
        raise Skipped("no PyTorch modules for this subject")
    if precision != "fp32":
        raise Skipped("PyTorch eager is measured in FP32 only (CPU FP16 kernels are not an inference path here; "
                      "INT8 is the exported QDQ graph)")
    import torch

    from edge_medsam.engine.threads import torch_threads

    module = subject.modules()[0 if graph == "encoder" else 1]
    pair = subject.reference_pair
    path = pair.encoder if graph == "encoder" else pair.decoder
    inputs = [n for n, _ in graph_inputs(path)]
    outputs = graph_outputs(path)

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch_threads(threads), torch.inference_mode():
            result = module(*(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in inputs))
        result = result if isinstance(result, (tuple, list)) else (result,)
        return {n: t.numpy() for n, t in zip(outputs, result, strict=True)}

    return Loaded(run, {"torch": torch.__version__, "weights": subject.torch_note or "the subject's own"})


def _ort_options(threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _onnxruntime(subject: Subject, graph: str, precision: str, threads: int) -> Loaded:
    if importlib.util.find_spec("onnxruntime") is None:
        raise Skipped("onnxruntime is not installed")
    if precision == "bf16":
        raise Skipped("ONNX Runtime's CPU provider has no bf16 convolution kernels; bf16 is an OpenVINO row")
    pair = subject.variants.get(("onnx", precision))
    if pair is None:
        raise Skipped(f"no {precision} ONNX graphs")
    import onnxruntime as ort

    path = pair.encoder if graph == "encoder" else pair.decoder
    session, computes = onnxruntime_session(path, _ort_options(threads))
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, {k: v for k, v in feeds.items() if k in wanted}), strict=True))

    return Loaded(run, {"onnxruntime": ort.__version__, "providers": session.get_providers(), "note": pair.note,
                        "computes": computes, "computes_in": describe(computes)})


def _openvino(subject: Subject, graph: str, precision: str, threads: int) -> Loaded:
    if importlib.util.find_spec("openvino") is None:
        raise Skipped("openvino is not installed")
    graphs = graph_files(precision)
    pair = subject.variants.get(("openvino", graphs)) or subject.variants.get(("onnx", graphs))
    if pair is None:
        raise Skipped(f"no {graphs} OpenVINO IR or ONNX graphs")
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    core = ov.Core()
    if precision == "bf16" and "BF16" not in core.get_property("CPU", props.device.capabilities):
        raise Skipped("this CPU has no bf16 kernels (OpenVINO's CPU plugin reports no BF16 capability)")
    config: dict[Any, Any] = {hints.performance_mode: hints.PerformanceMode.LATENCY,
                              props.inference_num_threads: threads,
                              hints.inference_precision: getattr(ov.Type, PRECISION_HINTS[precision])}
    path = pair.encoder if graph == "encoder" else pair.decoder
    compiled = core.compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    # A tensor read from ONNX can carry several names (an output that is also an intermediate): take the graph's.
    names = graph_outputs(pair.encoder if graph == "encoder" else pair.decoder) if path.suffix == ".onnx" else []
    ports = [(port, next((n for n in names if n in port.get_names()), port.get_any_name())) for port in compiled.outputs]
    wanted = {name for port in compiled.inputs for name in port.get_names()}

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = request.infer({k: v for k, v in feeds.items() if k in wanted})
        return {name: np.array(result[port]) for port, name in ports}

    computes = openvino_compute(compiled)
    return Loaded(run, {"openvino": ov.__version__, "file": path.suffix.lstrip("."), "note": pair.note,
                        "inference_precision": compiled.get_property(hints.inference_precision).get_type_name(),
                        "computes": computes, "computes_in": describe(computes)})


def _tensorrt(subject: Subject, graph: str, precision: str, threads: int) -> Loaded:
    from edge_medsam.runtime.backends import BackendOptions
    from edge_medsam.runtime.backends.tensorrt import TensorRTBackend
    from edge_medsam.runtime.bundle import open_bundle

    backend = TensorRTBackend()
    if not backend.available():
        raise Skipped("TensorRT and cuda-python are not installed (no NVIDIA GPU on this machine)")
    if subject.bundle is None:
        raise Skipped("TensorRT runs engines built from a bundle on the device; anchors have none")
    bundle = open_bundle(subject.bundle)
    if not backend.can_run(bundle, precision):
        raise Skipped(f"no {precision} TensorRT engines built: run export/build_trt.py on this device first")
    return Loaded(backend.load(bundle, graph, precision, BackendOptions()), {"device": backend.describe()})


LOADERS = {"pytorch": _pytorch, "onnxruntime": _onnxruntime, "openvino": _openvino, "tensorrt": _tensorrt}


def load_graph(subject: Subject, graph: str, backend: str, precision: str, threads: int) -> Loaded:
    """The runner of ``graph`` ("encoder"/"decoder"); raises Skipped with the reason when it cannot run here."""
    return LOADERS[backend](subject, graph, precision, threads)
