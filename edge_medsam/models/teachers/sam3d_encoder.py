"""The image encoder of the 3D SAM adapter (3DSAM-adapter): SAM's 2D ViT run over a volume, its 2D weights frozen.

Each slice goes through SAM's frozen 16-px patch embedding after an in-plane upsampling by ``upsample``; the
embedded slices are upsampled along depth by the same factor and a depthwise Conv3d (kernel = stride = 16 slices)
folds them into depth tokens, so one token covers ``16 / upsample`` voxels per side (the paper: a 128³ crop
upsampled to 512³ gives 32³ tokens). Upsampling the embedded slices instead of the image is the same linear map
(the patch embedding is linear per slice and interpolation weights sum to 1) at ``upsample`` times less work.

Tokens get SAM's 2D positional table resized to the token grid plus a learned depth embedding. Every block
attends within cubic windows (shifted on even blocks, Swin style) with decomposed relative positions: SAM's
frozen height/width tables plus a new depth table; a spatial adapter (linear → depthwise 3D conv → linear) sits at
each block input. Necks (1x1x1 conv, LayerNorm, 3x3x3 conv, LayerNorm) turn chosen blocks into decoder levels.

Tensors inside the blocks are channels-last ``[B, D, H, W, C]`` as in SAM's 2D encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import MLPBlock
from segment_anything.modeling.image_encoder import PatchEmbed, get_rel_pos
from torch import nn

from edge_medsam.models.sam.arch import SamArch

Size3 = tuple[int, int, int]
SHIFT_MASK = -100.0  # Swin's additive mask between tokens that the cyclic shift brought together


class LayerNorm3d(nn.Module):
    """LayerNorm over the channels of a [B, C, D, H, W] map (SAM's LayerNorm2d one dimension up)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.movedim(1, -1), (x.shape[1],), self.weight, self.bias, self.eps)
        return x.movedim(-1, 1)


def neck3d(dim: int, out_dim: int) -> nn.Sequential:
    """SAM's neck in 3D: Conv 1x1x1 → LayerNorm → Conv 3x3x3 → LayerNorm (indices match SAM's ``neck.0..3``)."""
    return nn.Sequential(nn.Conv3d(dim, out_dim, 1, bias=False), LayerNorm3d(out_dim),
                         nn.Conv3d(out_dim, out_dim, 3, padding=1, bias=False), LayerNorm3d(out_dim))


class SpatialAdapter(nn.Module):
    """x + ReLU(linear2(ReLU(depthwise conv3d(ReLU(linear1(x)))))) on channels-last tokens (3DSAM-adapter)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.conv = nn.Conv3d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.linear2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.linear1(x))
        y = F.relu(self.conv(y.movedim(-1, 1)).movedim(1, -1))
        return x + F.relu(self.linear2(y))


def window_partition(x: torch.Tensor, window: Size3) -> torch.Tensor:
    """[B, D, H, W, C] (each side a multiple of the window) → [B * windows, wd * wh * ww, C]."""
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.view(b, d // wd, wd, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(-1, wd * wh * ww, c)


def window_unpartition(windows: torch.Tensor, window: Size3, size: Size3) -> torch.Tensor:
    """Inverse of window_partition for a grid of ``size``."""
    d, h, w = size
    wd, wh, ww = window
    x = windows.view(-1, d // wd, h // wh, w // ww, wd, wh, ww, windows.shape[-1]).permute(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(-1, d, h, w, windows.shape[-1])


def _bands(size: int, window: int, shift: int) -> tuple[slice, ...]:
    return (slice(0, size - window), slice(size - window, size - shift), slice(size - shift, size)) if shift else \
        (slice(0, size),)


def shift_mask(size: Size3, window: Size3, shift: Size3, device: torch.device) -> torch.Tensor:
    """Additive attention mask [windows, N, N] that keeps shifted windows from mixing regions that are not adjacent."""
    regions = torch.zeros(size, device=device)
    count = 0
    for d in _bands(size[0], window[0], shift[0]):
        for h in _bands(size[1], window[1], shift[1]):
            for w in _bands(size[2], window[2], shift[2]):
                regions[d, h, w] = count
                count += 1
    ids = window_partition(regions[None, ..., None], window)[..., 0]
    return (ids[:, None, :] != ids[:, :, None]).float() * SHIFT_MASK


class Attention3D(nn.Module):
    """SAM's attention with decomposed relative positions along depth, height and width.

    ``qkv``, ``proj``, ``rel_pos_h`` and ``rel_pos_w`` keep SAM's names and shapes (the tables are resized to the
    window by ``get_rel_pos`` as SAM does); ``rel_pos_d`` is new, and ``lr`` scales all three terms.
    """

    def __init__(self, dim: int, num_heads: int, rel_pos_size: int):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(rel_pos_size, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(rel_pos_size, head_dim))
        self.rel_pos_d = nn.Parameter(torch.zeros(rel_pos_size, head_dim))
        self.lr = nn.Parameter(torch.tensor(1.0))

    def _rel_pos_bias(self, q: torch.Tensor, window: Size3) -> torch.Tensor:
        wd, wh, ww = window
        r_q = q.reshape(-1, wd, wh, ww, q.shape[-1])
        rel_d = torch.einsum("bdhwc,dkc->bdhwk", r_q, get_rel_pos(wd, wd, self.rel_pos_d))
        rel_h = torch.einsum("bdhwc,hkc->bdhwk", r_q, get_rel_pos(wh, wh, self.rel_pos_h))
        rel_w = torch.einsum("bdhwc,wkc->bdhwk", r_q, get_rel_pos(ww, ww, self.rel_pos_w))
        bias = rel_d[..., :, None, None] + rel_h[..., None, :, None] + rel_w[..., None, None, :]
        n = wd * wh * ww
        return self.lr * bias.reshape(q.shape[0], q.shape[1], n, n)

    def forward(self, x: torch.Tensor, window: Size3, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Windows [B * windows, N, C] → same shape; ``mask`` [windows, N, N] is added to every image's windows."""
        batch, n, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self._rel_pos_bias(q, window)
        if mask is not None:
            bias = (bias.view(-1, mask.shape[0], self.num_heads, n, n) + mask[None, :, None].to(bias.dtype)).view_as(bias)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(batch, n, dim))


class Block3D(nn.Module):
    """Adapter, then SAM's block (norm1 → windowed 3D attention → residual, norm2 → MLP → residual)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, rel_pos_size: int, window: int, shift: bool,
                 adapter_hidden: int):
        super().__init__()
        self.adapter = SpatialAdapter(dim, adapter_hidden)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention3D(dim, num_heads, rel_pos_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))
        self.window = window
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.adapter(x)
        shortcut = x
        x = self.norm1(x)
        size = tuple(x.shape[1:4])
        # A grid side shorter than the window is one window along it (no padding to 8 for a thin volume).
        window = tuple(min(self.window, s) for s in size)
        shift = tuple(w // 2 if self.shift and s > w else 0 for s, w in zip(size, window, strict=True))
        pads = [(-s) % w for s, w in zip(size, window, strict=True)]
        if any(pads):
            x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        padded = tuple(x.shape[1:4])
        mask = None
        if any(shift):
            x = torch.roll(x, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
            mask = shift_mask(padded, window, shift, x.device)
        x = window_unpartition(self.attn(window_partition(x, window), window, mask), window, padded)
        if any(shift):
            x = torch.roll(x, shifts=shift, dims=(1, 2, 3))
        x = shortcut + x[:, : size[0], : size[1], : size[2]]
        return x + self.mlp(self.norm2(x))


class ImageEncoder3D(nn.Module):
    """SAM's ViT over a [B, 3, D, H, W] volume → decoder levels [B, out_dim, D/t, H/t, W/t] (t = 16 / upsample).

    ``sam_image_size`` is the input size of the SAM weights (1024 official): it fixes the shapes of the frozen
    positional table and of the global blocks' relative-position tables, which are resized on use.
    ``depth_tokens`` is the depth of a training crop in tokens (the learned depth table's length).
    """

    def __init__(self, arch: SamArch, *, sam_image_size: int, upsample: int, depth_tokens: int, window: int,
                 shift_windows: bool, adapter_ratio: float, feature_blocks: Sequence[int], out_dim: int):
        super().__init__()
        dim, patch = arch.embed_dim, arch.patch_size
        grid = sam_image_size // patch
        self.upsample = upsample
        self.feature_blocks = tuple(feature_blocks)
        self.patch_embed = PatchEmbed(kernel_size=(patch, patch), stride=(patch, patch), in_chans=3, embed_dim=dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, dim))
        self.slice_embed = nn.Conv3d(dim, dim, kernel_size=(patch, 1, 1), stride=(patch, 1, 1), groups=dim)
        self.depth_embed = nn.Parameter(torch.zeros(1, depth_tokens, dim))
        self.blocks = nn.ModuleList(
            Block3D(dim, arch.num_heads, arch.mlp_ratio,
                    rel_pos_size=2 * (grid if i in arch.global_attn_indexes else arch.window_size) - 1,
                    window=window, shift=shift_windows and i % 2 == 0,
                    adapter_hidden=max(1, int(dim * adapter_ratio)))
            for i in range(arch.depth))
        self.necks = nn.ModuleList(neck3d(dim, out_dim) for _ in self.feature_blocks)
        with torch.no_grad():
            # Start as the mean of the slice embeddings: a stack of equal slices gives SAM's own patch tokens.
            self.slice_embed.weight.fill_(1.0 / patch)
            self.slice_embed.bias.zero_()

    def positions(self, depth: int, height: int, width: int) -> torch.Tensor:
        """SAM's table resized to the token grid plus the depth table (centre part, or stretched) → [1, D, H, W, C]."""
        table = self.pos_embed.permute(0, 3, 1, 2)
        if tuple(table.shape[-2:]) != (height, width):
            shrink = height <= table.shape[-2] and width <= table.shape[-1]
            table = F.interpolate(table, size=(height, width), mode="area") if shrink else \
                F.interpolate(table, size=(height, width), mode="bicubic", align_corners=False)
        depth_table = self.depth_embed
        length = depth_table.shape[1]
        if depth <= length:
            start = (length - depth) // 2
            depth_table = depth_table[:, start : start + depth]
        else:
            depth_table = F.interpolate(depth_table.transpose(1, 2), size=depth, mode="linear",
                                        align_corners=False).transpose(1, 2)
        return table.permute(0, 2, 3, 1)[:, None] + depth_table[:, :, None, None]

    def tokens(self, volume: torch.Tensor) -> torch.Tensor:
        """[B, 3, D, H, W] → positioned tokens [B, D/t, H/t, W/t, C]."""
        b, _, d, h, w = volume.shape
        slices = volume.transpose(1, 2).reshape(b * d, 3, h, w)
        if self.upsample != 1:
            slices = F.interpolate(slices, scale_factor=self.upsample, mode="bilinear", align_corners=False)
        x = self.patch_embed(slices)
        x = x.reshape(b, d, *x.shape[1:]).permute(0, 4, 1, 2, 3)
        if self.upsample != 1:
            x = F.interpolate(x, scale_factor=(self.upsample, 1, 1), mode="trilinear", align_corners=False)
        x = self.slice_embed(x).permute(0, 2, 3, 4, 1)
        return x + self.positions(*x.shape[1:4])

    def forward(self, volume: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """[B, 3, D, H, W] → (levels [B, out_dim, D/t, H/t, W/t], the tapped blocks' tokens [B, D/t, H/t, W/t, C])."""
        x = self.tokens(volume)
        tapped = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.feature_blocks:
                tapped.append(x)
        levels = [neck(t.permute(0, 4, 1, 2, 3)) for neck, t in zip(self.necks, tapped, strict=True)]
        return levels, tapped
