"""The slice-propagation baseline: a VolumeInteractor made of 2D prompts on slices, as the 2024 challenge's baseline.

Box step: each object's 3D box through ``segment_box3d`` (the 2D box on the middle slice of its z range, then
slice-by-slice propagation within the range). Click steps: for each new click, the object is segmented again on the
clicked slice alone (``predict_slice``) from all its clicks on that slice plus a box (its previous mask's box
there, grown by the propagation margin, else the case's box when the slice lies in its z range); that slice's
voxels of the object are replaced, every other slice keeps the previous prediction. Propagating the corrected
slice onward (``segment_slice_prompt`` through the volume, or ``propagate`` within the box's z range) lowered the
DSC after the clicks below the box's on synthetic CT (e.g. 0.554 -> 0.39 against 0.58 for the slice alone), so a
2D click stays on its slice; corrections in 3D are the runtime's job. Slices are taken along k, the protocol's axis.

Two back-ends: a bundle through VolumeSegmenter (``SlicePropagationInteractor``), and any 2D evaluation Segmenter
such as LiteMedSAM (``SegmenterSlicePropagation``: each slice normalised on its own for the modality, encoded when
visited, propagated by the same rule as VolumeSegmenter: the neighbour's mask box grown by its margin, stopping at
the first empty slice).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import numpy as np

from edge_medsam.data.prompts import box_from_mask
from edge_medsam.errors import EdgeMedSAMError, InputError
from edge_medsam.io import Volume, insert_slice, slice_volume
from edge_medsam.modalities import get_modality, normalise_intensity
from edge_medsam.runtime.interactor import SLICING_AXIS, SliceFrame
from edge_medsam.runtime.predictor import Predictor
from edge_medsam.runtime.protocol import Click3D, Segmenter
from edge_medsam.runtime.volume import DEFAULT_MARGIN, VolumeSegmenter


class _SlicePropagation(ABC):
    """The protocol side: the boxes at the first step, then each new click re-segments its object on its slice."""

    name: str

    def __init__(self) -> None:
        self._volume: Volume | None = None
        self._frame: SliceFrame | None = None
        self._seen = 0

    @abstractmethod
    def _open(self, volume: Volume) -> None:
        """Prepare the back-end for a new volume."""

    @abstractmethod
    def _predict(self, k: int, box: np.ndarray | None, points: np.ndarray | None,
                 labels: np.ndarray | None) -> np.ndarray:
        """One object's display mask on slice k."""

    @abstractmethod
    def _box3d(self, box: list[float]) -> dict[int, np.ndarray]:
        """Display masks per slice for a display box [x0, y0, z0, x1, y1, z1]."""

    @abstractmethod
    def _grown_box(self, mask: np.ndarray) -> np.ndarray:
        """The box prompt a slice's mask gives its neighbour."""

    def start(self, volume: Volume) -> None:
        """A new case, sliced along k."""
        self._volume, self._frame, self._seen = volume, SliceFrame(volume, SLICING_AXIS), 0
        self._open(volume)

    def step(self, boxes: Mapping[int, Sequence[int]], clicks: Sequence[Click3D],
             previous: np.ndarray | None) -> np.ndarray:
        """The boxes' segmentation at the first step, afterwards the previous one corrected by the new clicks."""
        if self._volume is None or self._frame is None:
            raise EdgeMedSAMError("no case is started", fix="call start(volume) before step")
        if previous is None:
            labels = np.zeros(self._volume.shape, np.uint16)
            for label, box in sorted(boxes.items()):
                for k, mask in self._box3d(self._frame.box3d(box)).items():
                    self._paint(labels, k, label, mask)
            self._seen = len(clicks)
            return labels
        labels = np.array(previous, np.uint16)
        for click in clicks[self._seen:]:
            self._correct(labels, click, [c for c in clicks if c.label == click.label and c.k == click.k],
                          boxes.get(click.label))
        self._seen = len(clicks)
        return labels

    def _paint(self, labels: np.ndarray, k: int, label: int, mask: np.ndarray) -> None:
        """Object ``label`` on slice k becomes ``mask`` (display pixels); other objects keep their other voxels."""
        assert self._volume is not None
        plane = slice_volume(Volume(labels, self._volume.affine), SLICING_AXIS, k).pixels.copy()
        plane[plane == label] = 0
        plane[mask] = label
        insert_slice(labels, plane, self._volume, SLICING_AXIS, k)

    def _correct(self, labels: np.ndarray, click: Click3D, on_slice: list[Click3D], box: Sequence[int] | None) -> None:
        volume, frame = self._volume, self._frame
        assert volume is not None and frame is not None
        points = np.array([frame.display(c.i, c.j, c.k)[1:] for c in on_slice], np.float32)
        point_labels = np.array([1 if c.positive else 0 for c in on_slice], np.float32)
        current = slice_volume(Volume(labels, volume.affine), SLICING_AXIS, click.k).pixels == click.label
        if current.any():
            prompt_box = self._grown_box(current)
        elif box is not None and box[2] <= click.k <= box[5]:
            x0, y0, _, x1, y1, _ = frame.box3d(box)
            prompt_box = np.array([x0, y0, x1, y1], np.float32)
        else:
            prompt_box = None
        self._paint(labels, click.k, click.label, self._predict(click.k, prompt_box, points, point_labels))


class SlicePropagationInteractor(_SlicePropagation):
    """``VolumeInteractor`` over a bundle's VolumeSegmenter (2D prompts, propagation slice by slice)."""

    def __init__(self, predictor: Predictor, name: str = "slice-propagation", modality: str = "auto"):
        super().__init__()
        self.predictor, self.name, self.modality = predictor, name, modality
        self._segmenter: VolumeSegmenter | None = None

    def _open(self, volume: Volume) -> None:
        # Box propagation, as the 2024 baseline and SegmenterSlicePropagation (the runtime's default now also
        # carries the neighbour's logits: that is "ours", the CorrectionSession).
        self._segmenter = VolumeSegmenter(self.predictor, volume, axis=SLICING_AXIS, modality=self.modality,
                                          cache_size=volume.shape[SLICING_AXIS], propagation="box")

    def _predict(self, k: int, box: np.ndarray | None, points: np.ndarray | None,
                 labels: np.ndarray | None) -> np.ndarray:
        assert self._segmenter is not None
        return self._segmenter.predict_slice(k, box=box, points=points, labels=labels).mask

    def _box3d(self, box: list[float]) -> dict[int, np.ndarray]:
        assert self._segmenter is not None
        return {k: found.mask for k, found in self._segmenter.segment_box3d(box).items()}

    def _grown_box(self, mask: np.ndarray) -> np.ndarray:
        assert self._segmenter is not None
        return self._segmenter.grown_box(mask)


class SegmenterSlicePropagation(_SlicePropagation):
    """``VolumeInteractor`` over a 2D evaluation Segmenter (e.g. LiteMedSAM's TeacherSegmenter)."""

    def __init__(self, segmenter: Segmenter, name: str | None = None, modality: str = "auto",
                 margin: int = DEFAULT_MARGIN):
        super().__init__()
        self.segmenter, self.name = segmenter, name or f"{segmenter.name}-slice-propagation"
        self.modality, self.margin = modality, int(margin)
        self._current: int | None = None
        self._slice_modality = get_modality("ct")

    def _open(self, volume: Volume) -> None:
        name = volume.modality if self.modality == "auto" else self.modality
        if not name:
            raise InputError("the volume declares no modality, which this model's slices are normalised by",
                             path=volume.path, fix="give --modality (e.g. ct or mr)")
        self._slice_modality = get_modality(name)
        self._current = None

    def _encode(self, k: int) -> None:
        if self._current != k:
            assert self._volume is not None
            image = slice_volume(self._volume, SLICING_AXIS, k)
            self.segmenter.set_image(normalise_intensity(image.pixels, self._slice_modality,
                                                         hounsfield=image.hounsfield), self._slice_modality)
            self._current = k

    def _predict(self, k: int, box: np.ndarray | None, points: np.ndarray | None,
                 labels: np.ndarray | None) -> np.ndarray:
        self._encode(k)
        prediction = self.segmenter.predict(boxes=None if box is None else np.asarray(box, np.float32)[None],
                                            points=None if points is None else points[None],
                                            point_labels=None if labels is None else labels[None])
        return prediction.masks[0]

    def _grown_box(self, mask: np.ndarray) -> np.ndarray:
        height, width = mask.shape
        box = box_from_mask(mask) + np.array([-self.margin, -self.margin, self.margin, self.margin], np.float32)
        return np.clip(box, 0, [width, height, width, height]).astype(np.float32)

    def _box3d(self, box: list[float]) -> dict[int, np.ndarray]:
        x0, y0, z0, x1, y1, z1 = box
        lo, hi, middle = int(z0), int(z1), (int(z0) + int(z1)) // 2
        first = self._predict(middle, np.array([x0, y0, x1, y1], np.float32), None, None)
        found = {middle: first} if first.any() else {}
        for step in (1, -1) if found else ():
            previous, k = first, middle + step
            while lo <= k <= hi:
                current = self._predict(k, self._grown_box(previous), None, None)
                if not current.any():
                    break
                found[k], previous, k = current, current, k + step
        return found
