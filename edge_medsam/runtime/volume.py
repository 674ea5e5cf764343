"""3D volumes: slice-by-slice segmentation with one embedding cache shared by every object.

Prompts:
- a 3D box ``[x_min, y_min, z_min, x_max, y_max, z_max]`` as MedSAM-on-Laptop gives them: x, y in the pixels
  of a displayed slice (``slice_volume``), z the slice index along the slicing axis (inclusive). The middle
  slice is segmented with the 2D box, then the object is followed slice by slice up and down within
  z_min..z_max, each slice prompted with the previous slice's mask box enlarged by ``margin`` pixels (and, with
  ``propagation="mask"``, the previous slice's low-res logits as mask input), stopping where the mask comes
  back empty;
- points (and optionally a 2D box) on any slice: that slice, then the same propagation through the volume;
- no prompt: every slice self-prompted (label 1 wherever the foreground is found).

The modality is decided once per volume (given, declared by the file, or recognised on the middle slice), so
every slice is normalised and encoded alike. The label volume holds objects 1..N in the volume's own grid.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from edge_medsam.data.prompts import box_from_mask
from edge_medsam.errors import InputError
from edge_medsam.io import Image2D, Volume, insert_slice, read_volume, slice_volume
from edge_medsam.runtime.images import ModalityLike, ModalityPlan, WindowLike, looks_like_hounsfield, plan_modality
from edge_medsam.runtime.predictor import EncodedImage, Predictor

DEFAULT_MARGIN = 3  # pixels added around the previous slice's mask box (the MedSAM-on-Laptop baseline's 3)
DEFAULT_CACHE = 64  # slices whose encoder outputs are kept (about 1 MB each for the tiny student at 256)
PROPAGATIONS = ("box", "mask")  # what a slice takes from its neighbour: the grown mask box, or that and its logits
DEFAULT_PROPAGATION = "mask"  # higher box DSC and DSC_AUC on the labelled volumes: benchmarks/results/*/propagation.md


@dataclass(frozen=True)
class SlicePrompt:
    """Points (x, y pixels, labels 1/0) and/or a 2D box on slice ``index``: one object."""

    index: int
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: np.ndarray | None = None


class SliceMask(NamedTuple):
    """One object on one slice: its (H, W) bool mask, predicted IoU, low-res logits (1, h, w) to feed back as
    mask input, and the box it was prompted with (None for points alone or the self-prompt)."""

    mask: np.ndarray
    score: float
    low_res: np.ndarray
    box: np.ndarray | None = None


SliceMasks = dict[int, SliceMask]


@dataclass
class VolumeObject:
    """One segmented object: its label, the slices it covers and its mean predicted IoU there."""

    label: int
    prompt: str
    slices: list[int]
    score: float
    voxels: int = 0


@dataclass
class VolumeResult:
    """A label volume (objects 1..N, the volume's shape) and how it was obtained."""

    labels: np.ndarray
    objects: list[VolumeObject]
    modality: str | None
    modality_source: str
    modality_confidence: float
    latency_ms: dict[str, float] = field(default_factory=dict)
    encoder_runs: int = 0
    cache_hits: int = 0
    cache_misses: int = 0


class EmbeddingCache:
    """Least-recently-used encoder outputs by slice index, with hit/miss counts."""

    def __init__(self, capacity: int = DEFAULT_CACHE):
        if capacity < 1:
            raise InputError(f"cache size {capacity} is below 1", fix="keep at least one slice")
        self.capacity = capacity
        self._items: OrderedDict[int, EncodedImage] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: int, make: Callable[[], EncodedImage]) -> EncodedImage:
        """The cached value for ``key``, or ``make()`` stored (evicting the least recently used)."""
        if key in self._items:
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key]
        self.misses += 1
        value = make()
        self._items[key] = value
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


def _add(total: dict[str, float], part: dict[str, float], stages: Sequence[str] | None = None) -> None:
    for stage, ms in part.items():
        if stages is None or stage in stages:
            total[stage] = total.get(stage, 0.0) + ms


class VolumeSegmenter:
    """Segment one volume (a Volume, or a NIfTI / DICOM series path) with a predictor; slices are encoded at
    most once while they stay in the cache."""

    def __init__(self, predictor: Predictor, volume: Volume | str | os.PathLike[str], *, axis: int | str = "axial",
                 modality: ModalityLike = "auto", window: WindowLike = None, cache_size: int = DEFAULT_CACHE,
                 margin: int = DEFAULT_MARGIN, propagation: str = DEFAULT_PROPAGATION):
        if propagation not in PROPAGATIONS:
            raise InputError(f"unknown propagation {propagation!r}", fix=f"use one of {', '.join(PROPAGATIONS)}")
        self.predictor = predictor
        self.propagation = propagation
        self.volume = volume if isinstance(volume, Volume) else read_volume(volume)
        self.axis = axis
        self.window = window
        self.margin = int(margin)
        self.cache = EmbeddingCache(cache_size)
        self.latency_ms: dict[str, float] = {}
        self._runs_before = predictor.encoder_runs
        self._reference: EncodedImage | None = None  # the first slice encoded: it reports the modality
        probe = slice_volume(self.volume, axis, 0)
        self.array_axis = int(probe.meta["slice"]["axis"])  # the array axis slices are taken along
        self.count = self.volume.shape[self.array_axis]
        self.height, self.width = probe.shape
        self.plan = self._plan(modality)

    def _plan(self, modality: ModalityLike) -> ModalityPlan:
        in_hu = self.volume.hounsfield or looks_like_hounsfield(self.volume.voxels)
        middle = self.count // 2
        plan = plan_modality(self.slice_image(middle), modality, self.predictor.bundle, hounsfield=in_hu)
        if plan.index >= 0:
            return plan
        # Recognise once on the middle slice; encoding with the recognised index gives the same outputs.
        encoded = self.cache.get(middle, lambda: self._encode(middle, plan))
        return ModalityPlan(plan.rule, encoded.modality_index, "model", plan.hounsfield)

    def slice_image(self, index: int) -> Image2D:
        """Slice ``index`` in display orientation."""
        return slice_volume(self.volume, self.axis, index)

    def _encode(self, index: int, plan: ModalityPlan) -> EncodedImage:
        encoded = self.predictor.encode(self.slice_image(index), window=self.window, plan=plan)
        _add(self.latency_ms, encoded.latency_ms)
        self._reference = self._reference or encoded
        return encoded

    @property
    def reference(self) -> EncodedImage:
        """The first slice encoded, which reports the volume's modality (the middle slice if none was yet)."""
        return self._reference or self.encoded(self.count // 2)

    def encoded(self, index: int) -> EncodedImage:
        """The slice's encoder outputs, from the cache when present."""
        return self.cache.get(index, lambda: self._encode(index, self.plan))

    def predict_slice(self, index: int, *, box: np.ndarray | None = None, points: np.ndarray | None = None,
                      labels: np.ndarray | None = None, mask_input: np.ndarray | None = None) -> SliceMask:
        """One object on a slice from a box, points and/or earlier low-res logits; no prompt = self-prompted."""
        self.predictor.set_encoded(self.encoded(index))
        result = self.predictor.predict(points=points, labels=labels, boxes=box, mask=mask_input)
        _add(self.latency_ms, result.latency_ms, ("decoder", "postprocess"))
        return SliceMask(result.masks[0], float(result.scores[0]), result.low_res_logits[0],
                         None if box is None else np.asarray(box, np.float32).reshape(4))

    def grown_box(self, mask: np.ndarray) -> np.ndarray:
        """A non-empty mask's box enlarged by ``margin`` pixels, clipped to the slice."""
        box = box_from_mask(mask) + np.array([-self.margin, -self.margin, self.margin, self.margin], np.float32)
        return np.clip(box, 0, [self.width, self.height, self.width, self.height]).astype(np.float32)

    def propagate(self, start: int, first: SliceMask, lo: int, hi: int) -> SliceMasks:
        """Follow a non-empty mask from slice ``start`` up to ``hi`` and down to ``lo``, each way until a slice
        comes back empty; each slice is prompted by its neighbour (``propagation``)."""
        found: SliceMasks = {}
        for step in (1, -1):
            previous, index = first, start + step
            while lo <= index <= hi:
                carried = previous.low_res if self.propagation == "mask" else None
                current = self.predict_slice(index, box=self.grown_box(previous.mask), mask_input=carried)
                if not current.mask.any():
                    break
                found[index] = current
                previous, index = current, index + step
        return found

    def check_index(self, index: float, what: str) -> int:
        """A slice index as int; InputError naming ``what`` when it is not one of the volume's slices."""
        if not float(index).is_integer() or not 0 <= int(index) < self.count:
            raise InputError(f"{what} {index} is outside the volume's slices 0..{self.count - 1}",
                             path=self.volume.path, fix=f"give slice indices from 0 to {self.count - 1}")
        return int(index)

    def segment_box3d(self, box3d: Sequence[float]) -> SliceMasks:
        """Masks per slice for a [x_min, y_min, z_min, x_max, y_max, z_max] box (empty if the middle is empty)."""
        values = np.asarray(box3d, np.float64).reshape(-1)
        if values.size != 6 or not np.isfinite(values).all():
            raise InputError(f"3D box {list(box3d)} is not six numbers", path=self.volume.path,
                             fix="give x_min y_min z_min x_max y_max z_max")
        x0, y0, z0, x1, y1, z1 = values
        lo, hi = self.check_index(z0, "3D box z_min"), self.check_index(z1, "3D box z_max")
        if hi < lo:
            raise InputError(f"3D box {values.tolist()} has z_max below z_min", path=self.volume.path,
                             fix="order it x_min y_min z_min x_max y_max z_max")
        middle = (lo + hi) // 2
        try:
            first = self.predict_slice(middle, box=np.array([x0, y0, x1, y1], np.float32))
        except InputError as err:
            raise InputError(f"3D box {values.tolist()}: {err.problem}", path=self.volume.path, fix=err.fix) from err
        if not first.mask.any():
            return {}
        return {middle: first, **self.propagate(middle, first, lo, hi)}

    def segment_slice_prompt(self, prompt: SlicePrompt) -> SliceMasks:
        """Masks per slice for points / a box on one slice, propagated through the whole volume."""
        index = self.check_index(prompt.index, "slice")
        if prompt.points is None and prompt.box is None:
            raise InputError(f"the prompt on slice {index} has neither points nor a box", path=self.volume.path,
                             fix="give points (x, y, label) or a box on that slice")
        first = self.predict_slice(index, box=prompt.box, points=prompt.points, labels=prompt.labels)
        if not first.mask.any():
            return {}
        return {index: first, **self.propagate(index, first, 0, self.count - 1)}

    def segment_auto(self, min_confidence: float = 0.0) -> SliceMasks:
        """The self-prompted foreground of every slice whose self-prompt confidence reaches ``min_confidence``."""
        found = {}
        for index in range(self.count):
            if self.encoded(index).self_prompt_confidence < min_confidence:
                continue
            current = self.predict_slice(index)
            if current.mask.any():
                found[index] = current
        return found

    def segment(self, boxes3d: Sequence[Sequence[float]] = (), slice_prompts: Sequence[SlicePrompt] = (), *,
                min_confidence: float = 0.0) -> VolumeResult:
        """Label volume for 3D boxes and slice prompts (objects numbered in that order), or self-prompted if none."""
        per_object: list[tuple[str, SliceMasks]] = []
        per_object += [("box3d", self.segment_box3d(box)) for box in boxes3d]
        per_object += [("points", self.segment_slice_prompt(prompt)) for prompt in slice_prompts]
        if not per_object:
            per_object.append(("auto", self.segment_auto(min_confidence)))
        return self._assemble(per_object)

    def _assemble(self, per_object: list[tuple[str, SliceMasks]]) -> VolumeResult:
        planes: dict[int, np.ndarray] = {}
        objects = []
        for label, (kind, masks) in enumerate(per_object, start=1):
            for index, found in masks.items():
                plane = planes.setdefault(index, np.zeros((self.height, self.width), np.uint16))
                plane[found.mask] = label  # later objects win where they overlap, as in the challenge baseline
            scores = [found.score for found in masks.values()]
            objects.append(VolumeObject(label, kind, sorted(masks), float(np.mean(scores)) if scores else 0.0))
        labels = np.zeros(self.volume.shape, np.uint16)
        for index, plane in planes.items():
            insert_slice(labels, plane, self.volume, self.axis, index)
        counts = np.bincount(labels.ravel(), minlength=len(objects) + 1)
        for obj in objects:
            obj.voxels = int(counts[obj.label])
        reference = self.reference
        return VolumeResult(labels, objects, reference.modality, self.plan.source, reference.modality_confidence,
                            dict(self.latency_ms), self.predictor.encoder_runs - self._runs_before,
                            self.cache.hits, self.cache.misses)
