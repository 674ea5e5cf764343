"""Export-friendly prompt encoding: points (SAM labels -1 pad, 0 negative, 1 positive, 2/3 box corners) and a
previous mask, written with arithmetic masks instead of Python branches so one ONNX graph takes any prompt mix."""

from __future__ import annotations

import torch
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.prompt_encoder import PositionEmbeddingRandom
from torch import nn

from edge_medsam.models.prompt_maps import SpatialPromptEncoder
from edge_medsam.prompt_labels import PAD_LABEL


class PromptEncoder(nn.Module):
    """Sparse (points/boxes), spatial (the same prompts drawn as maps) and dense (previous mask) prompt embeddings
    for a g x g image embedding."""

    def __init__(self, dim: int, image_size: int, grid: int):
        super().__init__()
        self.image_size = image_size
        self.grid = grid
        self.pe_layer = PositionEmbeddingRandom(dim // 2)
        self.label_embed = nn.Embedding(5, dim)  # rows: pad, negative, positive, box top-left, box bottom-right
        mask_chans = max(dim // 16, 4)  # SAM: 16 for 256 channels
        self.mask_downscaling = nn.Sequential(  # SAM's layout, so a SAM prompt encoder loads into it
            nn.Conv2d(1, mask_chans // 4, 2, stride=2), LayerNorm2d(mask_chans // 4), nn.GELU(),
            nn.Conv2d(mask_chans // 4, mask_chans, 2, stride=2), LayerNorm2d(mask_chans), nn.GELU(),
            nn.Conv2d(mask_chans, dim, 1))
        self.spatial = SpatialPromptEncoder(dim, image_size, grid)

    def dense_pe(self) -> torch.Tensor:
        """[1, D, g, g] positional encoding of the embedding grid."""
        return self.pe_layer((self.grid, self.grid)).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[N, P, 2] model-frame pixel coordinates + [N, P] labels → [N, P, D] tokens."""
        labels = labels.to(torch.int64)
        valid = (labels >= 0).unsqueeze(-1).to(coords.dtype)
        pe = self.pe_layer.forward_with_coords(coords + 0.5, (self.image_size, self.image_size))
        return pe * valid + self.label_embed(labels.clamp(min=PAD_LABEL) + 1)

    def embed_mask(self, mask_input: torch.Tensor, has_mask: torch.Tensor) -> torch.Tensor:
        """[N, 1, 4g, 4g] previous mask logits and [N] 0/1 flags → [N, D, g, g] (zero where there is no mask)."""
        return self.mask_downscaling(mask_input) * has_mask.to(mask_input.dtype)[:, None, None, None]
