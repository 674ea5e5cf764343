"""Segmentation metrics (MONAI): Dice and normalised surface Dice as the MedSAM-on-Laptop challenge scores them.

NSD uses a tolerance of 2 (mm with the image spacing in 3D, pixels with spacing 1 in 2D) and counts as 0
whenever Dice <= 0.2. An object absent from both prediction and truth scores 1 on both.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import compute_dice, compute_surface_dice

NSD_TOLERANCE = 2.0
NSD_MIN_DICE = 0.2


@dataclass(frozen=True)
class Score:
    """Dice and NSD of one object in one image."""

    dice: float
    nsd: float


def score_mask(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float] | None = None,
               tolerance: float = NSD_TOLERANCE) -> Score:
    """Dice and NSD of a binary prediction against a binary target (2D or 3D, same shape)."""
    pred_b, target_b = np.asarray(pred, bool), np.asarray(target, bool)
    if pred_b.shape != target_b.shape:
        raise ValueError(f"prediction {pred_b.shape} and target {target_b.shape} differ in shape")
    if not pred_b.any() and not target_b.any():
        return Score(1.0, 1.0)
    if not pred_b.any() or not target_b.any():
        return Score(0.0, 0.0)
    p = torch.from_numpy(pred_b)[None, None].float()
    t = torch.from_numpy(target_b)[None, None].float()
    dice = float(compute_dice(p, t, include_background=True, ignore_empty=False)[0, 0])
    if dice <= NSD_MIN_DICE:
        return Score(dice, 0.0)
    spacing = list(spacing) if spacing is not None else [1.0] * pred_b.ndim
    with warnings.catch_warnings():
        # MONAI >= 1.5 warns about an argument its own compute_surface_dice passes (once per call).
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
        nsd = float(compute_surface_dice(p, t, [tolerance], include_background=True, spacing=spacing)[0, 0])
    return Score(dice, nsd)


def score_labels(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float] | None = None,
                 labels: Iterable[int] | None = None) -> dict[int, Score]:
    """Per-label scores of two label maps; ``labels`` defaults to every non-zero label in either."""
    pred, target = np.asarray(pred), np.asarray(target)
    if labels is None:
        labels = sorted(set(np.unique(target).tolist()) | set(np.unique(pred).tolist()) - {0})
    return {int(k): score_mask(pred == k, target == k, spacing) for k in labels if k != 0}


class ScoreTable:
    """Scores collected over a data set, grouped by (modality, class), summarised as JSON and Markdown."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, Score]] = []

    def add(self, modality: str, name: str, score: Score) -> None:
        """Record one object's score."""
        self.rows.append((modality, name, score))

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """{modality: {class or "all": {"dice", "nsd", "n"}}} with means."""
        groups: dict[str, dict[str, list[Score]]] = defaultdict(lambda: defaultdict(list))
        for modality, name, score in self.rows:
            groups[modality][name].append(score)
            groups[modality]["all"].append(score)
            groups["all"]["all"].append(score)
        return {m: {c: {"dice": float(np.mean([s.dice for s in v])), "nsd": float(np.mean([s.nsd for s in v])),
                        "n": len(v)} for c, v in sorted(classes.items())} for m, classes in sorted(groups.items())}

    def markdown(self) -> str:
        """The summary as a Markdown table."""
        lines = ["| modality | class | Dice | NSD | n |", "|---|---|---:|---:|---:|"]
        for modality, classes in self.summary().items():
            for name, s in classes.items():
                lines.append(f"| {modality} | {name} | {s['dice']:.4f} | {s['nsd']:.4f} | {s['n']} |")
        return "\n".join(lines)
