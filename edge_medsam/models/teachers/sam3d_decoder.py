"""Prompting and decoding of the 3D SAM adapter: the point "visual sampler" and the multi-level 3D head.

Point prompts (3DSAM-adapter): each point's token is the image embedding sampled at the point (trilinear
``grid_sample``) plus a 3D random-Fourier positional encoding. In each two-way layer a few learnable global
queries attend together with the point tokens, then every image token attends to the queries; the result is the
prompted embedding. Unlike the paper's unlabeled points, tokens also carry a label embedding (negative, positive,
box corner) and padding points (label -1) become a learned "not a point" token, as in SAM, so negative clicks
and boxes (two corner points) are prompts too.

The head (the paper's multi-level aggregation): every level passes two conv-norm-ReLU layers (MONAI
UnetBasicBlock), is upsampled x2, the levels are concatenated and fused (MONAI Convolution), a 1x1x1 conv gives
the logits, upsampled to voxels. Added to the paper: the fused features sampled at the positive clicks form a
prototype whose cosine similarity to every voxel is added to the logits: "the object under the clicks" is then
learnt in tens of steps, where the attention path alone had not learnt it after 300 (docs/teacher_families.md).
Coordinates are voxel (x, y, z) = (W, H, D) indices, as SAM's are (x, y) pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, UnetBasicBlock
from segment_anything.modeling.common import MLPBlock
from segment_anything.modeling.transformer import Attention
from torch import nn

POINT_LABELS = 4  # 0 negative, 1 positive, 2 box corner (low x, y, z), 3 box corner (high x, y, z)
BOX_LOW, BOX_HIGH = 2, 3


class PositionEmbedding3D(nn.Module):
    """Random-Fourier encoding of (x, y, z) in [0, 1]; the Gaussian matrix is a saved buffer, as in SAM."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(3, dim // 2))

    def encode(self, unit: torch.Tensor) -> torch.Tensor:
        """[..., 3] coordinates in [0, 1] → [..., dim]."""
        projected = 2 * math.pi * ((2 * unit - 1) @ self.positional_encoding_gaussian_matrix.to(unit.dtype))
        return torch.cat([projected.sin(), projected.cos()], dim=-1)

    def grid(self, size: tuple[int, int, int], like: torch.Tensor) -> torch.Tensor:
        """Encoding of every token centre of a (D, H, W) grid → [D * H * W, dim]."""
        axes = [(torch.arange(n, device=like.device, dtype=like.dtype) + 0.5) / n for n in size]
        z, y, x = torch.meshgrid(*axes, indexing="ij")
        return self.encode(torch.stack([x, y, z], dim=-1).reshape(-1, 3))


class QueryLayer(nn.Module):
    """Global queries + point tokens self-attend; queries go through an MLP; image tokens attend to the queries."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, num_queries: int):
        super().__init__()
        self.global_query = nn.Parameter(0.1 * torch.randn(1, num_queries, dim))
        self.self_attn = Attention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim, nn.ReLU)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, num_heads, downsample_rate=2)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, points: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        queries = self.global_query.expand(points.shape[0], -1, -1).to(points.dtype)
        tokens = torch.cat([queries, points], dim=1)
        tokens = self.norm1(tokens + self.self_attn(q=tokens, k=tokens, v=tokens))
        count = queries.shape[1]
        queries, points = tokens[:, :count], tokens[:, count:]
        queries = self.norm2(queries + self.mlp(queries))
        image = self.norm3(image + self.cross_attn_image_to_token(q=image + image_pe, k=queries, v=queries))
        return image, points


class PointPromptEncoder(nn.Module):
    """Points sampled from the deepest level → the prompted deepest level (the paper's prompt encoder)."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_dim: int, num_queries: int):
        super().__init__()
        self.pe_layer = PositionEmbedding3D(dim)
        self.label_embed = nn.Embedding(POINT_LABELS, dim)
        self.not_a_point_embed = nn.Embedding(1, dim)
        self.layers = nn.ModuleList(QueryLayer(dim, num_heads, mlp_dim, num_queries) for _ in range(depth))

    def forward(self, embedding: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor,
                volume_size: tuple[int, int, int]) -> torch.Tensor:
        """embedding [O, C, d, h, w], coords [O, N, 3] voxel (x, y, z), labels [O, N] in a (D, H, W) volume."""
        objects, dim = embedding.shape[:2]
        extent = coords.new_tensor(volume_size[::-1])  # x, y, z extents
        unit = (coords + 0.5) / extent
        grid = (2 * unit - 1).to(embedding.dtype).view(objects, 1, 1, -1, 3)
        sampled = F.grid_sample(embedding, grid, mode="bilinear", align_corners=False).view(objects, dim, -1)
        tokens = sampled.transpose(1, 2) + self.pe_layer.encode(unit.to(embedding.dtype)) \
            + self.label_embed(labels.clamp(0, POINT_LABELS - 1)).to(embedding.dtype)
        tokens = torch.where((labels < 0)[..., None], self.not_a_point_embed.weight.to(tokens.dtype), tokens)
        size = tuple(embedding.shape[2:])
        image = embedding.flatten(2).transpose(1, 2)
        image_pe = self.pe_layer.grid(size, image)[None]
        for layer in self.layers:
            image, tokens = layer(image, image_pe, tokens)
        return image.transpose(1, 2).reshape(embedding.shape)


def click_anchors(coords: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where an object's prototype is sampled: its positive clicks, or its box centre when it has no positive one
    → (anchors [O, N + 1, 3], weights [O, N + 1])."""
    positive = labels == 1
    corners = (labels == BOX_LOW) | (labels == BOX_HIGH)
    corner_weights = corners.to(coords.dtype)[..., None]
    centre = (coords * corner_weights).sum(1) / corner_weights.sum(1).clamp_min(1)
    use_centre = ~positive.any(dim=1) & corners.any(dim=1)
    return torch.cat([coords, centre[:, None]], dim=1), torch.cat([positive, use_centre[:, None]], dim=1)


def prototype_similarity(features: torch.Tensor, anchors: torch.Tensor, weights: torch.Tensor,
                         size: tuple[int, int, int]) -> torch.Tensor:
    """Cosine similarity [O, 1, d, h, w] of every mean-centred feature to the mean feature at the anchors (voxel
    x, y, z of a (D, H, W) volume that ``features`` [O, C, d, h, w] cover); 0 for objects without anchors."""
    objects, channels = features.shape[:2]
    extent = anchors.new_tensor(size[::-1])
    grid = (2 * (anchors + 0.5) / extent - 1).to(features.dtype).view(objects, 1, 1, -1, 3)
    sampled = F.grid_sample(features, grid, mode="bilinear", align_corners=False).view(objects, channels, -1)
    w = weights.to(features.dtype)[:, None]
    mean = features.flatten(2).mean(-1)
    prototype = (sampled * w).sum(-1) / w.sum(-1).clamp_min(1) - mean
    prototype = F.normalize(prototype, dim=1) * (w.sum(-1) > 0)
    centred = F.normalize(features - mean[..., None, None, None], dim=1)
    return torch.einsum("oc,ocdhw->odhw", prototype, centred)[:, None]


class MultiLevelHead(nn.Module):
    """Levels [O, C, d, h, w] and the clicks' anchors → one mask logit map [O, 1, D, H, W] at voxel resolution.

    The paper's head (per-level conv blocks, x2 upsampling, fusion, a 1x1x1 classifier) plus a prototype term:
    the fused features sampled at the positive clicks (the paper's visual sampler, applied to the decoder's
    features) give a prototype whose cosine similarity to every voxel's features is added, scaled, to the logits.
    """

    def __init__(self, levels: int, dim: int, width: int):
        super().__init__()
        self.heads = nn.ModuleList(UnetBasicBlock(3, dim, width, kernel_size=3, stride=1, norm_name="instance",
                                                  act_name="relu") for _ in range(levels))
        self.fuse = Convolution(3, levels * width, width, kernel_size=3, norm="instance", act="relu")
        self.classify = nn.Conv3d(width, 1, kernel_size=1)
        # Start with similarity 0.5 as the decision boundary: logit = 10 * cos - 5.
        self.similarity_scale = nn.Parameter(torch.tensor(10.0))
        self.similarity_bias = nn.Parameter(torch.tensor(-5.0))

    def forward(self, levels: list[torch.Tensor], anchors: torch.Tensor, weights: torch.Tensor,
                size: tuple[int, int, int]) -> torch.Tensor:
        maps = [F.interpolate(head(level), scale_factor=2, mode="trilinear", align_corners=False)
                for head, level in zip(self.heads, levels, strict=True)]
        features = self.fuse(torch.cat(maps, dim=1))
        similarity = prototype_similarity(features, anchors, weights, size)
        anchored = weights.any(dim=1).to(features.dtype).view(-1, 1, 1, 1, 1)
        logits = self.classify(features) + anchored * (self.similarity_scale * similarity + self.similarity_bias)
        return F.interpolate(logits, size=size, mode="trilinear", align_corners=False)
