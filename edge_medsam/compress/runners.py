"""One calling convention for a graph on every back-end the export checks: dict of named arrays in and out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from edge_medsam.engine.threads import torch_threads
from edge_medsam.errors import EdgeMedSAMError

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def onnxruntime_runner(path: Path, threads: int = 0) -> Runner:
    """Run an ONNX file with ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # the QDQ and FP16 graphs make ORT chatty about fused nodes
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own Fail/InvalidGraph types
        raise EdgeMedSAMError(f"ONNX Runtime cannot load the graph: {str(err).splitlines()[0][:300]}", path=path,
                              fix="re-export the bundle") from err
    names = [o.name for o in session.get_outputs()]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, inputs), strict=True))

    return run


def openvino_runner(path: Path) -> Runner:
    """Compile an OpenVINO IR for the CPU with FP32 inference precision (storage precision is the file's)."""
    import openvino as ov
    import openvino.properties.hint as hints

    compiled = ov.Core().compile_model(str(path), "CPU", {hints.inference_precision: ov.Type.f32})
    outputs = [(o, o.get_any_name()) for o in compiled.outputs]
    request = compiled.create_infer_request()

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = request.infer(inputs)
        return {name: np.array(result[port]) for port, name in outputs}

    return run


def torch_runner(module: torch.nn.Module, input_names: Sequence[str], output_names: Sequence[str],
                 threads: int = 1) -> Runner:
    """Run an export wrapper module in PyTorch FP32 (the reference) with ``threads`` intra-op threads.

    One thread by default: the reference runs one small image at a time, and on a busy machine torch's thread
    pool waiting for a second core made each call a hundred times slower (measured: 2.2 s vs 16 ms).
    """
    module.eval()

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch_threads(threads), torch.no_grad():
            outputs = module(*(torch.from_numpy(np.asarray(inputs[n])) for n in input_names))
        return {n: t.numpy() for n, t in zip(output_names, outputs, strict=True)}

    return run
