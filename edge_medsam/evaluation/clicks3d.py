"""The CVPR 2025 interactive 3D challenge's click simulation (``CVPR25_iter_eval.py``), one click per object and step.

For each object: the error (prediction != truth for that label) is split into 3D connected components with
26-connectivity, the largest is taken, and the click goes where its Euclidean distance transform is largest. As the
challenge computes it: the EDT in voxel units (no spacing) on the component's bounding box padded by 25 % per side
(at least one voxel; boxes over 60 M voxels 2x max-pooled first, the distances repeated back), ties drawn uniformly
with a generator seeded 42 afresh for every click, and the search made in the challenge's array order (z, y, x) =
(k, j, i), so a challenge case gets the voxel the challenge's script picks. The click is positive where the truth
is that object, negative where it is not; an object without error gets no click.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from edge_medsam.runtime.protocol import Click3D

CONNECTIVITY_26 = np.ones((3, 3, 3), bool)
PADDING = 0.25
SEED = 42
LARGE_ROI = 60_000_000  # voxels of the padded box above which the challenge halves the EDT's resolution


def largest_component(error: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean volume (the first in scan order on a tie)."""
    components, count = ndimage.label(error, structure=CONNECTIVITY_26)
    if count == 0:
        return np.zeros_like(error, bool)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def _max_pool2(volume: np.ndarray) -> np.ndarray:
    """2x2x2 maximum, the volume zero-padded to even sides (skimage's block_reduce with np.max)."""
    padded = np.pad(volume, [(0, s % 2) for s in volume.shape])
    a, b, c = (s // 2 for s in padded.shape)
    return padded.reshape(a, 2, b, 2, c, 2).max(axis=(1, 3, 5))


def component_edt(component: np.ndarray) -> np.ndarray:
    """The EDT of ``component`` (voxel units) on its bounding box padded by 25 %, zero outside the component."""
    coords = np.argwhere(component)
    low, high = coords.min(axis=0), coords.max(axis=0) + 1
    crop = high - low
    pad = np.maximum((crop * PADDING).astype(int), 1)
    padded = np.zeros(crop + 2 * pad, np.uint8)
    inner = tuple(slice(p, p + c) for p, c in zip(pad, crop, strict=True))
    padded[inner] = component[tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))]
    if padded.size > LARGE_ROI:
        distances = ndimage.distance_transform_edt(_max_pool2(padded))
        distances = distances.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    else:
        distances = ndimage.distance_transform_edt(padded)
    full = np.zeros(component.shape, np.float64)
    full[tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))] = distances[inner]
    return full * component


def click_voxel(component: np.ndarray) -> tuple[int, ...]:
    """The voxel of a non-empty component where its EDT is largest; ties drawn with a generator seeded 42."""
    distances = component_edt(component)
    if not distances.any():  # a component too thin for the pooled EDT: any of its voxels
        distances = component.astype(np.float64)
    candidates = np.argwhere(distances == distances.max())
    chosen = candidates[np.random.RandomState(SEED).choice(len(candidates))]
    return tuple(int(v) for v in chosen)


def next_click(prediction: np.ndarray, truth: np.ndarray, label: int) -> Click3D | None:
    """The click the challenge places for ``label`` given the current prediction (both label volumes in (i, j, k)),
    or None where the prediction of that label is already exact."""
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} differ in shape")
    object_truth = truth == label
    error = (prediction == label) != object_truth
    if not error.any():
        return None
    k, j, i = click_voxel(largest_component(error.transpose(2, 1, 0)))  # the challenge's (z, y, x) order
    return Click3D(label=int(label), i=i, j=j, k=k, positive=bool(object_truth[i, j, k]))


def simulate_clicks(prediction: np.ndarray, truth: np.ndarray, labels: Iterable[int]) -> list[Click3D]:
    """One click per object of ``labels`` (in that order) that still has an error."""
    clicks = (next_click(prediction, truth, label) for label in labels)
    return [click for click in clicks if click is not None]
