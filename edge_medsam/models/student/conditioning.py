"""Per-modality parameters gathered inside the graph by a modality index: kilobytes per modality."""

from __future__ import annotations

import torch
from torch import nn


class ModalityFiLM(nn.Module):
    """Per-modality channel scale and shift: ``x * (1 + gamma[m]) + beta[m]`` (identity at initialisation)."""

    def __init__(self, slots: int, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(slots, channels))
        self.beta = nn.Parameter(torch.zeros(slots, channels))

    def forward(self, x: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        gamma = self.gamma[modality].unsqueeze(-1).unsqueeze(-1)
        beta = self.beta[modality].unsqueeze(-1).unsqueeze(-1)
        return x * (1 + gamma) + beta


class ModalityLowRank(nn.Module):
    """Per-modality low-rank residual 1x1 map: ``x + up[m] @ down[m] @ x`` (zero at initialisation)."""

    def __init__(self, slots: int, channels: int, rank: int):
        super().__init__()
        self.down = nn.Parameter(torch.randn(slots, rank, channels) * channels**-0.5)
        self.up = nn.Parameter(torch.zeros(slots, channels, rank))

    def forward(self, x: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        flat = x.reshape(b, c, h * w)
        delta = torch.bmm(self.up[modality], torch.bmm(self.down[modality], flat))
        return x + delta.reshape(b, c, h, w)
