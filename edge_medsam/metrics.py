"""Segmentation metrics: Dice and normalised surface Dice as the MedSAM-on-Laptop and CVPR 2025 challenges score them.

NSD is DeepMind's surface-distance algorithm (the ``surface-distance`` package: surface elements weighted by their
length or area, ``compute_surface_distances`` + ``compute_surface_dice_at_tolerance``), the one the challenges'
evaluation scripts use, so figures compare with published ones. Tolerance 2 (mm with the image spacing in 3D,
pixels with spacing 1 in 2D); NSD counts as 0 whenever Dice <= 0.2. An object absent from both prediction and
truth scores 1 on both.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from surface_distance import compute_surface_dice_at_tolerance, compute_surface_distances

NSD_TOLERANCE = 2.0
NSD_MIN_DICE = 0.2


@dataclass(frozen=True)
class Score:
    """Dice and NSD of one object in one image."""

    dice: float
    nsd: float


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    """Dice of two boolean masks of one shape (1.0 where both are empty)."""
    total = np.count_nonzero(pred) + np.count_nonzero(target)
    return 1.0 if total == 0 else 2.0 * float(np.count_nonzero(pred & target)) / float(total)


def surface_dice(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float] | None = None,
                 tolerance: float = NSD_TOLERANCE) -> float:
    """NSD of two boolean masks at ``tolerance`` (mm with ``spacing``, default 1 per axis), without the Dice gate."""
    if not pred.any() and not target.any():
        return 1.0
    if not pred.any() or not target.any():
        return 0.0
    spacing = tuple(float(v) for v in spacing) if spacing is not None else (1.0,) * pred.ndim
    with warnings.catch_warnings():
        # surface-distance 0.1 calls scipy.ndimage.morphology.distance_transform_edt (deprecated namespace).
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="surface_distance")
        distances = compute_surface_distances(target, pred, spacing)
    return float(compute_surface_dice_at_tolerance(distances, tolerance))


def score_mask(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float] | None = None,
               tolerance: float = NSD_TOLERANCE) -> Score:
    """Dice and NSD of a binary prediction against a binary target (2D or 3D, same shape)."""
    pred_b, target_b = np.asarray(pred, bool), np.asarray(target, bool)
    if pred_b.shape != target_b.shape:
        raise ValueError(f"prediction {pred_b.shape} and target {target_b.shape} differ in shape")
    overlap = dice(pred_b, target_b)
    if overlap <= NSD_MIN_DICE:
        return Score(overlap, 0.0)
    return Score(overlap, surface_dice(pred_b, target_b, spacing, tolerance))


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
