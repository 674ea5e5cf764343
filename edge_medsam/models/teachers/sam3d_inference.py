"""Whole volumes through the 3D SAM adapter: MONAI sliding windows of the crop size, and point-prompted scores.

A window sees only the prompts inside it (in its own coordinates); a window that holds no positive point
abstains, so the mask covers the windows that hold a click and overlapping windows are blended (Gaussian) among
those that voted. The paper instead crops one 128³ window centred on the clicks; sliding windows keep objects
larger than a window whole when they are clicked in each part.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference

from edge_medsam.errors import InputError
from edge_medsam.metrics import score_mask
from edge_medsam.models.teachers.sam3d import Sam3DTeacher

ABSTAIN_LOGIT = -20.0  # voxels no voting window covers: background


@torch.no_grad()
def segment_volume(model: Sam3DTeacher, volume: np.ndarray | torch.Tensor, points: np.ndarray | torch.Tensor,
                   labels: np.ndarray | torch.Tensor | None = None, *, overlap: float = 0.25, sw_batch_size: int = 4,
                   blend: str = "gaussian", progress: bool = False) -> torch.Tensor:
    """Mask logits [D, H, W] (CPU) of the object that ``points`` [N, 3] (voxel x, y, z; ``labels`` 1 positive,
    0 negative, default all positive) select in a [0, 1] volume [D, H, W], by sliding windows."""
    unit = torch.as_tensor(np.asarray(volume) if not isinstance(volume, torch.Tensor) else volume, dtype=torch.float32)
    if unit.dim() != 3:
        raise InputError(f"volume of shape {tuple(unit.shape)} is not [D, H, W]", fix="give one 3D intensity volume")
    coords = torch.as_tensor(np.asarray(points) if not isinstance(points, torch.Tensor) else points,
                             dtype=torch.float32).reshape(-1, 3)
    point_labels = torch.ones(len(coords), dtype=torch.int64) if labels is None else \
        torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).long().reshape(-1)
    extent = torch.tensor(unit.shape[::-1], dtype=torch.float32)
    if len(point_labels) != len(coords) or not bool((point_labels == 1).any()):
        raise InputError("sliding-window segmentation needs at least one positive point (and one label per point)",
                         fix="give points [N, 3] as voxel x, y, z with labels 1 (positive) or 0 (negative)")
    if bool(((coords < 0) | (coords > extent - 1)).any()):
        raise InputError(f"a point lies outside the volume of {tuple(unit.shape)} (D, H, W) voxels",
                         fix="give points as voxel x, y, z inside the volume")
    roi = model.config.crop_size
    pads = [max(r - s, 0) for r, s in zip(roi, unit.shape, strict=True)]
    device = model.device
    inputs = model.normalise_volume(F.pad(unit, (0, pads[2], 0, pads[1], 0, pads[0]))[None].to(device))
    window_extent = torch.tensor(roi[::-1], dtype=torch.float32)

    def predictor(windows: torch.Tensor, where: list[list[slice]]) -> torch.Tensor:
        out = windows.new_zeros((windows.shape[0], 2, *roi))
        for i, slices in enumerate(where):
            local = coords - torch.tensor([slices[4].start, slices[3].start, slices[2].start], dtype=torch.float32)
            inside = ((local >= 0) & (local < window_extent)).all(dim=-1)
            if not bool((inside & (point_labels == 1)).any()):
                continue
            window_labels = torch.where(inside, point_labels, -1)
            out[i, 0] = model.segment(windows[i : i + 1], local[None].to(device), window_labels[None].to(device))[0, 0]
            out[i, 1] = 1.0
        return out

    merged = sliding_window_inference(inputs, roi, sw_batch_size, predictor, overlap=overlap, mode=blend,
                                      with_coord=True, progress=progress)[0]
    votes = merged[1]
    logits = torch.where(votes > 0, merged[0] / votes.clamp_min(torch.finfo(votes.dtype).tiny), ABSTAIN_LOGIT)
    return logits[: unit.shape[0], : unit.shape[1], : unit.shape[2]].float().cpu()


def evaluate_volumes(model: Sam3DTeacher, cases: Iterable[tuple[np.ndarray, np.ndarray]], *, points: int = 1,
                     min_voxels: int = 64, max_objects: int | None = None, seed: int = 0, overlap: float = 0.25
                     ) -> dict[str, float]:
    """Mean Dice / NSD (voxel units) of whole-volume segmentation with ``points`` random positive clicks per object.

    ``cases``: ([0, 1] volume [D, H, W], label map [D, H, W]); objects under ``min_voxels`` are skipped.
    """
    rng = np.random.default_rng(seed)
    dice, nsd = [], []
    was_training = model.training
    model.eval()
    for unit, labels in cases:
        ids, counts = np.unique(labels[labels > 0], return_counts=True)
        chosen = [int(i) for i, c in zip(ids, counts, strict=True) if c >= min_voxels][:max_objects]
        for label in chosen:
            mask = labels == label
            voxels = np.argwhere(mask)
            clicks = voxels[rng.choice(len(voxels), size=points, replace=len(voxels) < points)][:, ::-1]
            logits = segment_volume(model, unit, clicks.astype(np.float32), overlap=overlap)
            score = score_mask(logits.numpy() > 0, mask)
            dice.append(score.dice)
            nsd.append(score.nsd)
    model.train(was_training)
    return {"dice": float(np.mean(dice)) if dice else 0.0, "nsd": float(np.mean(nsd)) if nsd else 0.0,
            "objects": float(len(dice))}
