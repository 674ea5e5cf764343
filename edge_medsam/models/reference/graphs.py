"""The two graphs of every reference (encoder once per image, decoder per prompt set), ready for ONNX export
(``edge_medsam.compress.reference_export``).

Decoder prompts follow SAM's ONNX convention: ``point_coords [N, P, 2]`` in model-frame pixels and
``point_labels [N, P]`` (1 positive, 0 negative, 2/3 box corners, -1 padding), with no padding point added inside
the graph. The decoder's inputs are the encoder's outputs followed by the prompts (ESP-MedSAM's modality index
passes through its encoder for that), so a harness chains any reference the same way.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_medsam.models.reference.esp_medsam import EspMedSam
from edge_medsam.models.sam.components import SamPromptEncoder
from edge_medsam.models.teachers.base import Teacher
from edge_medsam.prompt_labels import PAD_LABEL

EXAMPLE_OBJECTS, EXAMPLE_POINTS = 3, 4  # more than one of each, so neither dimension is specialised
GRAPHS = ("encoder", "decoder")
PARITY_PROMPTS = ((EXAMPLE_OBJECTS, EXAMPLE_POINTS), (1, 1), (5, 2))
PROMPT_NAMES = ("point_coords", "point_labels")


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


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's parameters."""
    return next(model.parameters()).device


def reference_graphs(model: Teacher) -> tuple[nn.Module, tuple[torch.Tensor, ...], nn.Module, tuple[torch.Tensor, ...]]:
    """(encoder graph, its example inputs, decoder graph, its example inputs) of a reference model, in eval mode.

    Each graph module names its inputs and outputs (``input_names``, ``output_names``); the decoder's example
    inputs are the encoder's output shapes (random values) plus prompts with N = 3 objects of P = 4 points.
    """
    model.eval()
    device, size = model_device(model), model.image_size
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
