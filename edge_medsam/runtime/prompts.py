"""Check prompts given in original image pixels and pack them into the decoder's per-object arrays.

Conventions (as SAM's predictor): a point is the (x, y) = (column, row) index of a pixel with label 1
(foreground) or 0 (background); a box is ``[x0, y0, x1, y1]`` on pixel edges. Several boxes are several
objects decoded in one call; points given as (P, 2) belong to one object (together with the box, if exactly
one box is given); points given as (N, P, 2) are N objects' points (label -1 pads rows of fewer points).
A mask prompt is a previous result's low-res logits, one per object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_medsam.data.prompt_batch import pack_prompts
from edge_medsam.errors import InputError
from edge_medsam.preprocess import Geometry
from edge_medsam.prompt_labels import PAD_LABEL

_POINT_FIX = "give points as (P, 2) or (N, P, 2) x, y pixels with labels (P,) or (N, P): 1 foreground, 0 background"


@dataclass(frozen=True)
class PackedPrompts:
    """N objects' prompts in original pixels: coords [N, W, 2], labels [N, W] (-1 pads), mask logits or None."""

    coords: np.ndarray
    labels: np.ndarray
    mask: np.ndarray | None

    @property
    def count(self) -> int:
        """Number of objects."""
        return int(self.labels.shape[0])

    def coords_in_model(self, geometry: Geometry) -> np.ndarray:
        """Coordinates mapped into the model frame (padding rows stay at 0)."""
        return geometry.points_to_model(self.coords) * (self.labels != PAD_LABEL)[..., None]


def _finite(name: str, array: np.ndarray) -> None:
    if not np.isfinite(array).all():
        raise InputError(f"{name} contain NaN or Inf", fix="give finite prompt values")


def _boxes(boxes: np.ndarray | list | None, height: int, width: int) -> np.ndarray | None:
    if boxes is None:
        return None
    arr = np.asarray(boxes, np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InputError(f"boxes of shape {arr.shape} are not [4] or [N, 4]", fix="give boxes as x0, y0, x1, y1 pixels")
    _finite("boxes", arr)
    for box in arr:
        x0, y0, x1, y1 = (float(v) for v in box)
        if x1 < x0 or y1 < y0:
            raise InputError(f"box {box.tolist()} has its maximum before its minimum", fix="order it x0, y0, x1, y1")
        if x1 == x0 or y1 == y0:
            raise InputError(f"box {box.tolist()} is empty (zero width or height)",
                             fix="draw the box around the object: x1 > x0 and y1 > y0 (pixel edges)")
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise InputError(f"box {box.tolist()} lies outside the {width}x{height} image",
                             fix=f"give boxes within 0..{width} (x) and 0..{height} (y)")
    return arr


def _points(points: np.ndarray | list | None, labels: np.ndarray | list | None, height: int,
            width: int) -> tuple[np.ndarray, np.ndarray] | None:
    if points is None and labels is None:
        return None
    if points is None or labels is None:
        raise InputError("points and labels must come together", fix=_POINT_FIX)
    coords = np.asarray(points, np.float32)
    labs = np.asarray(labels)
    if coords.ndim == 2:
        coords, labs = coords[None], labs[None] if labs.ndim == 1 else labs
    if coords.ndim != 3 or coords.shape[2] != 2 or labs.shape != coords.shape[:2]:
        raise InputError(f"points {coords.shape} and labels {labs.shape} do not match", fix=_POINT_FIX)
    _finite("points", coords)
    if labs.dtype.kind == "f" and not np.array_equal(labs, np.round(labs)):
        raise InputError("point labels are not whole numbers", fix=_POINT_FIX)
    labs = labs.astype(np.int64)
    if not np.isin(labs, (PAD_LABEL, 0, 1)).all():
        raise InputError(f"point labels {sorted(set(labs.ravel().tolist()))} are not 1, 0 (or -1 padding)",
                         fix=_POINT_FIX)
    used = coords[labs != PAD_LABEL]
    outside = used[(used[:, 0] < 0) | (used[:, 1] < 0) | (used[:, 0] > width) | (used[:, 1] > height)]
    if len(outside):
        raise InputError(f"point {outside[0].tolist()} lies outside the {width}x{height} image",
                         fix=f"give points within 0..{width - 1} (x) and 0..{height - 1} (y)")
    return coords, labs


def _mask(mask: np.ndarray | None, size: int) -> np.ndarray | None:
    if mask is None:
        return None
    arr = np.asarray(mask, np.float32)
    arr = arr.reshape((1, 1, *arr.shape)) if arr.ndim == 2 else arr[:, None] if arr.ndim == 3 else arr
    if arr.ndim != 4 or arr.shape[1] != 1 or arr.shape[2:] != (size, size):
        raise InputError(f"mask prompt of shape {np.shape(mask)} is not [N, 1, {size}, {size}] low-res logits",
                         fix="pass low_res_logits of a previous prediction (one mask per object)")
    _finite("mask prompt", arr)
    return arr


def pack_user_prompts(height: int, width: int, low_res: int, *, points=None, labels=None, boxes=None,
                      mask=None) -> PackedPrompts | None:
    """Check and pack prompts for an image of height x width; None when there is no prompt at all."""
    box_arr = _boxes(boxes, height, width)
    point_arr = _points(points, labels, height, width)
    mask_arr = _mask(mask, low_res)
    counts = {name: len(a) for name, a in (("boxes", box_arr), ("mask", mask_arr)) if a is not None}
    if point_arr is not None:
        counts["points"] = len(point_arr[0])
        if box_arr is not None and len(box_arr) > 1 and len(point_arr[0]) == 1 and np.ndim(points) == 2:
            raise InputError(f"{len(box_arr)} boxes and one set of points: which object do the points refine?",
                             fix="give points as (N, P, 2), one row per box")
    if not counts:
        return None
    if len(set(counts.values())) > 1:
        raise InputError(f"prompts disagree on the number of objects: {counts}", fix="give each prompt for N objects")
    count = next(iter(counts.values()))
    per_box = list(box_arr) if box_arr is not None else [None] * count
    per_points = ([(c[lab != PAD_LABEL], lab[lab != PAD_LABEL]) for c, lab in zip(*point_arr, strict=True)]
                  if point_arr is not None else [None] * count)
    coords, packed = pack_prompts(per_box, per_points)
    return PackedPrompts(coords, packed, mask_arr)
