"""Export a reference anchor's encoder and decoder to ONNX and check ONNX Runtime against PyTorch."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_medsam.compress.graphs import DYNAMIC_DIMS
from edge_medsam.compress.onnx_export import OPSET, export_graph
from edge_medsam.compress.parity import FP32_RTOL, ParityError
from edge_medsam.compress.runners import onnxruntime_runner, torch_runner
from edge_medsam.errors import InputError
from edge_medsam.models.reference.graphs import (
    GRAPHS,
    PARITY_PROMPTS,
    PROMPT_NAMES,
    example_prompts,
    model_device,
    reference_graphs,
)
from edge_medsam.models.reference.registry import build_reference
from edge_medsam.models.teachers.base import Teacher


def decoder_dynamic_shapes(decoder: nn.Module) -> dict[str, Any]:
    """torch.export shapes: per-image inputs static, one shared objects Dim and one points Dim for the prompts."""
    objects = torch.export.Dim(DYNAMIC_DIMS[0], min=1, max=1024)
    points = torch.export.Dim(DYNAMIC_DIMS[1], min=1, max=256)
    shapes: dict[str, Any] = dict.fromkeys(decoder.input_names)
    shapes.update({name: {0: objects, 1: points} for name in PROMPT_NAMES})
    return shapes


def _check_parity(graph: nn.Module, path: Path, feeds: list[tuple[torch.Tensor, ...]]) -> None:
    """Run ONNX Runtime and PyTorch on every feed; raise ParityError where an output differs beyond FP32 tolerance
    (max |error| relative to max(1, max |PyTorch output|), as for the student's bundles)."""
    names, outputs = list(graph.input_names), list(graph.output_names)
    ort, reference = onnxruntime_runner(path), torch_runner(graph, names, outputs, threads=torch.get_num_threads())
    for feed in feeds:
        arrays = {name: tensor.cpu().numpy() for name, tensor in zip(names, feed, strict=True)}
        got, want = ort(arrays), reference(arrays)
        for name in outputs:
            scale = max(1.0, float(np.abs(want[name]).max()))
            error = float(np.abs(got[name].astype(np.float64) - want[name]).max()) / scale
            if error > FP32_RTOL:
                raise ParityError(f"ONNX Runtime output {name} differs from PyTorch by {error:.2e} (relative)",
                                  path=path, fix="report this export bug with the reference name and settings")


def export_reference_onnx(name_or_model: str | Teacher, out_dir: str | Path,
                          graphs: tuple[str, ...] = GRAPHS, **overrides: Any) -> dict[str, Path]:
    """Export a reference's encoder and decoder to ONNX (dynamo, opset 18, dynamic objects/points) and check
    ONNX Runtime against PyTorch; returns {"encoder": path, "decoder": path} (``graphs`` picks a subset).

    ``name_or_model``: a reference name (built with random weights and ``overrides``) or a built reference.
    The encoder is checked on its example image, the decoder at (N, P) = (3, 4), (1, 1) and (5, 2); a mismatch
    beyond FP32 tolerance raises ParityError.
    """
    unknown = sorted(set(graphs) - set(GRAPHS))
    if unknown:
        raise InputError(f"unknown graphs {unknown}", fix=f"use a subset of {GRAPHS}")
    if isinstance(name_or_model, str):
        model = build_reference(name_or_model, **overrides)
    elif overrides:
        raise InputError("overrides only apply when a reference is built by name",
                         fix="pass the name with overrides, or a model without them")
    else:
        model = name_or_model
    out_dir = Path(out_dir)
    encoder, encoder_inputs, decoder, decoder_inputs = reference_graphs(model)
    paths = {}
    with warnings.catch_warnings():
        # timm's TinyViT fills a dict cache of attention biases while tracing; every call empties it first.
        warnings.filterwarnings("ignore", message=r"The tensor attributes .*attention_bias_cache")
        if "encoder" in graphs:
            paths["encoder"] = out_dir / "encoder.onnx"
            export_graph(encoder, encoder_inputs, paths["encoder"], encoder.input_names, encoder.output_names,
                         opset=OPSET)
            _check_parity(encoder, paths["encoder"], [encoder_inputs])
        if "decoder" in graphs:
            paths["decoder"] = out_dir / "decoder.onnx"
            export_graph(decoder, decoder_inputs, paths["decoder"], decoder.input_names, decoder.output_names,
                         dynamic_shapes=decoder_dynamic_shapes(decoder), opset=OPSET)
            per_image = decoder_inputs[: -len(PROMPT_NAMES)]
            feeds = [(*per_image, *example_prompts(model.image_size, n, p, model_device(model), seed=n))
                     for n, p in PARITY_PROMPTS]
            _check_parity(decoder, paths["decoder"], feeds)
    return paths
