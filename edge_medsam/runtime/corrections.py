"""Interactive 3D corrections over a VolumeSegmenter: objects 1..N, each with a 3D box and clicks on any slice.

Coordinates are those of ``VolumeSegmenter``: slice index along its axis, x, y in the displayed slice's pixels
(``VolumeInteractor`` adapters convert voxel indices). The session's state is one label volume plus, per object
and slice, the object's last prediction there (its mask, low-res logits and prompt box).

- A box segments its object by the segmenter's propagation (``segment_box3d``); so does a prediction on one
  slice (``add_slice``: e.g. a 2D box or the self-prompt there), followed through the whole volume.
- A click corrects its object on its slice: the decoder gets every click of that object on that slice, the
  object's previous low-res logits there as mask input and the box that slice was last decoded with (grown to
  hold the positive clicks), or the grown box of the slice's present mask when it has no earlier prediction (a
  label volume given to start from). The corrected mask is then carried to the neighbouring slices, up and down:
  each is decoded again with the grown box of its corrected neighbour and its own previous logits (the
  neighbour's logits where it had none and the segmenter propagates masks), until a slice no longer changes
  (IoU with its present mask >= ``stop_iou``; it keeps its mask), comes back empty, or the object's slice range
  ends (its box's z range widened to its clicked slices; the whole volume without a box).
- A correction moves only the way its click asks, on every slice it reaches: after a positive click the object
  only gains voxels, after a negative one it only loses them (the decoder's answer is united with, or
  intersected with, the present mask). On the synthetic CT volumes this kept clicks from lowering the DSC where
  the decoder's free answer reshaped the object elsewhere.
- Slices no walk reaches are never decoded again and keep their voxels bit for bit; every slice is encoded
  once while it stays in the segmenter's embedding cache, whatever the number of objects and clicks.
- ``undo`` takes back the last box, slice or click (the slices it wrote are kept, not the whole volume).

Overlap rule: a voxel belongs to at most one object. Where a box's mask covers a voxel another object holds, the
voxel goes to the object whose mask logit there is higher (the holder's from its last prediction on that slice;
a holder without one, e.g. from a given label volume, keeps it): neither the order of the boxes nor the size of
the objects decides. A correction only fills background and gives back its own voxels: it never takes a voxel
another object holds (that voxel changes hands only after the holder's own correction, e.g. a negative click,
gives it up), so a click changes no other object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge_medsam.errors import InputError
from edge_medsam.io import Volume, insert_slice, slice_volume
from edge_medsam.preprocess import logits_to_original
from edge_medsam.runtime.volume import SliceMask, VolumeSegmenter

DEFAULT_STOP_IOU = 0.98  # a re-decoded slice this close to its present mask counts as unchanged
MAX_UNDO = 50  # actions ``undo`` can take back


@dataclass(frozen=True)
class SliceClick:
    """One click on object ``label`` at pixel (x, y) of slice ``index`` (display coordinates)."""

    label: int
    index: int
    x: float
    y: float
    positive: bool


@dataclass
class TrackedObject:
    """One object of a session: its 3D box (display coordinates, or None), clicks, and last prediction per slice."""

    label: int
    box3d: tuple[float, ...] | None = None
    clicks: list[SliceClick] = field(default_factory=list)
    slices: dict[int, SliceMask] = field(default_factory=dict)

    def copy(self) -> TrackedObject:
        """A copy whose click list and slice table can change without changing this one."""
        return TrackedObject(self.label, self.box3d, list(self.clicks), dict(self.slices))


@dataclass
class _Undo:
    """What one action overwrote: the slices' label planes before it and every object's state."""

    planes: dict[int, np.ndarray]
    objects: dict[int, TrackedObject]


def _towards(found: SliceMask, own: np.ndarray, positive: bool) -> SliceMask:
    """A correction's mask moved only the way its click asks: a positive click adds to ``own``, a negative one
    takes away from it."""
    return found._replace(mask=found.mask | own if positive else found.mask & own)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks; two empty masks agree fully (1.0)."""
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


class CorrectionSession:
    """Boxes and clicks for objects of one volume, answered by one label volume (``labels``, volume shape).

    ``labels``: a label volume to start from (e.g. a previous prediction); its objects can then be corrected.
    ``changed``: the slices the last call wrote; ``decoder_runs`` counts decoder calls of this session.
    """

    def __init__(self, segmenter: VolumeSegmenter, *, stop_iou: float = DEFAULT_STOP_IOU,
                 labels: np.ndarray | None = None):
        if not 0.0 < stop_iou <= 1.0:
            raise InputError(f"stop IoU {stop_iou} is outside (0, 1]", fix="give a threshold such as 0.98")
        self.segmenter = segmenter
        self.stop_iou = float(stop_iou)
        # Labels as displayed slices, one contiguous plane each (a volume's slicing axis is often its last, where
        # a plane is strided across the whole array); the volume-shaped copy is brought up to date when read.
        self._planes = np.zeros((segmenter.count, segmenter.height, segmenter.width), np.uint16)
        self._labels = np.zeros(segmenter.volume.shape, np.uint16)
        self._stale: set[int] = set()
        self.objects: dict[int, TrackedObject] = {}
        self.changed: set[int] = set()
        self._undo: list[_Undo] = []
        self._decoder_start = segmenter.predictor.decoder_runs
        if labels is not None:
            self.restart_from(labels)

    @property
    def labels(self) -> np.ndarray:
        """The current label volume (the session's own array, read only: the session writes its planes, not this;
        copy it to keep a step)."""
        for index in self._stale:
            insert_slice(self._labels, self._planes[index], self.segmenter.volume, self.segmenter.axis, index)
        self._stale.clear()
        return self._labels

    @property
    def steps(self) -> int:
        """How many actions ``undo`` can take back."""
        return len(self._undo)

    @property
    def decoder_runs(self) -> int:
        """Decoder calls since the session began."""
        return self.segmenter.predictor.decoder_runs - self._decoder_start

    def restart_from(self, labels: np.ndarray) -> None:
        """Forget every object and take ``labels`` (the volume's shape) as the current prediction."""
        labels = np.asarray(labels)
        volume = self.segmenter.volume
        if labels.shape != volume.shape:
            raise InputError(f"a label volume of shape {labels.shape} does not match the volume {volume.shape}",
                             path=volume.path, fix="give the previous prediction of this volume")
        if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.uint16).max):
            raise InputError("a label volume holds labels outside 0..65535", path=volume.path,
                             fix="give object labels as non-negative integers")
        self._labels[...] = labels
        grid = Volume(self._labels, volume.affine)
        for index in range(self.segmenter.count):
            self._planes[index] = slice_volume(grid, self.segmenter.axis, index).pixels
        self._stale.clear()
        self.objects = {int(label): TrackedObject(int(label)) for label in np.unique(labels) if label}
        self.changed = set(range(self.segmenter.count))
        self._undo.clear()

    def plane(self, index: int) -> np.ndarray:
        """The label map of slice ``index`` in display orientation (a copy)."""
        return self._planes[index].copy()

    def _put(self, index: int, plane: np.ndarray) -> None:
        """Make ``plane`` the label map of slice ``index``."""
        self._planes[index] = plane
        self._stale.add(index)

    def add_box(self, label: int, box3d: Sequence[float]) -> set[int]:
        """Segment object ``label`` from a [x0, y0, z0, x1, y1, z1] box (replacing what it had); returns the slices
        written."""
        label = self._check_label(label)
        found = self.segmenter.segment_box3d(box3d)
        return self._replace(TrackedObject(label, tuple(float(v) for v in box3d), [], dict(found)))

    def add_slice(self, label: int, index: int, first: SliceMask) -> set[int]:
        """Object ``label`` from one slice's prediction, followed through the volume (replacing what it had);
        returns the slices written."""
        label = self._check_label(label)
        index = self.segmenter.check_index(index, "slice")
        found = {index: first, **self.segmenter.propagate(index, first, 0, self.segmenter.count - 1)} \
            if first.mask.any() else {}
        return self._replace(TrackedObject(label, None, [], found))

    def undo(self) -> bool:
        """Take back the last box, slice or click; False when there is nothing to take back."""
        if not self._undo:
            return False
        last = self._undo.pop()
        for index, plane in last.planes.items():
            self._put(index, plane)
        self.objects = last.objects
        self.changed = set(last.planes)
        return True

    def _begin(self) -> None:
        """Open an undo step for the action about to run."""
        self._undo.append(_Undo({}, {label: obj.copy() for label, obj in self.objects.items()}))
        del self._undo[:-MAX_UNDO]
        self.changed = set()

    def _replace(self, obj: TrackedObject) -> set[int]:
        """Make ``obj`` (with its slices' predictions) the object of its label, clearing what it had."""
        self._begin()
        for index in np.flatnonzero((self._planes == obj.label).any(axis=(1, 2))):
            plane = self.plane(int(index))
            self._save(int(index), plane)
            plane[plane == obj.label] = 0
            self._put(int(index), plane)
            self.changed.add(int(index))
        self.objects[obj.label] = obj
        for index in sorted(obj.slices):
            self._write(obj.label, index, obj.slices[index], contest=True)
        self.changed.update(obj.slices)
        return set(self.changed)

    def add_click(self, click: SliceClick) -> set[int]:
        """Correct the click's object on its slice and carry the correction to its neighbours; returns the slices
        written (the clicked one and those the correction reached)."""
        label = self._check_label(click.label)
        index = self.segmenter.check_index(click.index, "click slice")
        self._check_pixel(click)
        self._begin()
        obj = self.objects.setdefault(label, TrackedObject(label))
        obj.clicks.append(click)
        on_slice = [c for c in obj.clicks if c.index == index]
        points = np.array([[c.x, c.y] for c in on_slice], np.float32)
        point_labels = np.array([1 if c.positive else 0 for c in on_slice], np.float32)
        own = self.plane(index) == label
        earlier = obj.slices.get(index)
        box = self._box_for(earlier, own, on_slice)
        found = self.segmenter.predict_slice(index, box=box, points=points, labels=point_labels,
                                             mask_input=None if earlier is None else earlier.low_res)
        found = _towards(found, own, click.positive)
        obj.slices[index] = found
        kept = self._write(label, index, found)
        self.changed.add(index)
        if kept.any():
            self._carry(obj, index, kept, found, click.positive)
        return set(self.changed)

    def _box_for(self, earlier: SliceMask | None, own: np.ndarray, clicks: list[SliceClick]) -> np.ndarray | None:
        """The slice's box: the one it was decoded with, else its present mask's grown box; grown to the positive
        clicks; None when the slice has neither."""
        if earlier is not None and earlier.box is not None:
            box = earlier.box.copy()
        elif own.any():
            box = self.segmenter.grown_box(own)
        else:
            return None
        for c in clicks:
            if c.positive:
                box = np.array([min(box[0], c.x), min(box[1], c.y), max(box[2], c.x + 1), max(box[3], c.y + 1)],
                               np.float32)
        return box

    def _carry(self, obj: TrackedObject, start: int, mask: np.ndarray, first: SliceMask, positive: bool) -> None:
        """Re-decode the neighbours of a corrected slice, each way, until one no longer changes."""
        lo, hi = self._range(obj)
        carry_logits = self.segmenter.propagation == "mask"
        for step in (1, -1):
            previous, neighbour, index = mask, first, start + step
            while lo <= index <= hi:
                earlier = obj.slices.get(index)
                logits = earlier.low_res if earlier is not None else neighbour.low_res if carry_logits else None
                found = self.segmenter.predict_slice(index, box=self.segmenter.grown_box(previous), mask_input=logits)
                plane = self.plane(index)
                own = plane == obj.label
                found = _towards(found, own, positive)
                if mask_iou(found.mask & ((plane == 0) | own), own) >= self.stop_iou:
                    break  # unchanged: this slice and those beyond keep their masks
                obj.slices[index] = found
                kept = self._write(obj.label, index, found)
                self.changed.add(index)
                if not kept.any():
                    break
                previous, neighbour, index = kept, found, index + step

    def _range(self, obj: TrackedObject) -> tuple[int, int]:
        """The slices an object's corrections may reach: its box's z range widened to its clicks, else all."""
        if obj.box3d is None:
            return 0, self.segmenter.count - 1
        clicked = [c.index for c in obj.clicks if c.positive]
        return min([int(obj.box3d[2]), *clicked]), max([int(obj.box3d[5]), *clicked])

    def _write(self, label: int, index: int, found: SliceMask, contest: bool = False) -> np.ndarray:
        """Make a prediction the object's voxels on a slice under the overlap rule (``contest``: a box's, which may
        take other objects' voxels by their logits); returns what the object holds there now."""
        plane = self.plane(index)
        self._save(index, plane)
        own = plane == label
        kept = found.mask & (own | (plane == 0))
        if contest:
            kept |= found.mask & self._outbids(label, index, found, plane)
        plane[own & ~kept] = 0
        plane[kept] = label
        self._put(index, plane)
        return kept

    def _outbids(self, label: int, index: int, found: SliceMask, plane: np.ndarray) -> np.ndarray:
        """Where on a slice the prediction's logits beat those of the other objects holding the pixels."""
        wins = np.zeros(plane.shape, bool)
        contested = found.mask & (plane != 0) & (plane != label)
        if not contested.any():
            return wins
        geometry = self.segmenter.encoded(index).geometry
        mine = logits_to_original(found.low_res, geometry)[0]
        for holder in np.unique(plane[contested]):
            theirs = self.objects.get(int(holder))
            held = theirs.slices.get(index) if theirs is not None else None
            if held is not None:
                where = contested & (plane == holder)
                wins |= where & (mine > logits_to_original(held.low_res, geometry)[0])
        return wins

    def _save(self, index: int, plane: np.ndarray) -> None:
        """Keep a slice's plane as it was before the current action (once per action)."""
        if self._undo:
            self._undo[-1].planes.setdefault(index, plane.copy())

    def _check_label(self, label: int) -> int:
        if not float(label).is_integer() or not 1 <= int(label) <= np.iinfo(np.uint16).max:
            raise InputError(f"object label {label} is not an integer in 1..65535", path=self.segmenter.volume.path,
                             fix="number objects from 1")
        return int(label)

    def _check_pixel(self, click: SliceClick) -> None:
        width, height = self.segmenter.width, self.segmenter.height
        if not (0 <= click.x < width and 0 <= click.y < height):
            raise InputError(f"click ({click.x:g}, {click.y:g}) on slice {click.index} is outside the {width}x{height} "
                             f"slice", path=self.segmenter.volume.path, fix="click inside the slice")
