"""INT8 post-training quantization with NNCF: a symmetric QDQ ONNX (ONNX Runtime, OpenVINO and TensorRT) and an
OpenVINO IR, with mixed precision that keeps the layers where INT8 hurts most in FP32.

Tiers, tried in order by the accuracy control: ``int8`` (NNCF places every quantizer, transformer-aware with
SmoothQuant), ``int8_mixed`` (the stem convolution and the modules in SENSITIVE_MODULES left in FP32: the small
heads whose outputs are decisions, such as modality recognition, mask choice and the self-prompt gate, and the
last layers before the outputs), ``int8_plain`` (mixed, without the transformer preset's SmoothQuant: measured
on the quickstart student, OpenVINO's INT8 encoder lost 0.19 self-prompt Dice with SmoothQuant on a CPU
without VNNI and none without it), then FP32.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from edge_medsam.compress.onnx_export import ExportError

TIERS = ("int8", "int8_mixed", "int8_plain")
# Module paths (as the export wrappers name them) kept in FP32 by the int8_mixed tier.
SENSITIVE_MODULES = {
    "encoder": ("student.encoder.modality_head", "student.sppg", "student.encoder.out", "student.encoder.adapter"),
    "decoder": ("student.decoder.iou_head", "student.decoder.hyper_trunk", "student.prompt_encoder",
                "student.decoder.up2", "student.decoder.skip2"),
}


def _module_paths(node: onnx.NodeProto) -> list[str]:
    """Module paths of a node from the dynamo exporter's ``namespace`` metadata ("a: cls/a.b: cls/...")."""
    namespace = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
    return [part.split(":")[0].strip() for part in namespace.split("/")]


def module_nodes(model: onnx.ModelProto, prefixes: Sequence[str]) -> list[str]:
    """Names of the nodes exported from the modules under any of ``prefixes``."""
    return [node.name for node in model.graph.node
            if any(path == p or path.startswith(p + ".") for path in _module_paths(node) for p in prefixes)]


def ignored_nodes(fp32_model: onnx.ModelProto, graph: str, tier: str) -> list[str]:
    """Node names a tier keeps in FP32: none for int8; for int8_mixed/int8_plain the sensitive modules, and in the encoder
    the first convolution (it sees raw pixels, whatever the trunk calls it)."""
    if tier not in TIERS:
        raise ValueError(f"unknown quantization tier {tier!r}; use one of {TIERS}")
    if tier == "int8":
        return []
    names = module_nodes(fp32_model, SENSITIVE_MODULES[graph])
    if graph == "encoder":
        names += [next(n.name for n in fp32_model.graph.node if n.op_type == "Conv")]
    return names


def _nncf():
    import nncf

    logging.getLogger("nncf").setLevel(logging.WARNING)  # keep the progress bars, drop the INFO chatter
    return nncf


def _progress_to_stderr():
    """NNCF draws its progress bars on stdout; keep stdout for results (`edge-medsam export --json`)."""
    return contextlib.redirect_stdout(sys.stderr)


def _model_type(nncf, tier: str):
    return None if tier == "int8_plain" else nncf.ModelType.TRANSFORMER


def quantize_onnx(model: onnx.ModelProto, items: list[dict[str, np.ndarray]], ignored: list[str],
                  tier: str = "int8") -> onnx.ModelProto:
    """Symmetric signed INT8 QDQ ONNX (NNCF ONNX backend, preset PERFORMANCE) that TensorRT can build from."""
    nncf = _nncf()
    with _progress_to_stderr():
        quantized = nncf.quantize(model, nncf.Dataset(items), preset=nncf.QuantizationPreset.PERFORMANCE,
                                  model_type=_model_type(nncf, tier), subset_size=len(items),
                                  ignored_scope=nncf.IgnoredScope(names=ignored, validate=False))
    quantized = to_signed_int8(quantized)
    check_symmetric_qdq(quantized)
    return quantized


def to_signed_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """Turn NNCF's unsigned symmetric quantizers (uint8, zero-point 0, on non-negative tensors) into signed INT8.

    TensorRT takes only INT8 Q/DQ with zero-point 0, and NNCF cannot be told to make every activation quantizer
    signed (its hardware config leaves signedness open, and forcing it conflicts). The signed quantizer keeps
    the range: scale * 255 / 127, at one bit less resolution for those tensors, which TensorRT would lose anyway.
    """
    inits = {init.name: init for init in model.graph.initializer}
    unsigned_zero_points: set[str] = set()
    scales_of: dict[str, set[str]] = {}
    quantized_outputs: set[str] = set()
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zero = inits.get(node.input[2])
            if zero is not None and zero.data_type == TensorProto.UINT8:
                unsigned_zero_points.add(zero.name)
                scales_of.setdefault(node.input[1], set()).add(zero.name)
                if node.op_type == "QuantizeLinear":
                    quantized_outputs.add(node.output[0])
    for node in model.graph.node:  # a scale shared with a signed quantizer cannot be changed for one of them
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.input[1] in scales_of and \
                node.input[2] not in unsigned_zero_points:
            raise ExportError(f"quantizer scale {node.input[1]} is shared by signed and unsigned quantizers",
                              fix="report this NNCF graph")
    for name in unsigned_zero_points:
        zero = numpy_helper.to_array(inits[name])
        if np.any(zero != 0):
            raise ExportError(f"unsigned quantizer {name} has a non-zero zero-point", fix="use preset PERFORMANCE")
        inits[name].CopyFrom(numpy_helper.from_array(zero.astype(np.int8), name))
    for name in scales_of:
        scale = numpy_helper.to_array(inits[name])
        inits[name].CopyFrom(numpy_helper.from_array((scale * np.float32(255.0 / 127.0)).astype(scale.dtype), name))
    for value in model.graph.value_info:
        if value.name in quantized_outputs or value.name in unsigned_zero_points:
            value.type.tensor_type.elem_type = TensorProto.INT8
    return model


def quantize_openvino(model: Any, items: list[dict[str, np.ndarray]], ignored: list[str], tier: str = "int8") -> Any:
    """INT8 OpenVINO model (NNCF OpenVINO backend, preset MIXED: symmetric weights, asymmetric activations)."""
    nncf = _nncf()
    present = {op.get_friendly_name() for op in model.get_ordered_ops()}
    with _progress_to_stderr():
        return nncf.quantize(model, nncf.Dataset(items), preset=nncf.QuantizationPreset.MIXED,
                             model_type=_model_type(nncf, tier), subset_size=len(items),
                             ignored_scope=nncf.IgnoredScope(names=[n for n in ignored if n in present],
                                                             validate=False))


def qdq_summary(model: onnx.ModelProto) -> dict[str, Any]:
    """Counts of QuantizeLinear/DequantizeLinear nodes and what their zero-points and scales look like."""
    constants = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            constants[node.output[0]] = node.attribute[0].t
    summary = {"quantize": 0, "dequantize": 0, "nonzero_zero_points": 0, "unsigned": 0, "bad_scales": 0}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        summary["quantize" if node.op_type == "QuantizeLinear" else "dequantize"] += 1
        scale = constants.get(node.input[1])
        if scale is None or not np.all(np.isfinite(s := numpy_helper.to_array(scale))) or np.any(s <= 0):
            summary["bad_scales"] += 1
        zero = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zero is not None:
            summary["unsigned"] += int(zero.data_type != TensorProto.INT8)
            summary["nonzero_zero_points"] += int(np.any(numpy_helper.to_array(zero) != 0))
    return summary


def check_symmetric_qdq(model: onnx.ModelProto, path: Path | None = None) -> dict[str, Any]:
    """Refuse a QDQ graph that TensorRT cannot take: unsigned or non-zero zero-points, bad or missing scales."""
    summary = qdq_summary(model)
    if summary["dequantize"] == 0:
        raise ExportError("the INT8 graph has no DequantizeLinear node (nothing was quantized)", path=path,
                          fix="check the calibration data")
    if summary["nonzero_zero_points"] or summary["unsigned"] or summary["bad_scales"]:
        raise ExportError(f"the INT8 graph is not symmetric signed INT8 ({summary})", path=path,
                          fix="quantize with preset PERFORMANCE and signed activations")
    return summary
