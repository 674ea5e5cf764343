"""SPPG, the self-patch prompt generator: a patch-level foreground map, its confidence, and the dense prompt
it becomes (softly gated by that confidence, falling back to the "no mask" embedding when unsure)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from segment_anything.modeling.common import LayerNorm2d
from torch import nn


@dataclass
class SelfPrompt:
    """The self-prompt of a batch of images."""

    patch_logits: torch.Tensor  # [B, 1, g, g] foreground logits per embedding patch
    confidence: torch.Tensor  # [B] in (0, 1): predicted Dice of the patch map
    dense: torch.Tensor  # [B, D, g, g] dense prompt embedding for the decoder


class SelfPromptGenerator(nn.Module):
    """Embedding → patch foreground map → confidence-gated dense prompt."""

    def __init__(self, dim: int):
        super().__init__()
        self.patch_head = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1), LayerNorm2d(dim // 2), nn.GELU(),
                                        nn.Conv2d(dim // 2, 1, 1))
        self.confidence_head = nn.Sequential(nn.Linear(dim + 2, 64), nn.GELU(), nn.Linear(64, 1))
        self.prompter = nn.Sequential(nn.Conv2d(1, dim // 4, 1), LayerNorm2d(dim // 4), nn.GELU(),
                                      nn.Conv2d(dim // 4, dim, 1))
        self.no_prompt = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, embedding: torch.Tensor) -> SelfPrompt:
        logits = self.patch_head(embedding)
        prob = torch.sigmoid(logits)
        certainty = (2 * prob - 1).abs().mean(dim=(1, 2, 3))
        coverage = prob.mean(dim=(1, 2, 3))
        stats = torch.cat([embedding.mean(dim=(2, 3)), certainty[:, None], coverage[:, None]], dim=1)
        confidence = torch.sigmoid(self.confidence_head(stats)).squeeze(1)
        gate = confidence[:, None, None, None]
        dense = gate * self.prompter(prob) + (1 - gate) * self.no_prompt
        return SelfPrompt(logits, confidence, dense)
