"""The two graphs of every reference (encoder once per image, decoder per prompt set) and their ONNX export.

Decoder prompts follow SAM's ONNX convention: ``point_coords [N, P, 2]`` in model-frame pixels and
``point_labels [N, P]`` (1 positive, 0 negative, 2/3 box corners, -1 padding), with no padding point added inside
the graph. The decoder's inputs are the encoder's outputs followed by the prompts (ESP-MedSAM's modality index
passes through its encoder for that), so a harness chains any reference the same way.
"""

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
from edge_medsam.models.reference.esp_medsam import EspMedSam
from edge_medsam.models.reference.registry import build_reference
from edge_medsam.models.sam.components import SamPromptEncoder
from edge_medsam.models.teachers.base import Teacher

EXAMPLE_OBJECTS, EXAMPLE_POINTS = 3, 4  # more than one of each, so neither dimension is specialised
GRAPHS = ("encoder", "decoder")
PARITY_PROMPTS = ((EXAMPLE_OBJECTS, EXAMPLE_POINTS), (1, 1), (5, 2))
PROMPT_NAMES = ("point_coords", "point_labels")
PAD_LABEL = -1  # labels run -1 (padding), 0, 1, 2, 3 (box corners)


def embed_points(prompt_encoder: SamPromptEncoder, point_coords: torch.Tensor, point_labels: torch.Tensor
                 ) -> torch.Tensor:
    """SAM's point tokens [N, P, C] as its ONNX export computes them: no padding point added, label embeddings
    selected by arithmetic masks (the same values as the prompt encoder's boolean indexing, without the
    data-dependent shapes that indexing puts into an exported graph)."""
    tokens = prompt_encoder.pe_layer.forward_with_coords(point_coords + 0.5, prompt_encoder.input_image_size)
    labels = point_labels.unsqueeze(-1)
    tokens = tokens * (labels != PAD_LABEL).to(tokens.dtype)
    tables = [prompt_encoder.not_a_point_embed.weight, *(e.weight for e in prompt_encoder.point_embeddings)]
    for label, table in enumerate(tables, start=PAD_LABEL):
        tokens = tokens + table * (labels == label).to(tokens.dtype)
    return tokens


class SamEncoderGraph(nn.Module):
    """image [1, 3, S, S] → image_embeddings [1, C, g, g]."""

    input_names = ("image",)
    output_names = ("image_embeddings",)

    def __init__(self, model: Teacher):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.image_encoder(image)


class SamDecoderGraph(nn.Module):
    """image_embeddings [1, C, g, g] + N objects' prompts → masks [N, M, 4g, 4g], iou_predictions [N, M]."""

    input_names = ("image_embeddings", *PROMPT_NAMES)
    output_names = ("masks", "iou_predictions")

    def __init__(self, model: Teacher):
        super().__init__()
        self.model = model
        self.multimask = model.profile.multimask

    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor,
                point_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        objects = point_coords.shape[0]
        prompt_encoder = self.model.prompt_encoder
        dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(objects, -1,
                                                                               *image_embeddings.shape[-2:])
        return self.model.mask_decoder(image_embeddings=image_embeddings.expand(objects, -1, -1, -1),
                                       image_pe=prompt_encoder.get_dense_pe(),
                                       sparse_prompt_embeddings=embed_points(prompt_encoder, point_coords,
                                                                             point_labels),
                                       dense_prompt_embeddings=dense, multimask_output=self.multimask)


class EspEncoderGraph(nn.Module):
    """image [1, 3, S, S] + modality_index [1] int64 → image_embeddings, dense_prompt (SPPG), modality [1]."""

    input_names = ("image", "modality_index")
    output_names = ("image_embeddings", "dense_prompt", "modality")

    def __init__(self, model: EspMedSam):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, modality_index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        embedding = self.model.encode_with(image, modality_index)
        return embedding, self.model.self_prompt(embedding), modality_index.clone()


class EspDecoderGraph(nn.Module):
    """ESP encoder outputs + N objects' prompts → masks [N, 1, 4g, 4g], iou_predictions [N, 1]."""

    input_names = ("image_embeddings", "dense_prompt", "modality", *PROMPT_NAMES)
    output_names = ("masks", "iou_predictions")

    def __init__(self, model: EspMedSam):
        super().__init__()
        self.model = model

    def forward(self, image_embeddings: torch.Tensor, dense_prompt: torch.Tensor, modality: torch.Tensor,
                point_coords: torch.Tensor, point_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        objects = point_coords.shape[0]
        return self.model.decode_objects(image_embeddings.expand(objects, -1, -1, -1),
                                         dense_prompt.expand(objects, -1, -1, -1), modality.expand(objects),
                                         embed_points(self.model.prompt_encoder, point_coords, point_labels))


def example_prompts(image_size: int, objects: int, points: int, device: torch.device | str = "cpu",
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random points [N, P, 2] inside the frame with labels cycling positive, negative, box corners."""
    coords = torch.rand(objects, points, 2, generator=torch.Generator().manual_seed(seed)) * image_size
    labels = torch.tensor([1.0, 0.0, 2.0, 3.0] * points)[:points].expand(objects, points).contiguous()
    return coords.to(device), labels.to(device)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def reference_graphs(model: Teacher) -> tuple[nn.Module, tuple[torch.Tensor, ...], nn.Module, tuple[torch.Tensor, ...]]:
    """(encoder graph, its example inputs, decoder graph, its example inputs) of a reference model, in eval mode.

    Each graph module names its inputs and outputs (``input_names``, ``output_names``); the decoder's example
    inputs are the encoder's output shapes (random values) plus prompts with N = 3 objects of P = 4 points.
    """
    model.eval()
    device, size = _device(model), model.image_size
    grid, dim = model.low_res_size // 4, model.prompt_encoder.embed_dim
    image = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    embedding = torch.randn(1, dim, grid, grid, generator=torch.Generator().manual_seed(1)).to(device)
    prompts = example_prompts(size, EXAMPLE_OBJECTS, EXAMPLE_POINTS, device)
    if isinstance(model, EspMedSam):
        modality = torch.tensor([model.config.modality], dtype=torch.int64, device=device)
        dense = torch.randn(1, dim, grid, grid, generator=torch.Generator().manual_seed(2)).to(device)
        return (EspEncoderGraph(model).eval(), (image, modality), EspDecoderGraph(model).eval(),
                (embedding, dense, modality, *prompts))
    return SamEncoderGraph(model).eval(), (image,), SamDecoderGraph(model).eval(), (embedding, *prompts)


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
            feeds = [(*per_image, *example_prompts(model.image_size, n, p, _device(model), seed=n))
                     for n, p in PARITY_PROMPTS]
            _check_parity(decoder, paths["decoder"], feeds)
    return paths
