"""The edge student: semi-shared encoder + SPPG self-prompt + QDMD decoder, one model for every modality."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edge_medsam.models.student.config import StudentConfig
from edge_medsam.models.student.decoder import ModalityDecoder
from edge_medsam.models.student.encoder import AUTO_MODALITY, EncoderOutput, SemiSharedEncoder
from edge_medsam.models.student.prompts import PromptEncoder
from edge_medsam.models.student.sppg import SelfPrompt, SelfPromptGenerator
from edge_medsam.prompt_labels import PAD_LABEL

# Parameter-name fragments of the per-modality (decoupled) parameters; everything else is shared.
MODALITY_PARAMETER_KEYS = ("film16", "film32", "adapter", "mask_queries", "hyper_heads", "hyper_bias")


class EdgeStudent(nn.Module):
    """Encode an image once (with its modality or -1 for auto), then decode any number of prompt sets."""

    def __init__(self, config: StudentConfig, pretrained_trunk: bool = False):
        super().__init__()
        self.config = config
        grid = config.grid
        self.encoder = SemiSharedEncoder(config, pretrained=pretrained_trunk)
        self.sppg = SelfPromptGenerator(config.embed_dim)
        self.prompt_encoder = PromptEncoder(config.embed_dim, config.image_size, grid)
        self.decoder = ModalityDecoder(config)

    def encode(self, image: torch.Tensor, modality: torch.Tensor) -> tuple[EncoderOutput, SelfPrompt]:
        """[B, 3, S, S] preprocessed images and [B] modality indices (-1 = recognise) → features + self-prompt."""
        features = self.encoder(image, modality)
        return features, self.sppg(features.embedding)

    def decode(self, features: EncoderOutput, self_prompt: SelfPrompt, *, image_index: torch.Tensor | None = None,
               points: torch.Tensor | None = None, labels: torch.Tensor | None = None,
               mask_input: torch.Tensor | None = None, has_mask: torch.Tensor | None = None,
               self_prompt_weight: torch.Tensor | float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks [N, K, 4g, 4g] and IoU [N, K] for N objects; ``image_index`` [N] says whose image each is
        (default: one object per image). Points are model-frame pixels with SAM labels; boxes come as corners.

        ``self_prompt_weight`` (scalar or [N]): 1 segments (or, with points, corrects) the automatic foreground;
        None = 1 without points, the config's ``prompted_self_prompt_weight`` (a prompted object) with them."""
        if image_index is None:
            image_index = torch.arange(features.embedding.shape[0], device=features.embedding.device)
        n = image_index.shape[0]
        device, dtype = features.embedding.device, features.embedding.dtype
        if self_prompt_weight is None:
            self_prompt_weight = 1.0 if points is None else self.config.prompted_self_prompt_weight
        if points is None:
            points = torch.zeros(n, 1, 2, device=device, dtype=dtype)
            labels = torch.full((n, 1), PAD_LABEL, device=device, dtype=torch.int64)
        sparse = self.prompt_encoder.embed_points(points, labels)
        weight = torch.as_tensor(self_prompt_weight, device=device, dtype=dtype).reshape(-1)[:, None, None, None]
        dense = self_prompt.dense.index_select(0, image_index) * weight + (1 - weight) * self.sppg.no_prompt
        dense = dense + self.prompt_encoder.spatial(points, labels)
        if mask_input is not None:
            if has_mask is None:
                has_mask = torch.ones(n, device=device, dtype=dtype)
            dense = dense + self.prompt_encoder.embed_mask(mask_input, has_mask)
        return self.decoder(
            features.embedding.index_select(0, image_index), features.skip8.index_select(0, image_index),
            features.skip4.index_select(0, image_index), dense, self.prompt_encoder.dense_pe(), sparse,
            features.modality.index_select(0, image_index))

    def forward(self, image: torch.Tensor, modality: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Fully self-prompted segmentation of a batch: masks, IoU, patch map, confidence, modality."""
        if modality is None:
            modality = torch.full((image.shape[0],), AUTO_MODALITY, dtype=torch.int64, device=image.device)
        features, self_prompt = self.encode(image, modality)
        masks, iou = self.decode(features, self_prompt)
        return {"masks": masks, "iou": iou, "patch_logits": self_prompt.patch_logits,
                "confidence": self_prompt.confidence, "modality_logits": features.modality_logits,
                "modality": features.modality, "embedding": features.embedding}

    def model_spec(self) -> dict[str, Any]:
        """The spec that rebuilds this student with ``build_from_spec`` (weights come from the model file)."""
        return {"kind": "student", "config": self.config.to_dict()}

    def modality_parameters(self) -> list[nn.Parameter]:
        """The per-modality (decoupled) parameters."""
        return [p for name, p in self.named_parameters() if any(k in name for k in MODALITY_PARAMETER_KEYS)]


def build_from_spec(spec: dict[str, Any]) -> EdgeStudent:
    """A freshly initialised student for a ``model_spec()`` (the ``student`` kind of models.files)."""
    return EdgeStudent(StudentConfig.from_dict(spec["config"]))
