"""FP16 ONNX for GPUs (TensorRT 11 takes precision from the graph): weights and most ops in float16, the
numerically sensitive ops kept in float32, inputs and outputs still float32 so the contract does not change.

The converter is ONNX Runtime's ``onnxruntime.transformers.float16`` (the maintained copy of
onnxconverter-common's), so no extra package is needed.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxslim

from edge_medsam.compress.onnx_export import check_onnx_file

# Kept in FP32: normalisation statistics (LayerNormalization, and LayerNorm2d's ReduceMean/Pow/Sqrt), attention
# Softmax, the exporter's own Casts (converting them makes the graph invalid), the Fourier point encoding
# (Sin/Cos of pixel coordinates), and Erf-based GELU.
FP32_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt", "Cast", "Sin", "Cos", "Erf", "ArgMax")


def convert_fp16(src: Path, dst: Path) -> onnx.ModelProto:
    """Write an FP16 copy of an FP32 ONNX file with FP32 inputs/outputs and FP32_OPS left in FP32."""
    from onnxruntime.transformers import float16

    model = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True,
                                             op_block_list=[*float16.DEFAULT_OP_BLOCK_LIST, *FP32_OPS])
    model = onnxslim.slim(model)  # the converter appends its input casts last; slimming sorts the nodes again
    onnx.save(model, str(dst))
    check_onnx_file(dst)
    return model
