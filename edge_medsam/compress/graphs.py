"""The two exported graphs as thin modules around the student, with the I/O of the bundle contract.

``EncoderGraph``: one image + modality [1] (-1 = recognise) → the eight ENCODER_IO outputs.
``DecoderGraph``: one image's encoder outputs (batch 1, expanded to the N objects inside the graph) + prompts →
masks [N, K, 4g, 4g] and IoU [N, K]. Names, order and shapes come from ``edge_medsam.runtime.manifest``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edge_medsam.models.student import EdgeStudent, StudentConfig
from edge_medsam.models.student.encoder import EncoderOutput
from edge_medsam.models.student.sppg import SelfPrompt
from edge_medsam.runtime.manifest import DECODER_IO, ENCODER_IO

ENCODER_INPUTS = [name for name, _, _ in ENCODER_IO["inputs"]]
ENCODER_OUTPUTS = [name for name, _, _ in ENCODER_IO["outputs"]]
DECODER_INPUTS = [name for name, _, _ in DECODER_IO["inputs"]]
DECODER_OUTPUTS = [name for name, _, _ in DECODER_IO["outputs"]]
DYNAMIC_DIMS = ("objects", "points")


class EncoderGraph(nn.Module):
    """image [1, 3, S, S] + modality [1] int64 → embedding, skips, self-prompt and modality outputs."""

    def __init__(self, student: EdgeStudent):
        super().__init__()
        self.student = student

    def forward(self, image: torch.Tensor, modality: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features, prompt = self.student.encode(image, modality)
        return (features.embedding, features.skip8, features.skip4, prompt.dense, prompt.patch_logits,
                prompt.confidence, features.modality_logits, features.modality)


class DecoderGraph(nn.Module):
    """One image's encoder outputs + N objects' prompts → masks [N, K, 4g, 4g] and IoU [N, K]."""

    def __init__(self, student: EdgeStudent):
        super().__init__()
        self.student = student

    def forward(self, embedding: torch.Tensor, skip8: torch.Tensor, skip4: torch.Tensor, dense_prompt: torch.Tensor,
                modality_index: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                mask_input: torch.Tensor, has_mask_input: torch.Tensor,
                self_prompt_weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The modality logits and patch map are not used by decode; the dense prompt stands in for them.
        features = EncoderOutput(embedding, skip8, skip4, dense_prompt, modality_index)
        prompt = SelfPrompt(dense_prompt, dense_prompt, dense_prompt)
        # Every object belongs to the one image: gather index 0 N times (N comes from the prompts' shape).
        image_index = torch.zeros_like(point_coords[:, 0, 0], dtype=torch.int64)
        return self.student.decode(features, prompt, image_index=image_index, points=point_coords,
                                   labels=point_labels, mask_input=mask_input, has_mask=has_mask_input,
                                   self_prompt_weight=self_prompt_weight)


def graph_dims(config: StudentConfig) -> dict[str, int]:
    """Values of the symbolic sizes in ENCODER_IO / DECODER_IO for a student configuration."""
    g = config.grid
    return {"S": config.image_size, "g": g, "2g": 2 * g, "4g": 4 * g, "D": config.embed_dim, "C": config.skip_dim,
            "M": config.modality_slots, "K": config.num_masks}


def resolve_shape(shape: list[str | int], dims: dict[str, int]) -> list[str | int]:
    """A contract shape with its fixed symbols replaced by numbers (dynamic names such as "objects" stay)."""
    return [dims.get(d, d) if isinstance(d, str) else d for d in shape]


def encoder_example(config: StudentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Example (image, modality) for tracing the encoder; modality -1 so the recognition path is traced live."""
    image = torch.randn(1, 3, config.image_size, config.image_size, generator=torch.Generator().manual_seed(0))
    return image, torch.tensor([-1], dtype=torch.int64)


def decoder_example(encoder_outputs: tuple[torch.Tensor, ...], objects: int = 3, points: int = 4) -> tuple[torch.Tensor, ...]:
    """Example decoder inputs; more than one object and point so neither dimension is specialised to 1."""
    embedding, skip8, skip4, dense, *_, modality = encoder_outputs
    side = skip4.shape[-1]
    generator = torch.Generator().manual_seed(0)
    coords = torch.rand(objects, points, 2, generator=generator) * side * 4
    labels = torch.tensor([1.0, 0.0, 2.0, 3.0] * points, dtype=torch.float32)[:points].expand(objects, points)
    return (embedding, skip8, skip4, dense, modality, coords, labels.contiguous(),
            torch.zeros(objects, 1, side, side), torch.zeros(objects), torch.ones(objects))


def decoder_dynamic_shapes() -> dict[str, Any]:
    """torch.export dynamic shapes: one shared Dim for objects and one for points across every prompt input."""
    objects = torch.export.Dim("objects", min=1, max=1024)
    points = torch.export.Dim("points", min=1, max=256)
    per_image = dict.fromkeys(("embedding", "skip8", "skip4", "dense_prompt", "modality_index"))
    return {**per_image, "point_coords": {0: objects, 1: points}, "point_labels": {0: objects, 1: points},
            "mask_input": {0: objects}, "has_mask_input": {0: objects}, "self_prompt_weight": {0: objects}}
