"""SAM-Med2D's encoder adapter as released (not as drawn in its paper) and the block that carries it.

The released code adds one adapter per transformer block, in parallel with the MLP on the ``norm2`` output:
``x = x + attn(norm1(x)); x = x + mlp(norm2(x)) + Adapter(norm2(x))``. The adapter is a squeeze-excite channel
gate followed by a stride-2 conv / transposed-conv spatial branch, a skip connection and a LayerNorm.
Module names match the released checkpoint: ``blocks.N.Adapter.{norm, channel.0, channel.2, spatial.0, spatial.2}``.
"""

from __future__ import annotations

import torch
from segment_anything.modeling.image_encoder import Block, window_partition, window_unpartition
from torch import nn

ADAPTER_KEY = ".Adapter."


class Med2DAdapter(nn.Module):
    """SAM-Med2D adapter on (B, H, W, C) tokens: channel gate, spatial conv branch, skip, LayerNorm."""

    def __init__(self, dim: int, reduction: int = 4):
        super().__init__()
        hidden = dim // reduction
        # The release builds this LayerNorm with PyTorch's default eps (1e-5), unlike the trunk's 1e-6.
        self.norm = nn.LayerNorm(dim)
        self.channel = nn.Sequential(
            nn.Linear(dim, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, dim, bias=False), nn.Sigmoid()
        )
        self.spatial = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=3, stride=2, padding=1, bias=False),
            nn.ReLU(),
            nn.ConvTranspose2d(dim, dim, kernel_size=4, stride=2, padding=1, bias=False),
            nn.ReLU(),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """SAM-Med2D's initialisation: Kaiming-normal (fan_out, ReLU) weights, identity LayerNorm."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        self.norm.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = x.permute(0, 3, 1, 2)
        gate = self.channel(maps.mean(dim=(2, 3)))
        spatial = self.spatial(maps * gate[:, :, None, None])
        return self.norm((maps + spatial).permute(0, 2, 3, 1))


class AdaptedBlock(Block):
    """The official SAM ViT block with a SAM-Med2D adapter in parallel with its MLP."""

    def __init__(self, dim: int, num_heads: int, **block_kwargs):
        super().__init__(dim, num_heads, **block_kwargs)
        self.Adapter = Med2DAdapter(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            height, width = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window_size)
        x = self.attn(x)
        if self.window_size > 0:
            x = window_unpartition(x, self.window_size, pad_hw, (height, width))
        x = shortcut + x
        normed = self.norm2(x)
        return x + self.mlp(normed) + self.Adapter(normed)


def is_adapter_key(name: str) -> bool:
    """Whether a parameter name belongs to a SAM-Med2D adapter (the rule SAM-Med2D's train.py freezes by)."""
    return ADAPTER_KEY in f".{name}"
