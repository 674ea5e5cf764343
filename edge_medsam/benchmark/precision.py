"""What a loaded graph really computes in, as its backend reports it, so that no row calls bf16 or FP32 "INT8".

The figure is the compute-heavy operations (convolutions, matrix products) counted by the precision they run in:
- OpenVINO: the compiled model's runtime graph, each node's ``runtimePrecision`` (what the CPU plugin chose:
  i8/u8 for quantized kernels, bf16 where the inference-precision hint allows it, f32);
- ONNX Runtime: the session's optimised graph (written with ``optimized_model_filepath``): integer kernels
  (QLinearConv, MatMulInteger, ...) are INT8; other kernels compute in their weights' type (FP16 / FP32), and a
  QDQ pair ORT could not fuse computes in FP32 between its Dequantize and Quantize.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import onnx

OPENVINO_HEAVY = {"Convolution", "GroupConvolution", "Deconvolution", "MatMul", "FullyConnected", "Gemm"}
ONNX_INT8 = {"QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "MatMulIntegerToFloat",
             "DynamicQuantizeMatMul", "QGemm", "QLinearConvTranspose"}
ONNX_HEAVY = {"Conv", "ConvTranspose", "MatMul", "Gemm", "FusedConv", "FusedMatMul", "NhwcConv", "FusedGemm"}
_ONNX_TYPES = {onnx.TensorProto.FLOAT: "f32", onnx.TensorProto.FLOAT16: "f16", onnx.TensorProto.BFLOAT16: "bf16"}


def openvino_compute(compiled: Any) -> dict[str, int]:
    """Heavy operations of a compiled OpenVINO model by the precision the plugin runs them in."""
    counts: Counter[str] = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) in OPENVINO_HEAVY:
            counts[info["runtimePrecision"].astype(str)] += 1
    return dict(counts)


def _onnx_types(model: onnx.ModelProto) -> dict[str, int]:
    types = {init.name: init.data_type for init in model.graph.initializer}
    for value in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        types.setdefault(value.name, value.type.tensor_type.elem_type)
    return types


def onnx_compute(model: onnx.ModelProto) -> dict[str, int]:
    """Heavy operations of an ONNX graph by the precision they compute in (integer kernels: i8)."""
    types, counts = _onnx_types(model), Counter[str]()
    for node in model.graph.node:
        if node.op_type in ONNX_INT8:
            counts["i8"] += 1
        elif node.op_type in ONNX_HEAVY:
            weight = node.input[1] if len(node.input) > 1 else node.input[0]
            counts[_ONNX_TYPES.get(types.get(weight, onnx.TensorProto.FLOAT), "f32")] += 1
    return dict(counts)


def onnxruntime_session(path: Path, options: Any) -> tuple[Any, dict[str, int]]:
    """The ONNX Runtime session of ``path`` with these options, and the heavy operations of the graph it built
    by the precision they compute in (the session writes its optimised graph once, while it is created)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edge-medsam-ort-") as folder:
        optimised = Path(folder) / "optimised.onnx"
        options.optimized_model_filepath = str(optimised)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return session, onnx_compute(onnx.load(str(optimised), load_external_data=False))


def describe(counts: dict[str, int]) -> str:
    """``"i8 41 + f32 11 of 52"``: the heavy operations by precision, most first (``"f32"`` when they all agree)."""
    if not counts:
        return "no conv/matmul"
    total = sum(counts.values())
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(ordered) == 1:
        return ordered[0][0]
    return " + ".join(f"{name} {n}" for name, n in ordered) + f" of {total}"
