"""Spatial prompt maps: boxes and clicks drawn onto the mask grid and embedded like a dense prompt.

SAM localises sparse prompts only through learned positional-encoding geometry, which a model trained from
scratch on a CPU budget does not learn in time (its masks ignore the box and cover every object). Drawing the
same prompts as maps — inside-the-box, positive and negative click bumps — gives the decoder a spatially
aligned signal it picks up within a few hundred steps. Everything is element-wise arithmetic on the SAM point
encoding (labels -1 pad, 0 negative, 1 positive, 2/3 box corners), so one exported graph takes any prompt mix.
"""

from __future__ import annotations

from typing import Any

import torch
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

from edge_medsam.prompt_labels import BOX_BOTTOM_RIGHT, BOX_LABELS, BOX_TOP_LEFT, NEGATIVE, POSITIVE

CHANNELS = 3  # inside a box, near a positive click, near a negative click


def rasterise_prompts(coords: torch.Tensor, labels: torch.Tensor, grid: int, image_size: int,
                      sigma: float | None = None) -> torch.Tensor:
    """Prompts [N, P, 2] (model-frame pixels) + labels [N, P] → maps [N, 3, grid, grid] in [0, 1].

    An object's box is the mean of its top-left and of its bottom-right corners (one box per object); click
    bumps are Gaussians of ``sigma`` model pixels (default: image_size / 32, and at least two grid cells so a
    click stays visible on a coarse grid), their sum clipped at 1.
    """
    sigma = float(sigma if sigma is not None else max(image_size / 32, 2 * image_size / grid))
    dtype = coords.dtype
    centres = (torch.arange(grid, device=coords.device, dtype=dtype) + 0.5) * (image_size / grid)
    gx, gy = centres.view(1, 1, grid), centres.view(1, grid, 1)  # broadcast to [N, grid, grid]
    labels = labels.to(torch.int64)

    def corner(label: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        chosen = (labels == label).to(dtype)  # [N, P]
        count = chosen.sum(1)
        mean = (coords * chosen.unsqueeze(-1)).sum(1) / count.clamp(min=1).unsqueeze(-1)  # [N, 2]
        return mean[:, 0].view(-1, 1, 1), mean[:, 1].view(-1, 1, 1), (count > 0).to(dtype).view(-1, 1, 1)

    x0, y0, has_box = corner(BOX_TOP_LEFT)
    x1, y1, _ = corner(BOX_BOTTOM_RIGHT)
    inside = (gx >= x0).to(dtype) * (gx <= x1).to(dtype) * (gy >= y0).to(dtype) * (gy <= y1).to(dtype) * has_box

    px = coords[..., 0].unsqueeze(-1).unsqueeze(-1)  # [N, P, 1, 1]
    py = coords[..., 1].unsqueeze(-1).unsqueeze(-1)
    bumps = torch.exp(-((gx.unsqueeze(1) - px) ** 2 + (gy.unsqueeze(1) - py) ** 2) / (2 * sigma**2))  # [N, P, g, g]
    positive = (bumps * (labels == POSITIVE).to(dtype)[..., None, None]).sum(1).clamp(max=1)
    negative = (bumps * (labels == NEGATIVE).to(dtype)[..., None, None]).sum(1).clamp(max=1)
    return torch.stack([inside, positive, negative], dim=1)


def prompt_points(prompts: Any, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A teacher's ``PromptBatch`` (points and/or boxes) as one SAM point set per object ([O, P, 2], [O, P]);
    a mask-only or empty prompt becomes one padding point."""
    coords, labels = [], []
    if prompts.points is not None:
        coords.append(prompts.points[0])
        labels.append(prompts.points[1].to(torch.int64))
    if prompts.boxes is not None:
        coords.append(prompts.boxes.reshape(-1, 2, 2))
        labels.append(torch.tensor(BOX_LABELS, device=like.device).expand(prompts.num_objects, 2))
    if not coords:
        return (like.new_zeros(prompts.num_objects, 1, 2),
                torch.full((prompts.num_objects, 1), -1, device=like.device, dtype=torch.int64))
    return torch.cat([c.to(like.dtype) for c in coords], 1), torch.cat(labels, 1)


class SpatialPromptEncoder(nn.Module):
    """Prompt maps at 4x the embedding grid → a [N, D, g, g] dense prompt (SAM's mask-downscaling shape).

    The last layer starts at zero, so adding the encoder to a trained model leaves its outputs unchanged.
    """

    def __init__(self, dim: int, image_size: int, grid: int):
        super().__init__()
        self.image_size = image_size
        self.grid = grid
        hidden = max(dim // 16, 4)
        self.layers = nn.Sequential(
            nn.Conv2d(CHANNELS, hidden, 2, stride=2), LayerNorm2d(hidden), nn.GELU(),
            nn.Conv2d(hidden, hidden * 4, 2, stride=2), LayerNorm2d(hidden * 4), nn.GELU(),
            nn.Conv2d(hidden * 4, dim, 1))
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Points [N, P, 2] + labels [N, P] → [N, D, g, g]."""
        return self.layers(rasterise_prompts(coords, labels, 4 * self.grid, self.image_size))
