"""What a benchmark row computes in comes from the backend: ONNX Runtime's optimised graph, OpenVINO's runtime graph."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_medsam.benchmark.engines import PRECISION_HINTS, _ort_options
from edge_medsam.benchmark.precision import describe, onnx_compute, onnxruntime_session, openvino_compute


def _conv_graph(path, quantized: bool, fp16: bool = False) -> None:
    """x [1, 4, 16, 16] -> Conv 3x3 (8 channels) -> y; quantized: the QDQ pattern NNCF writes around it."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((8, 4, 3, 3)).astype(np.float16 if fp16 else np.float32)
    kind = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    scale, zero = numpy_helper.from_array(np.array(0.02, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")
    if not quantized:
        nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
        inits = [numpy_helper.from_array(weight, "w")]
    else:
        q_weight = np.clip(np.round(weight / 0.02), -127, 127).astype(np.int8)
        inits = [numpy_helper.from_array(q_weight, "wq"), scale, zero]
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
                 helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
                 helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"]),
                 helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1]),
                 helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"]),
                 helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["y"])]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", kind, [1, 4, 16, 16])],
                              [helper.make_tensor_value_info("y", kind, [1, 8, 16, 16])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_describe_names_the_mix_or_the_one_precision():
    assert describe({"f32": 3}) == "f32"
    assert describe({"f32": 2, "i8": 5}) == "i8 5 + f32 2 of 7"
    assert describe({}) == "no conv/matmul"


def test_onnxruntime_reports_integer_kernels_only_where_it_fused_the_qdq(tmp_path):
    pytest.importorskip("onnxruntime")
    _conv_graph(tmp_path / "fp32.onnx", quantized=False)
    _conv_graph(tmp_path / "int8.onnx", quantized=True)
    assert onnxruntime_session(tmp_path / "fp32.onnx", _ort_options(1))[1] == {"f32": 1}
    assert onnxruntime_session(tmp_path / "int8.onnx", _ort_options(1))[1] == {"i8": 1}
    # The file itself holds a float Conv between Dequantize and Quantize: only the backend's graph says INT8.
    assert onnx_compute(onnx.load(str(tmp_path / "int8.onnx"))) == {"f32": 1}


def test_onnx_weights_in_fp16_count_as_fp16(tmp_path):
    _conv_graph(tmp_path / "fp16.onnx", quantized=False, fp16=True)
    assert onnx_compute(onnx.load(str(tmp_path / "fp16.onnx"))) == {"f16": 1}


def test_openvino_reports_the_precision_its_plugin_chose(tmp_path):
    ov = pytest.importorskip("openvino")
    import openvino.properties as props
    import openvino.properties.hint as hints

    _conv_graph(tmp_path / "fp32.onnx", quantized=False)
    _conv_graph(tmp_path / "int8.onnx", quantized=True)
    core = ov.Core()

    def computes(name, precision):
        config = {hints.inference_precision: getattr(ov.Type, PRECISION_HINTS[precision])}
        return openvino_compute(core.compile_model(str(tmp_path / name), "CPU", config))

    assert computes("fp32.onnx", "fp32") == {"f32": 1}
    assert set(computes("int8.onnx", "int8")) <= {"i8", "u8"}
    expected = "bf16" if "BF16" in core.get_property("CPU", props.device.capabilities) else "f32"
    assert computes("fp32.onnx", "bf16") == {expected: 1}
