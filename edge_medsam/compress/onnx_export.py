"""torch → ONNX with the dynamo exporter, onnxslim simplification, a full checker pass and a contract check.

Opset 18 is torchlib's native opset (no version conversion step) and sits inside the range TensorRT 10.3
(JetPack 6) parses; at 20 the exporter would emit ``Gelu-20`` where 18 spells GELU with ``Erf``, which every
TensorRT 10 parser takes.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
import onnxslim
import torch
from onnx import TensorProto

from edge_medsam.compress.graphs import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    DecoderGraph,
    EncoderGraph,
    decoder_dynamic_shapes,
    decoder_example,
    encoder_example,
    graph_dims,
    resolve_shape,
)
from edge_medsam.compress.settings import OPSET
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.models.student import EdgeStudent
from edge_medsam.runtime.manifest import DECODER_IO, ENCODER_IO

_DTYPES = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64}


class ExportError(EdgeMedSAMError):
    """A graph could not be exported, or the exported graph breaks the bundle contract."""


def export_graph(module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path, input_names: Sequence[str],
                 output_names: Sequence[str], dynamic_shapes: dict[str, Any] | None = None,
                 opset: int = OPSET) -> onnx.ModelProto:
    """Export ``module`` with the dynamo exporter as one self-contained, slimmed and checked ONNX file."""
    module.eval()
    chatter = io.StringIO()
    try:
        # The exporter prints its stages; keep them for the error message instead of the user's terminal.
        with torch.no_grad(), contextlib.redirect_stdout(chatter), warnings.catch_warnings():
            # Shared Dims make the exporter note that it reuses one axis name; that is what we asked for.
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used")
            program = torch.onnx.export(module, args, input_names=list(input_names), output_names=list(output_names),
                                        dynamo=True, opset_version=opset, external_data=False,
                                        dynamic_shapes=dynamic_shapes, verbose=False)
    except Exception as err:  # the exporter raises many unrelated types; all mean "this model does not export"
        raise ExportError(f"torch.onnx.export failed for {type(module).__name__}: {err}".splitlines()[0][:400],
                          path=path, fix="check that the model builds with this torch version; see the log above"
                          ) from err
    model = _with_namespaces(onnxslim.slim(program.model_proto), program.model_proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    check_onnx_file(path)
    return model


def _with_namespaces(slimmed: onnx.ModelProto, original: onnx.ModelProto) -> onnx.ModelProto:
    """Put back the exporter's per-node module path ("namespace"), which onnxslim drops: mixed-precision
    quantization selects nodes by the module they came from."""
    namespaces = {n.name: p.value for n in original.graph.node for p in n.metadata_props if p.key == "namespace"}
    for node in slimmed.graph.node:
        if node.name in namespaces and not any(p.key == "namespace" for p in node.metadata_props):
            node.metadata_props.add(key="namespace", value=namespaces[node.name])
    return slimmed


def check_onnx_file(path: Path, max_opset: int = OPSET) -> None:
    """Run onnx.checker's full check (with shape inference) and refuse opsets above ``max_opset``."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportError(f"exported graph fails onnx.checker: {str(err).splitlines()[0][:300]}", path=path,
                          fix="report this export bug with the model file") from err
    opset = next(o.version for o in onnx.load(str(path), load_external_data=False).opset_import if o.domain in ("", "ai.onnx"))
    if opset > max_opset:
        raise ExportError(f"graph uses opset {opset}, above {max_opset} (TensorRT 10 / JetPack 6 limit)", path=path,
                          fix=f"export with opset_version <= {max_opset}")


def _value_shape(value: onnx.ValueInfoProto) -> list[str | int]:
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in value.type.tensor_type.shape.dim]


def check_contract(model: onnx.ModelProto, graph: str, dims: dict[str, int], path: Path | None = None) -> None:
    """Check a graph's input/output names, order, dtypes and shapes against ENCODER_IO / DECODER_IO exactly."""
    spec = ENCODER_IO if graph == "encoder" else DECODER_IO
    for kind, values in (("inputs", model.graph.input), ("outputs", model.graph.output)):
        want = [(n, t, resolve_shape(s, dims)) for n, t, s in spec[kind]]
        have = [(v.name, v.type.tensor_type.elem_type, _value_shape(v)) for v in values]
        if [w[0] for w in want] != [h[0] for h in have]:
            raise ExportError(f"{graph} {kind} are {[h[0] for h in have]}, the contract says {[w[0] for w in want]}",
                              path=path, fix="export with the wrappers in edge_medsam.compress.graphs")
        for (name, dtype, shape), (_, elem, got) in zip(want, have, strict=True):
            if _DTYPES[dtype] != elem or shape != got:
                raise ExportError(f"{graph} {kind[:-1]} {name} is {onnx.helper.tensor_dtype_to_np_dtype(elem)} "
                                  f"{got}, the contract says {dtype} {shape}", path=path,
                                  fix="export with the wrappers in edge_medsam.compress.graphs")


def export_student(student: EdgeStudent, out_dir: Path, opset: int = OPSET) -> dict[str, Path]:
    """Write ``encoder.onnx`` and ``decoder.onnx`` (FP32) for a student and check both against the contract."""
    student = student.eval()
    dims = graph_dims(student.config)
    encoder, decoder = EncoderGraph(student).eval(), DecoderGraph(student).eval()
    image, modality = encoder_example(student.config)
    paths = {"encoder": out_dir / "encoder.onnx", "decoder": out_dir / "decoder.onnx"}
    model = export_graph(encoder, (image, modality), paths["encoder"], ENCODER_INPUTS, ENCODER_OUTPUTS, opset=opset)
    check_contract(model, "encoder", dims, paths["encoder"])
    with torch.no_grad():
        outputs = encoder(image, modality)
    model = export_graph(decoder, decoder_example(outputs), paths["decoder"], DECODER_INPUTS, DECODER_OUTPUTS,
                         dynamic_shapes=decoder_dynamic_shapes(), opset=opset)
    check_contract(model, "decoder", dims, paths["decoder"])
    return paths
