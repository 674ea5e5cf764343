"""Torch versions of the model-frame preprocessing, built from the same weight matrices as the numpy runtime."""

from __future__ import annotations

import torch

from edge_medsam.errors import InputError
from edge_medsam.preprocess import Geometry, PreprocessConfig, geometry_for, resize_weights, unpad_weights


def _weights(in_len: int, out_len: int, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(resize_weights(in_len, out_len), dtype=like.dtype, device=like.device)


def resize_image_torch(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize (..., H, W) float tensors to height x width with the runtime's resampling weights."""
    wy = _weights(image.shape[-2], height, image)
    wx = _weights(image.shape[-1], width, image)
    return wy @ image @ wx.T


def to_model_input_torch(image: torch.Tensor, config: PreprocessConfig) -> tuple[torch.Tensor, Geometry]:
    """A [0, 1] (3, H, W) or (B, 3, H, W) image tensor → normalised, padded (B, 3, S, S) and its geometry."""
    batch = image.unsqueeze(0) if image.dim() == 3 else image
    if batch.dim() != 4 or batch.shape[1] != 3:
        raise InputError(f"image tensor of shape {tuple(image.shape)} is not (3, H, W) or (B, 3, H, W)",
                         fix="put channels first")
    geo = geometry_for(batch.shape[-2], batch.shape[-1], config.size, config.resize == "longest_side")
    new_h, new_w = geo.resized
    resized = resize_image_torch(batch.float(), new_h, new_w)
    mean = torch.tensor(config.mean, dtype=resized.dtype, device=resized.device).view(1, 3, 1, 1)
    std = torch.tensor(config.std, dtype=resized.dtype, device=resized.device).view(1, 3, 1, 1)
    out = resized.new_zeros((batch.shape[0], 3, config.size, config.size))
    out[:, :, :new_h, :new_w] = (resized - mean) / std
    return out, geo


def logits_to_original_torch(logits: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Model-frame logits (..., h, w) → (..., H, W) in the original geometry (differentiable)."""
    wy = torch.tensor(unpad_weights(geometry, logits.shape[-2], 0), dtype=logits.dtype, device=logits.device)
    wx = torch.tensor(unpad_weights(geometry, logits.shape[-1], 1), dtype=logits.dtype, device=logits.device)
    return wy @ logits @ wx.T
