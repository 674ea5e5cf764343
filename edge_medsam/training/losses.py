"""Mask losses shared by teachers and students: SAM's 20·focal + Dice on the best of K masks, plus IoU MSE,
and the distillation terms (embedding MSE/cosine, soft-mask KD)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss, FocalLoss

FOCAL_WEIGHT = 20.0

_focal = FocalLoss(gamma=2.0, alpha=0.25, use_softmax=False, reduction="none")
_dice = DiceLoss(sigmoid=True, smooth_nr=1.0, smooth_dr=1.0, reduction="none")


def resize_target(target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[N, H, W] binary target → [N, h, w] soft target by area averaging (bilinear when growing)."""
    t = target.float().unsqueeze(1)
    if t.shape[-2:] == size:
        return t.squeeze(1)
    if t.shape[-2] >= size[0]:
        return F.adaptive_avg_pool2d(t, size).squeeze(1)
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False).squeeze(1)


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of thresholded [N, K, h, w] logits with a [N, h, w] target → [N, K] (no gradient)."""
    with torch.no_grad():
        pred = logits > 0
        truth = (target > 0.5).unsqueeze(1)
        inter = (pred & truth).flatten(2).sum(-1).float()
        union = (pred | truth).flatten(2).sum(-1).float()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def mask_losses(logits: torch.Tensor, target: torch.Tensor, iou_pred: torch.Tensor) -> dict[str, torch.Tensor]:
    """SAM's loss for [N, K, h, w] logits against an [N, H, W] target: only the best of K masks is trained."""
    target = resize_target(target, tuple(logits.shape[-2:]))
    expanded = target.unsqueeze(1).expand_as(logits)
    focal = _focal(logits, expanded).flatten(2).mean(-1)  # [N, K]
    dice = _dice(logits.flatten(0, 1).unsqueeze(1), expanded.flatten(0, 1).unsqueeze(1)).reshape(logits.shape[:2])
    total = FOCAL_WEIGHT * focal + dice
    best = total.argmin(dim=1)
    pick = best.unsqueeze(1)
    iou_true = mask_iou(logits, target)
    iou_mse = F.mse_loss(iou_pred.float(), iou_true)
    return {"loss": total.gather(1, pick).mean() + iou_mse, "focal": focal.gather(1, pick).mean(),
            "dice_loss": dice.gather(1, pick).mean(), "iou_mse": iou_mse, "best": best,
            "iou": iou_true.gather(1, pick).mean()}


def embedding_distillation(student: torch.Tensor, teacher: torch.Tensor, cosine_weight: float = 0.0) -> torch.Tensor:
    """MSE (plus optional 1 - cosine over channels) between [B, C, h, w] embeddings of the same grid."""
    loss = F.mse_loss(student.float(), teacher.float())
    if cosine_weight:
        loss = loss + cosine_weight * (1 - F.cosine_similarity(student.float(), teacher.float(), dim=1)).mean()
    return loss


def soft_mask_distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """BCE of student logits against the teacher's probabilities (grids matched by resizing the teacher)."""
    if teacher_logits.shape[-2:] != student_logits.shape[-2:]:
        teacher_logits = F.interpolate(teacher_logits, size=student_logits.shape[-2:], mode="bilinear",
                                       align_corners=False)
    return F.binary_cross_entropy_with_logits(student_logits.float(), torch.sigmoid(teacher_logits.float()))
