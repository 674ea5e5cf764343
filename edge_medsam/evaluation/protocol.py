"""The SAM-Med2D evaluation protocol per object: tight box, one centre click, five clicks, and the self-prompt.

"box": the object's tight box, no jitter. "1pt": the click farthest from the object's edge. "5pt": that click,
then four rounds each adding the centre click of the current error region (a negative click when the largest
error is a false positive), with the previous low-res logits as the mask prompt; an object stops early once
its mask is exact. "auto": the self-prompted foreground against the union of all objects. "refine": that
foreground corrected as a user would, with up to three centre clicks on its error region (each with the previous
logits). Everything is deterministic, and scored in the original geometry (spacing 1 px, as the challenge scores
2D).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edge_medsam.data.prompts import box_from_mask, points_from_error
from edge_medsam.errors import InputError
from edge_medsam.metrics import Score, score_mask
from edge_medsam.prompt_labels import PAD_LABEL
from edge_medsam.runtime.protocol import Prediction, Segmenter

PROMPT_MODES = ("box", "1pt", "5pt", "auto", "refine")
CLICK_MODES = {"1pt": 1, "5pt": 5}
IMAGE_MODES = ("auto", "refine")  # scored per image, against the union of all objects
REFINE_CLICKS = 3


@dataclass(frozen=True)
class EvalObject:
    """One object of an image: its label id, class name and bool (H, W) mask."""

    label: int
    name: str
    target: np.ndarray


@dataclass(frozen=True)
class Outcome:
    """The score of one object under one prompt mode and the clicks it took."""

    score: Score
    clicks: int


def check_modes(modes: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Prompt modes from a comma-separated string or a sequence, in PROMPT_MODES order, without repeats."""
    asked = [m.strip().lower() for m in (modes.split(",") if isinstance(modes, str) else modes) if m.strip()]
    unknown = [m for m in asked if m not in PROMPT_MODES]
    if unknown or not asked:
        raise InputError(f"unknown prompt modes {unknown}" if unknown else "no prompt mode given",
                         fix=f"choose from {','.join(PROMPT_MODES)}")
    return tuple(m for m in PROMPT_MODES if m in asked)


def class_name(label: int, names: Mapping[int, str]) -> str:
    """The class of a label id: the dataset's name for it, else ``label_<k>``."""
    return names.get(label) or f"label_{label}"


def select_objects(labels: np.ndarray, names: Mapping[int, str], max_objects: int | None = None) -> list[EvalObject]:
    """Every label id > 0 is an object; above ``max_objects``, keep ones evenly spaced in size (label order).

    Spacing the picks over the size ranking keeps small and large instances alike (an instance map may hold
    hundreds of cells), and the choice is the same on every run.
    """
    lab = np.asarray(labels)
    values, counts = np.unique(lab, return_counts=True)
    values, counts = values[values > 0], counts[values > 0]
    if max_objects is not None and values.size > max_objects:
        if max_objects < 1:
            raise InputError(f"max_objects is {max_objects}", fix="evaluate at least one object per image")
        by_size = np.lexsort((values, counts))
        picks = np.round(np.linspace(0, values.size - 1, max_objects)).astype(np.int64)
        values = np.sort(values[by_size[picks]])
    return [EvalObject(int(v), class_name(int(v), names), lab == v) for v in values.tolist()]


def run_box(segmenter: Segmenter, objects: list[EvalObject], multimask: bool = True) -> list[Outcome]:
    """Score each object prompted with its tight box (all objects in one call)."""
    if not objects:
        return []
    boxes = np.stack([box_from_mask(obj.target) for obj in objects])
    prediction = segmenter.predict(boxes=boxes, multimask=multimask)
    return [Outcome(score_mask(mask, obj.target), 0) for mask, obj in zip(prediction.masks, objects, strict=True)]


def _padded(clicks: list[list[tuple[np.ndarray, int]]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(c) for c in clicks)
    coords = np.zeros((len(clicks), width, 2), np.float32)
    labels = np.full((len(clicks), width), PAD_LABEL, np.int64)
    for row, object_clicks in enumerate(clicks):
        for column, (xy, label) in enumerate(object_clicks):
            coords[row, column], labels[row, column] = xy, label
    return coords, labels


def run_clicks(segmenter: Segmenter, objects: list[EvalObject], rounds: int, multimask: bool = True,
               auto: Prediction | None = None) -> list[Outcome]:
    """Score each object after ``rounds`` centre clicks on its error region, the previous logits as mask prompt.

    ``auto``: the self-prompted foreground (one object) to correct with ``predict_auto``; by default the first
    click starts a prompted object from nothing.
    """
    if not objects:
        return []
    height, width = objects[0].target.shape
    masks = np.zeros((len(objects), height, width), bool) if auto is None else auto.masks.copy()
    low_res: np.ndarray | None = None if auto is None else auto.low_res.copy()
    clicks: list[list[tuple[np.ndarray, int]]] = [[] for _ in objects]
    active = list(range(len(objects)))
    for _ in range(rounds):
        still = []
        for i in active:
            coords, labels = points_from_error(masks[i], objects[i].target, None, 1, mode="center")
            if labels.size:  # nothing left to correct: the object keeps its exact mask
                clicks[i].append((coords[0], int(labels[0])))
                still.append(i)
        active = still
        if not active:
            break
        coords, labels = _padded([clicks[i] for i in active])
        previous = None if low_res is None else low_res[active]
        if auto is None:
            prediction = segmenter.predict(points=coords, point_labels=labels, mask_input=previous, multimask=multimask)
        else:
            prediction = segmenter.predict_auto(points=coords, point_labels=labels, mask_input=previous)
        if low_res is None:
            low_res = np.zeros((len(objects), *prediction.low_res.shape[1:]), np.float32)
        masks[active] = prediction.masks
        low_res[active] = prediction.low_res
    return [Outcome(score_mask(masks[i], obj.target), len(clicks[i])) for i, obj in enumerate(objects)]


def score_auto(prediction: Prediction, labels: np.ndarray) -> Score:
    """Score a self-prompted foreground against the union of all objects."""
    return score_mask(prediction.masks[0], np.asarray(labels) > 0)


def run_refine(segmenter: Segmenter, labels: np.ndarray, auto: Prediction, clicks: int = REFINE_CLICKS) -> Outcome:
    """Score the self-prompted foreground ``auto`` after up to ``clicks`` centre clicks on its error region."""
    foreground = EvalObject(0, "foreground", np.asarray(labels) > 0)
    return run_clicks(segmenter, [foreground], clicks, auto=auto)[0]
