"""EfficientViT-SAM's image encoder: timm's EfficientViT (MIT) L-series trunk + the SAM neck of mit-han-lab/efficientvit.

timm 1.0.31 registers ``efficientvit_l1``–``l3`` but not L0 (its ``efficientvit_l0_sam`` entry is commented out);
L0 is L1's widths (32, 64, 128, 256, 512) with depths (1, 1, 1, 4, 4) and BatchNorm eps 1e-6, as that entry says.
The neck (``SamNeck`` of efficientvit/models/efficientvit/sam.py): the stride 8/16/32 stage outputs each go through
a 1x1 conv + BatchNorm and bicubic resizing to the S/8 grid, are summed, pass ``neck_depth`` residual FusedMBConv
blocks (expand ratio 1) and a 1x1 conv to the prompt width, then a LayerNorm2d.
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from timm.layers import GELUTanh, LayerNorm2d
from timm.models.efficientvit_mit import ConvNormAct, FusedMBConv, ResidualBlock
from torch import nn

from edge_medsam.errors import InputError

STRIDE = 8  # the embedding grid is the stride-8 stage's
FEATURE_STAGES = (1, 2, 3)  # timm stage indices at strides 8, 16, 32 (MIT's stage2, stage3, stage4)


@dataclass(frozen=True)
class EfficientVitSamConfig:
    """EfficientViT-SAM (defaults: L0 at 512)."""

    image_size: int = 512
    widths: tuple[int, ...] = (32, 64, 128, 256, 512)
    depths: tuple[int, ...] = (1, 1, 1, 4, 4)
    head_dim: int = 32
    neck_width: int = 256
    neck_depth: int = 4
    prompt_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_hidden_dim: int = 256

    def __post_init__(self) -> None:
        if len(self.widths) != 5 or len(self.depths) != 5:
            raise InputError("EfficientViT-L has a stem and four stages", fix="give five widths and five depths")
        if self.image_size % 32:
            raise InputError(f"input size {self.image_size} is not a multiple of 32", fix="use 512 or 1024")

    @property
    def grid(self) -> int:
        """Side of the image embedding."""
        return self.image_size // STRIDE


class EfficientVitSamEncoder(nn.Module):
    """Images [B, 3, S, S] → SAM image embedding [B, prompt_dim, S/8, S/8]."""

    def __init__(self, config: EfficientVitSamConfig):
        super().__init__()
        self.grid = config.grid
        self.backbone = timm.create_model("efficientvit_l1", pretrained=False, features_only=True,
                                          out_indices=FEATURE_STAGES, widths=tuple(config.widths),
                                          depths=tuple(config.depths), head_dim=config.head_dim, norm_eps=1e-6)
        width = config.neck_width
        self.inputs = nn.ModuleList(ConvNormAct(channels, width, 1, act_layer=None)
                                    for channels in self.backbone.feature_info.channels())
        self.middle = nn.Sequential(*(
            ResidualBlock(FusedMBConv(width, width, expand_ratio=1, act_layer=(GELUTanh, None)), nn.Identity())
            for _ in range(config.neck_depth)))
        self.output = nn.Conv2d(width, config.prompt_dim, 1)
        self.norm = LayerNorm2d(config.prompt_dim, eps=1e-5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = (self.grid, self.grid)
        merged = None
        for features, project in zip(self.backbone(images), self.inputs, strict=True):
            features = project(features)
            if tuple(features.shape[-2:]) != size:
                features = F.interpolate(features, size=size, mode="bicubic", align_corners=False)
            merged = features if merged is None else merged + features
        return self.norm(self.output(self.middle(merged)))
