"""TinyViT image encoders of MobileSAM and LiteMedSAM, built from timm's TinyViT.

MobileSAM's encoder is timm's ``tiny_vit_5m`` trunk with two changes: the last patch merging keeps stride 1
(MobileSAM sets it for out_dim 320/448/576), so features stay at 1/16, and a SAM neck (1x1 conv, LayerNorm2d,
3x3 conv, LayerNorm2d) replaces the classifier. LiteMedSAM additionally swaps the two stride-2 3x3 patch-embedding
convs for 1x1 stride-1 convs (``tiny_vit_sam.py`` of its release), so a 256 input keeps 1024-input feature map sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
from segment_anything.modeling.common import LayerNorm2d
from timm.models.tiny_vit import Attention, ConvNorm, TinyVit
from torch import nn

from edge_medsam.errors import InputError

PATCH_EMBEDS = ("strided", "pointwise")


@dataclass(frozen=True)
class TinyVitSamConfig:
    """A TinyViT encoder with SAM's prompt encoder and mask decoder (defaults: MobileSAM at 1024)."""

    image_size: int = 1024
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    patch_embed: str = "strided"  # "pointwise": LiteMedSAM's 1x1 stride-1 patch embedding
    prompt_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_hidden_dim: int = 256

    def __post_init__(self) -> None:
        if self.patch_embed not in PATCH_EMBEDS:
            raise InputError(f"unknown TinyViT patch embedding {self.patch_embed!r}", fix=f"use one of {PATCH_EMBEDS}")
        lengths = {len(self.embed_dims), len(self.depths), len(self.num_heads), len(self.window_sizes)}
        if lengths != {4}:
            raise InputError("TinyViT needs four stages", fix="give four embed_dims, depths, num_heads and window_sizes")
        if self.image_size % self.stride:
            raise InputError(f"input size {self.image_size} is not a multiple of {self.stride}",
                             fix=f"use a multiple of {self.stride}")

    @property
    def stride(self) -> int:
        """Input pixels per embedding cell: 16, or 4 with the pointwise patch embedding."""
        return 16 if self.patch_embed == "strided" else 4

    @property
    def grid(self) -> int:
        """Side of the image embedding."""
        return self.image_size // self.stride


def build_tinyvit_trunk(config: TinyVitSamConfig) -> TinyVit:
    """timm's TinyViT with MobileSAM's stride-1 last merging (and LiteMedSAM's 1x1 patch embedding if asked)."""
    trunk = timm.create_model("tiny_vit_5m_224", pretrained=False, num_classes=0, embed_dims=list(config.embed_dims),
                              depths=list(config.depths), num_heads=list(config.num_heads),
                              window_sizes=list(config.window_sizes), drop_path_rate=0.0)
    trunk.head = nn.Identity()  # SAM encoders end in a neck, not in a classifier
    trunk.stages[-1].downsample.conv2.conv.stride = (1, 1)
    if config.patch_embed == "pointwise":
        width = config.embed_dims[0]
        trunk.patch_embed.conv1 = ConvNorm(3, width // 2, 1, 1, 0)
        trunk.patch_embed.conv2 = ConvNorm(width // 2, width, 1, 1, 0)
        trunk.patch_embed.stride = 1
    return trunk


def sam_neck(in_dim: int, out_dim: int) -> nn.Sequential:
    """SAM's (and MobileSAM's) encoder neck: 1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d."""
    return nn.Sequential(nn.Conv2d(in_dim, out_dim, 1, bias=False), LayerNorm2d(out_dim),
                         nn.Conv2d(out_dim, out_dim, 3, padding=1, bias=False), LayerNorm2d(out_dim))


def clear_attention_bias_caches(trunk: nn.Module) -> None:
    """Empty timm TinyViT's eval-mode caches of gathered attention biases.

    A cache filled while torch.export traces holds fake tensors, and one filled before ``load_state_dict`` holds
    stale values; gathering afresh per call costs one index per block.
    """
    for module in trunk.modules():
        if isinstance(module, Attention):
            module.attention_bias_cache = {}


class TinyVitSamEncoder(nn.Module):
    """Images [B, 3, S, S] → SAM image embedding [B, prompt_dim, S/16, S/16] (S/4 for the pointwise variant)."""

    def __init__(self, config: TinyVitSamConfig):
        super().__init__()
        self.trunk = build_tinyvit_trunk(config)
        self.neck = sam_neck(config.embed_dims[-1], config.prompt_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        clear_attention_bias_caches(self.trunk)
        return self.neck(self.trunk.forward_features(images))
