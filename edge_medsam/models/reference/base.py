"""What the reference models share: their spec, the input check, and an encoder + SAM prompt encoder / decoder."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from edge_medsam.errors import InputError
from edge_medsam.models.sam.components import build_mask_decoder, build_prompt_encoder
from edge_medsam.models.teachers.base import Points, Teacher, TeacherFeatures, TeacherProfile
from edge_medsam.models.teachers.sam_prompts import sam_decode

KIND = "reference"


def reference_spec(name: str, config: Any) -> dict[str, Any]:
    """The model-file spec of a reference: kind, name and every config field (tuples as lists, plain JSON)."""
    fields = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(config).items()}
    return {"kind": KIND, "name": name, **fields}


def check_images(images: torch.Tensor, size: int) -> None:
    """Refuse anything but prepared images [B, 3, size, size]."""
    if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
        raise InputError(f"model input of shape {tuple(images.shape)} is not [B, 3, {size}, {size}]",
                         fix="prepare images with model.prepare (resize, normalise, pad to the model size)")


class SamDecoderReference(Teacher):
    """Any image encoder with SAM's prompt encoder and mask decoder (MobileSAM, LiteMedSAM, EfficientViT-SAM).

    ``encode`` returns the encoder's embedding [B, prompt_dim, g, g]; prompts are decoded as by SAM (model-frame
    pixels; labels -1 pad, 0 negative, 1 positive, 2/3 box corners); low-res logits are 4g x 4g.
    """

    def __init__(self, name: str, config: Any, profile: TeacherProfile, image_encoder: nn.Module, grid: int):
        super().__init__(profile.at_size(config.image_size))
        self.name = name
        self.config = config
        self.image_size = config.image_size
        self.low_res_size = 4 * grid
        self.image_encoder = image_encoder
        self.prompt_encoder = build_prompt_encoder(config.prompt_dim, config.image_size, embedding_size=grid)
        self.mask_decoder = build_mask_decoder(config.prompt_dim, config.decoder_mlp_dim, config.decoder_heads,
                                               config.iou_hidden_dim)

    def encode(self, images: torch.Tensor) -> TeacherFeatures:
        """Prepared images [B, 3, S, S] → image embedding."""
        check_images(images, self.image_size)
        return TeacherFeatures(self.image_encoder(images))

    def decode(self, features: TeacherFeatures, points: Points | None = None, boxes: torch.Tensor | None = None,
               mask_input: torch.Tensor | None = None, multimask: bool | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts → (low-res logits [O, M, 4g, 4g], IoU [O, M]); all objects of all images in one batch."""
        return sam_decode(self, features.embedding, points, boxes, mask_input, multimask)

    def model_spec(self) -> dict[str, Any]:
        """The spec that rebuilds this model with ``edge_medsam.models.reference.build_from_spec``."""
        return reference_spec(self.name, self.config)
