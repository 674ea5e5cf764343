"""Multiply-accumulates of an ONNX graph for concrete input shapes, counted from the graph itself.

The dynamic dimensions are fixed to the shapes of the feed that is timed and ONNX shape inference propagates
them; where it loses a dimension (data-dependent gathers in a prompt decoder), the graph is run once in ONNX
Runtime with just those tensors exposed. Every Conv, ConvTranspose, MatMul and Gemm node then adds its MACs.
Element-wise ops, normalisation and softmax are not counted (a few percent of a SAM-like graph, and memory
traffic rather than MACs), the convention of the SAM family's published "GFLOPs" (fvcore counts MACs).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

COUNTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def _static_inputs(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs have the given concrete shapes and no stale intermediate shapes."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    del fixed.graph.value_info[:]
    for value in fixed.graph.input:
        if value.name not in shapes:
            continue
        dims = value.type.tensor_type.shape.dim
        for dim, size in zip(dims, shapes[value.name], strict=True):
            dim.Clear()
            dim.dim_value = int(size)
    return fixed


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    values = [*model.graph.input, *model.graph.value_info, *model.graph.output]
    for value in values:
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    for tensor in model.graph.initializer:
        shapes[tensor.name] = list(tensor.dims)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            shapes[node.output[0]] = list(numpy_helper.to_array(node.attribute[0].t).shape)
    return shapes


def _attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


def _node_macs(node: onnx.NodeProto, shapes: dict[str, list[int]]) -> int:
    """MACs of one counted node."""
    a, b = (shapes[name] for name in node.input[:2])
    out = shapes[node.output[0]]
    if node.op_type == "Conv":  # every output element sums C_in/groups x kernel products
        return math.prod(out) * math.prod(b[1:])
    if node.op_type == "ConvTranspose":  # every input element scatters into C_out/groups x kernel outputs
        return math.prod(a) * math.prod(b[1:])
    if node.op_type == "Gemm":
        k = a[0] if _attribute(node, "transA", 0) else a[1]
        return math.prod(out) * k
    k = a[-1]  # MatMul with numpy broadcasting: one K-long dot product per output element
    return math.prod(out) * k


def _measured_shapes(model: onnx.ModelProto, names: set[str], feeds: dict[str, np.ndarray]) -> dict[str, list[int]]:
    """Shapes of ``names`` from one ONNX Runtime run of ``model`` with those tensors added as graph outputs."""
    import onnxruntime as ort

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    known = {o.name for o in exposed.graph.output}
    for name in sorted(names - known):
        exposed.graph.output.append(onnx.helper.make_tensor_value_info(name, types.get(name, onnx.TensorProto.FLOAT),
                                                                       None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor by name
    options.log_severity_level = 3
    session = ort.InferenceSession(exposed.SerializeToString(), options, providers=["CPUExecutionProvider"])
    wanted = sorted(names)
    return {name: list(value.shape) for name, value in zip(wanted, session.run(wanted, feeds), strict=True)}


def count_macs(path: str | Path, feeds: dict[str, np.ndarray]) -> dict[str, object]:
    """{"macs": total, "by_op": {op: macs}} of an ONNX graph run on ``feeds`` (named input arrays)."""
    model = onnx.load(str(path))
    inferred = shape_inference.infer_shapes(_static_inputs(model, {k: v.shape for k, v in feeds.items()}),
                                            data_prop=True)
    shapes = _shapes(inferred)
    counted = [n for n in inferred.graph.node if n.op_type in COUNTED]
    unknown = {name for n in counted for name in [*n.input[:2], n.output[0]] if name not in shapes}
    if unknown:
        shapes |= _measured_shapes(inferred, unknown, feeds)
    by_op: dict[str, int] = defaultdict(int)
    for node in counted:
        by_op[node.op_type] += _node_macs(node, shapes)
    return {"macs": int(sum(by_op.values())), "by_op": dict(by_op)}
