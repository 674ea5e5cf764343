"""Prompt simulation for training and evaluation (SAM-Med2D style): boxes, points and mask prompts per object.

Coordinates are in the image's pixel frame, x to the right and y down. A point is the (column, row) index of a
pixel, as a click in a viewer gives it (SAM's prompt encoder adds the half-pixel shift itself). A box is
``[x0, y0, x1, y1]`` on pixel edges: ``x1`` is the last column + 1, so a 1-pixel object has a 1x1 box.
Point labels follow SAM: 1 foreground, 0 background, -1 padding. Every random choice comes from the
``rng`` argument (a ``numpy.random.Generator``, a seed, or None), so a seeded run repeats exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edge_medsam.errors import InputError
from edge_medsam.preprocess import resize_weights

MASK_LOGIT = 8.0  # a binary mask prompt becomes ±8 logits: as confident as a sure SAM prediction (p ≈ 0.9997)
ERROR_POINT_MODES = ("interior", "uniform", "center")

RngLike = np.random.Generator | int | None


def _binary(mask: np.ndarray, what: str = "mask") -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise InputError(f"{what} of shape {arr.shape} is not a 2D (H, W) array", fix=f"give one (H, W) {what}")
    return arr.astype(bool, copy=False)


def box_from_mask(mask: np.ndarray, rng: RngLike = None, jitter: float = 0.0, max_shift: float = 20.0) -> np.ndarray:
    """The [x0, y0, x1, y1] float32 box of a mask, each side optionally moved at random, clipped to the image.

    With ``jitter`` > 0 each side moves by up to ``jitter`` times the box's width (x) or height (y), and by
    at most ``max_shift`` pixels, in either direction (SAM-Med2D/MedSAM box noise). Below 0.5 the jittered box
    always overlaps the true one; it never shrinks below one pixel.
    """
    m = _binary(mask)
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        raise InputError("cannot draw a box around an empty mask", fix="give a mask with at least one pixel set")
    box = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float64)
    if jitter > 0:
        gen = np.random.default_rng(rng)
        width, height = box[2] - box[0], box[3] - box[1]
        reach = np.minimum(np.array([width, height, width, height]) * jitter, max_shift)
        box += gen.uniform(-1.0, 1.0, 4) * reach
    height_px, width_px = m.shape
    box = np.clip(box, 0.0, [width_px, height_px, width_px, height_px])
    for lo, hi, limit in ((0, 2, width_px), (1, 3, height_px)):
        if box[hi] - box[lo] < 1.0:  # collapsed by a large jitter: a 1-pixel box around its centre
            centre = np.clip((box[lo] + box[hi]) / 2.0, 0.5, limit - 0.5)
            box[lo], box[hi] = centre - 0.5, centre + 0.5
    return box.astype(np.float32)


def _pick(flat_indices: np.ndarray, count: int, gen: np.random.Generator) -> np.ndarray:
    count = min(count, flat_indices.size)
    return flat_indices[gen.choice(flat_indices.size, size=count, replace=False)] if count else flat_indices[:0]


def _xy(flat_indices: np.ndarray, width: int) -> np.ndarray:
    return np.stack([flat_indices % width, flat_indices // width], axis=-1).astype(np.float32)


def points_from_mask(
    mask: np.ndarray, n_pos: int, n_neg: int, rng: RngLike, *, margin: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``n_pos`` points inside the object and ``n_neg`` outside it: (coords [N, 2] xy float32, labels [N] int32).

    Negatives come from the background inside the object's box grown by ``margin`` pixels (default: a quarter
    of its longer side, at least 5), where they teach the most, or from anywhere in the background when that
    band is too small. Missing points (tiny object, full mask) are padding: label -1 at (0, 0); N is always
    ``n_pos + n_neg``.
    """
    if n_pos < 0 or n_neg < 0:
        raise InputError(f"point counts must not be negative (got {n_pos}, {n_neg})", fix="ask for 0 or more points")
    m = _binary(mask)
    gen = np.random.default_rng(rng)
    width = m.shape[1]
    flat = m.ravel()
    inside = np.flatnonzero(flat)
    positives = _pick(inside, n_pos, gen)

    negatives = inside[:0]
    if n_neg:
        background = ~m
        if inside.size:
            x0, y0, x1, y1 = box_from_mask(m)
            grow = margin if margin is not None else max(5.0, 0.25 * max(x1 - x0, y1 - y0))
            band = np.zeros_like(m)
            band[max(0, int(y0 - grow)):int(y1 + grow), max(0, int(x0 - grow)):int(x1 + grow)] = True
            near = np.flatnonzero(background & band)
            candidates = near if near.size >= n_neg else np.flatnonzero(background)
        else:
            candidates = np.flatnonzero(background)
        negatives = _pick(candidates, n_neg, gen)

    total = n_pos + n_neg
    coords = np.zeros((total, 2), np.float32)
    labels = np.full(total, -1, np.int32)
    coords[: positives.size] = _xy(positives, width)
    labels[: positives.size] = 1
    end = positives.size + negatives.size
    coords[positives.size:end] = _xy(negatives, width)
    labels[positives.size:end] = 0
    return coords, labels


def distance_to_edge(region: np.ndarray) -> np.ndarray:
    """For each pixel of a binary region, its Euclidean distance to the nearest pixel outside it (the image's
    outside counts); float32, 0 outside the region. Leading axes hold a stack of separate (H, W) regions."""
    from scipy import ndimage  # the train extra: the torch-free runtime only draws boxes from this module

    r = np.asarray(region).astype(bool, copy=False)
    if r.ndim < 2:
        raise InputError(f"region of shape {r.shape} is not a 2D (H, W) array", fix="give one (H, W) region")
    out = np.zeros(r.shape, np.float32)
    for inside, dist in zip(r.reshape(-1, *r.shape[-2:]), out.reshape(-1, *r.shape[-2:]), strict=True):
        rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        if rows.size:  # the nearest outside pixel lies within one pixel of the region's box: work on that crop
            box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
            dist[box] = ndimage.distance_transform_edt(np.pad(inside[box], 1))[1:-1, 1:-1]
    return out


def points_from_error(
    pred: np.ndarray, target: np.ndarray, rng: RngLike, n: int = 1, *, mode: str = "interior"
) -> tuple[np.ndarray, np.ndarray]:
    """Correction clicks from where a prediction is wrong: (coords [K, 2] xy float32, labels [K] int32), K <= n.

    Missed object pixels (false negatives) give positive points, wrongly included pixels (false positives)
    negative ones. ``mode``: "interior" (default, training) picks FN or FP in proportion to their areas and a
    pixel with probability growing with its distance from the error region's edge; "uniform" picks any error
    pixel (SAM-Med2D); "center" takes the error pixels farthest from any edge (the RITM/SAM evaluation click,
    deterministic). Nothing to correct (pred == target) gives K = 0.
    """
    p, t = _binary(pred, "prediction"), _binary(target, "target")
    return points_from_errors(p[None], t[None], rng, n, mode=mode)[0]


def points_from_errors(
    preds: np.ndarray, targets: np.ndarray, rng: RngLike, n: int = 1, *, mode: str = "interior", coarse: int = 1
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``points_from_error`` for a stack of N objects ([N, H, W] each), with one distance transform for all of
    them; the random choices are the same as N calls in a row with the same generator.

    ``coarse`` > 1 measures the distances on a grid that many times coarser (max-pooled, so thin errors stay),
    about coarse² times cheaper; clicks still land on error pixels of the full grid.
    """
    if mode not in ERROR_POINT_MODES:
        raise InputError(f"unknown error-point mode {mode!r}", fix=f"use one of {', '.join(ERROR_POINT_MODES)}")
    p, t = np.asarray(preds).astype(bool, copy=False), np.asarray(targets).astype(bool, copy=False)
    if p.shape != t.shape or p.ndim != 3:
        raise InputError(f"predictions {p.shape[1:]} and targets {t.shape[1:]} differ in shape or are not 2D",
                         fix="give same-sized (H, W) masks")
    errors = np.stack([t & ~p, p & ~t], axis=1)  # [N, 2, H, W]: false negatives → positive, positives → negative
    distances = None if mode == "uniform" else distance_to_edge(errors) if coarse <= 1 else \
        _coarse_distance(errors, coarse)
    gen = np.random.default_rng(rng)
    return [_error_clicks(errors[i], None if distances is None else distances[i], gen, n, mode)
            for i in range(len(errors))]


def _coarse_distance(errors: np.ndarray, factor: int) -> np.ndarray:
    """distance_to_edge of [..., H, W] regions measured on a ``factor`` times coarser, max-pooled grid, brought
    back to full size in full-grid pixels and kept on the regions' own pixels."""
    height, width = errors.shape[-2:]
    padded = np.zeros((*errors.shape[:-2], -(-height // factor) * factor, -(-width // factor) * factor), bool)
    padded[..., :height, :width] = errors
    pooled = padded.reshape(*padded.shape[:-2], padded.shape[-2] // factor, factor, padded.shape[-1] // factor,
                            factor).any(axis=(-3, -1))
    coarse = distance_to_edge(pooled) * factor
    full = np.repeat(np.repeat(coarse, factor, axis=-2), factor, axis=-1)[..., :height, :width]
    return np.where(errors, full, np.float32(0))


def _error_clicks(errors: np.ndarray, distances: np.ndarray | None, gen: np.random.Generator, n: int, mode: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One object's clicks from its [2, H, W] false-negative / false-positive maps (and their distance maps)."""
    width = errors.shape[-1]
    sizes = errors.reshape(2, -1).sum(axis=1)
    coords, labels = np.zeros((0, 2), np.float32), np.zeros(0, np.int32)
    if n <= 0 or sizes.sum() == 0:
        return coords, labels
    if mode == "center":
        flat_distances = distances.ravel()
        k = min(n, int(sizes.sum()))  # every error pixel is at distance >= 1, so the top k are all error pixels
        top = np.argpartition(-flat_distances, k - 1)[:k]
        best = top[np.lexsort((top, -flat_distances[top]))]
        which, flat = np.divmod(best, errors[0].size)
        return _xy(flat, width), np.where(which == 0, 1, 0).astype(np.int32)
    counts = [gen.binomial(n, sizes[0] / sizes.sum())]
    counts.append(n - counts[0])
    picked_coords, picked_labels = [coords], [labels]
    for index, (label, count) in enumerate(zip((1, 0), counts, strict=True)):
        if count == 0:
            continue
        flat = np.flatnonzero(errors[index].ravel())
        weights = None
        if mode == "interior":
            weights = distances[index].ravel()[flat]
            weights /= weights.sum()
        chosen = flat[gen.choice(flat.size, size=count, replace=count > flat.size, p=weights)]
        picked_coords.append(_xy(chosen, width))
        picked_labels.append(np.full(count, label, np.int32))
    return np.concatenate(picked_coords), np.concatenate(picked_labels)


def mask_prompt(prev_logits_or_mask: np.ndarray, size: int = 256) -> np.ndarray:
    """A (…, size, size) float32 logit mask prompt from a previous prediction in the square model frame.

    ``size`` is 4x the image-embedding side (256 for a 1024 input, input_size // 4 in general). Float input is
    taken as logits and resampled; a bool or integer mask becomes ±MASK_LOGIT logits first. A mask in the
    original image frame must be mapped into the model frame first (``preprocess.labels_to_model``).
    """
    arr = np.asarray(prev_logits_or_mask)
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2] or arr.shape[-1] < 1:
        raise InputError(f"mask prompt of shape {arr.shape} is not a square (…, S, S) model-frame mask",
                         fix="map it into the model frame with edge_medsam.preprocess.labels_to_model first")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputError("mask prompt contains NaN or Inf", fix="pass the previous prediction's finite logits")
        logits = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        logits = np.where(arr > 0, np.float32(MASK_LOGIT), np.float32(-MASK_LOGIT))
    else:
        raise InputError(f"mask prompt of type {arr.dtype} is neither logits nor a mask", fix="give float or bool")
    if logits.shape[-1] == size:
        return np.ascontiguousarray(logits)
    weights = resize_weights(logits.shape[-1], size).astype(np.float32)
    return np.ascontiguousarray(weights @ logits @ weights.T, dtype=np.float32)


@dataclass
class ObjectPrompt:
    """One object of an image with the prompts that ask for it.

    ``target`` is the object's bool (H, W) mask; ``box`` its [x0, y0, x1, y1] box prompt or None;
    ``coords`` (N, 2) xy and ``point_labels`` (N,) its point prompts (N may be 0; -1 marks padding).
    """

    label: int
    target: np.ndarray
    box: np.ndarray | None
    coords: np.ndarray
    point_labels: np.ndarray
    name: str | None = None


def _count(value: int | tuple[int, int], gen: np.random.Generator) -> int:
    if isinstance(value, tuple):
        lo, hi = value
        return int(gen.integers(lo, hi + 1))
    return int(value)


def simulate_prompts(
    labels: np.ndarray,
    rng: RngLike,
    *,
    max_objects: int | None = None,
    box_prob: float = 0.5,
    points_with_box_prob: float = 0.0,
    n_pos: int | tuple[int, int] = 1,
    n_neg: int | tuple[int, int] = 0,
    jitter: float = 0.1,
    max_shift: float = 20.0,
    components: bool = False,
    min_pixels: int = 1,
    names: Mapping[int, str] | None = None,
) -> list[ObjectPrompt]:
    """Objects of a label map, each with a simulated box and/or point prompt and its binary target.

    An object is a label id > 0, or with ``components`` each 8-connected piece of one (instances drawn
    with one label); objects under ``min_pixels`` are left out. At most ``max_objects`` are drawn at random,
    returned in label order. Each object gets a jittered box with probability ``box_prob`` (and then points
    as well with probability ``points_with_box_prob``), otherwise points. Point counts are drawn once per
    call (an int, or an inclusive (min, max) range), so all point-prompted objects of an image share N.
    """
    from scipy import ndimage

    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise InputError(f"label map of shape {lab.shape} is not 2D (H, W)", fix="give one (H, W) label map")
    if not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == np.bool_):
        raise InputError(f"label map of type {lab.dtype} is not integer",
                         fix="give an integer label map (0 = background)")
    gen = np.random.default_rng(rng)
    # Candidates are (label, component map or None, component id); masks are built only for the objects drawn,
    # which keeps images with hundreds of instances cheap.
    candidates: list[tuple[int, np.ndarray | None, int]] = []
    values, counts = np.unique(lab, return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        if value <= 0 or count < min_pixels:
            continue
        if not components:
            candidates.append((int(value), None, 0))
            continue
        pieces, _ = ndimage.label(lab == value, structure=np.ones((3, 3), bool))  # 8-connected, in raster order
        sizes = np.bincount(pieces.ravel())[1:]
        candidates += [(int(value), pieces, i) for i in (np.flatnonzero(sizes >= min_pixels) + 1).tolist()]
    if max_objects is not None and len(candidates) > max_objects:
        keep = np.sort(gen.choice(len(candidates), size=max_objects, replace=False))
        candidates = [candidates[i] for i in keep]
    found = [(value, lab == value if pieces is None else pieces == piece) for value, pieces, piece in candidates]

    positives, negatives = _count(n_pos, gen), _count(n_neg, gen)
    no_points = (np.zeros((0, 2), np.float32), np.zeros(0, np.int32))
    prompts = []
    for value, mask in found:
        has_box = gen.random() < box_prob
        has_points = not has_box or gen.random() < points_with_box_prob
        box = box_from_mask(mask, gen, jitter=jitter, max_shift=max_shift) if has_box else None
        coords, point_labels = points_from_mask(mask, positives, negatives, gen) if has_points else no_points
        name = None if names is None else names.get(value)
        prompts.append(ObjectPrompt(value, mask, box, coords, point_labels, name))
    return prompts
