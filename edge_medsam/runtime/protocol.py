"""What evaluation and the runtime adapters run: a Segmenter (encode an image once, then answer prompts), numpy in and out.

The protocol is free of torch so that the torch models here and the torch-free runtime predictor implement the
same thing. Prompts are in ORIGINAL image pixels (x right, y down): points are pixel indices, boxes
``[x0, y0, x1, y1]`` on pixel edges (``edge_medsam.data.prompts``); each segmenter maps them to its own frame.

For volumes, a VolumeInteractor is what the interactive 3D protocol (``edge_medsam.evaluation.interactive3d``)
drives: boxes and Click3D clicks in voxel indices of ``Volume.voxels``, the slicing axis k (axial).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from edge_medsam.errors import InputError
from edge_medsam.io.types import Volume
from edge_medsam.modalities import Modality
from edge_medsam.preprocess import Geometry, logits_to_original
from edge_medsam.runtime.decoder_feed import best_of_k


@dataclass(frozen=True)
class Prediction:
    """One mask per object: logits in the original geometry, the low-res logits to feed back, the quality score.

    ``masks_logits`` [N, H, W] float32; ``low_res`` [N, 1, h, w] float32 (the model frame, for ``mask_input``);
    ``scores`` [N] float32, the predicted IoU of the chosen mask.
    """

    masks_logits: np.ndarray
    low_res: np.ndarray
    scores: np.ndarray

    @property
    def masks(self) -> np.ndarray:
        """[N, H, W] bool masks (logit > 0)."""
        return self.masks_logits > 0

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@runtime_checkable
class Segmenter(Protocol):
    """A model as evaluation (and the runtime) uses it.

    ``name``: how reports call it. ``supports_auto``: whether ``predict_auto`` works (a self-prompt).
    ``detected_modality``: after ``set_image`` with modality None, the modality it recognised (None if it
    cannot recognise modalities).
    """

    name: str
    supports_auto: bool
    detected_modality: Modality | None

    def set_image(self, image01: np.ndarray, modality: Modality | None) -> None:
        """Encode an (H, W, 3) float32 [0, 1] image once; modality None asks the model to recognise it."""

    def predict(self, boxes: np.ndarray | None = None, points: np.ndarray | None = None,
                point_labels: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                multimask: bool = True) -> Prediction:
        """Masks for N objects from boxes [N, 4], points [N, P, 2] + labels [N, P] and/or previous low-res logits."""

    def predict_auto(self, points: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                     mask_input: np.ndarray | None = None) -> Prediction:
        """The self-prompted foreground of the current image (N = 1); with clicks [1, P, 2] + labels [1, P] and the
        previous low-res logits, that foreground corrected (not the clicked object alone)."""


@dataclass(frozen=True)
class PromptArrays:
    """Checked prompts of N objects in original pixels (float32 coordinates, int64 labels)."""

    count: int
    boxes: np.ndarray | None
    points: np.ndarray | None
    point_labels: np.ndarray | None
    mask_input: np.ndarray | None


def check_prompts(boxes: np.ndarray | None, points: np.ndarray | None, point_labels: np.ndarray | None,
                  mask_input: np.ndarray | None) -> PromptArrays:
    """Validate prompt shapes and that they agree on N; InputError with the expected shapes otherwise."""
    counts: dict[str, int] = {}
    if boxes is not None:
        boxes = np.asarray(boxes, np.float32)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise InputError(f"boxes of shape {boxes.shape} are not [N, 4]", fix="give boxes as [N, 4] x0, y0, x1, y1")
        counts["boxes"] = boxes.shape[0]
    if (points is None) != (point_labels is None):
        raise InputError("points and point labels must come together", fix="give both points and point_labels")
    if points is not None:
        points = np.asarray(points, np.float32)
        point_labels = np.asarray(point_labels, np.int64)
        if points.ndim != 3 or points.shape[2] != 2 or point_labels.shape != points.shape[:2]:
            raise InputError(f"points {points.shape} and labels {point_labels.shape} are not [N, P, 2] and [N, P]",
                             fix="give points as [N, P, 2] x, y pixels and labels as [N, P] (1, 0 or -1 padding)")
        counts["points"] = points.shape[0]
    if mask_input is not None:
        mask_input = np.asarray(mask_input, np.float32)
        if mask_input.ndim != 4 or mask_input.shape[1] != 1:
            raise InputError(f"mask input of shape {mask_input.shape} is not [N, 1, h, w]",
                             fix="pass the low_res logits of a previous prediction")
        counts["mask_input"] = mask_input.shape[0]
    for name, array in (("boxes", boxes), ("points", points), ("mask input", mask_input)):
        if array is not None and not np.isfinite(array).all():
            raise InputError(f"{name} contain NaN or Inf", fix="give finite prompt values")
    if len(set(counts.values())) > 1:
        raise InputError(f"prompts disagree on the number of objects: {counts}", fix="give each prompt for N objects")
    return PromptArrays(next(iter(counts.values()), 0), boxes, points, point_labels, mask_input)


def best_of(low_res: np.ndarray, iou: np.ndarray, geometry: Geometry) -> Prediction:
    """Low-res logits [N, K, h, w] and predicted IoU [N, K] → the best mask of each object, in the original frame."""
    chosen, scores = best_of_k(np.asarray(low_res, np.float32), np.asarray(iou, np.float32))
    return Prediction(logits_to_original(chosen, geometry), np.ascontiguousarray(chosen[:, None]), scores)


def empty_prediction(geometry: Geometry, low_res_size: int) -> Prediction:
    """The answer for N = 0 objects."""
    return Prediction(np.zeros((0, geometry.height, geometry.width), np.float32),
                      np.zeros((0, 1, low_res_size, low_res_size), np.float32), np.zeros(0, np.float32))


@dataclass(frozen=True)
class Click3D:
    """One click on object ``label`` at voxel (i, j, k) of ``Volume.voxels``; positive = foreground there."""

    label: int
    i: int
    j: int
    k: int
    positive: bool


@runtime_checkable
class VolumeInteractor(Protocol):
    """A model the interactive 3D protocol drives: one case at a time, one call per step."""

    name: str

    def start(self, volume: Volume) -> None:
        """A new case (edge_medsam.io.Volume, voxels in NIfTI (i, j, k) order); forget earlier cases."""

    def step(self, boxes: Mapping[int, Sequence[int]], clicks: Sequence[Click3D],
             previous: np.ndarray | None) -> np.ndarray:
        """The label volume (volume.shape, uint16, 0 = background, object labels as given) after this step.

        ``boxes``: label -> voxel-index box (i_min, j_min, k_min, i_max, j_max, k_max), inclusive, the z range
        being the slicing axis k (axial); ``clicks``: every click so far, in order; ``previous``: the previous
        step's prediction (None at step 0).
        """
