"""The slice-propagation baseline: a VolumeInteractor made of what VolumeSegmenter does with 2D prompts.

Box step: each object's 3D box through ``segment_box3d`` (the 2D box on the middle slice of its z range, then
slice-by-slice propagation within the range). Click steps: for each new click, the object is segmented again on the
clicked slice alone (``predict_slice``) from all its clicks on that slice plus a box (its previous mask's box
there, grown by the propagation margin, else the case's box when the slice lies in its z range); that slice's
voxels of the object are replaced, every other slice keeps the previous prediction. Propagating the corrected
slice onward (``segment_slice_prompt`` through the volume, or ``propagate`` within the box's z range) lowered the
DSC after the clicks below the box's on synthetic CT (e.g. 0.554 -> 0.39 against 0.58 for the slice alone), so a
2D click stays on its slice; corrections in 3D are the runtime's job. Slices are taken along k, the protocol's axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.io import Volume, insert_slice, slice_volume
from edge_medsam.runtime.interactor import SLICING_AXIS, SliceFrame
from edge_medsam.runtime.predictor import Predictor
from edge_medsam.runtime.protocol import Click3D
from edge_medsam.runtime.volume import VolumeSegmenter


class SlicePropagationInteractor:
    """``VolumeInteractor`` over a bundle's VolumeSegmenter (2D prompts, propagation slice by slice)."""

    def __init__(self, predictor: Predictor, name: str = "slice-propagation", modality: str = "auto"):
        self.predictor = predictor
        self.name = name
        self.modality = modality
        self._segmenter: VolumeSegmenter | None = None
        self._frame: SliceFrame | None = None
        self._seen = 0

    def start(self, volume: Volume) -> None:
        """A new case: a fresh segmenter (and embedding cache) on slices along k."""
        self._segmenter = VolumeSegmenter(self.predictor, volume, axis=SLICING_AXIS, modality=self.modality,
                                          cache_size=volume.shape[SLICING_AXIS])
        self._frame = SliceFrame(volume, SLICING_AXIS)
        self._seen = 0

    def step(self, boxes: Mapping[int, Sequence[int]], clicks: Sequence[Click3D],
             previous: np.ndarray | None) -> np.ndarray:
        """The boxes' segmentation at the first step, afterwards the previous one corrected by the new clicks."""
        if self._segmenter is None or self._frame is None:
            raise EdgeMedSAMError("no case is started", fix="call start(volume) before step")
        if previous is None:
            labels = np.zeros(self._segmenter.volume.shape, np.uint16)
            for label, box in sorted(boxes.items()):
                for k, found in self._segmenter.segment_box3d(self._frame.box3d(box)).items():
                    self._paint(labels, k, label, found.mask)
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
        assert self._segmenter is not None
        volume = self._segmenter.volume
        plane = slice_volume(Volume(labels, volume.affine), SLICING_AXIS, k).pixels.copy()
        plane[plane == label] = 0
        plane[mask] = label
        insert_slice(labels, plane, volume, SLICING_AXIS, k)

    def _correct(self, labels: np.ndarray, click: Click3D, on_slice: list[Click3D], box: Sequence[int] | None) -> None:
        segmenter, frame = self._segmenter, self._frame
        assert segmenter is not None and frame is not None
        points = np.array([frame.display(c.i, c.j, c.k)[1:] for c in on_slice], np.float32)
        point_labels = np.array([1 if c.positive else 0 for c in on_slice], np.float32)
        current = slice_volume(Volume(labels, segmenter.volume.affine), SLICING_AXIS, click.k).pixels == click.label
        if current.any():
            prompt_box = segmenter.grown_box(current)
        elif box is not None and box[2] <= click.k <= box[5]:
            x0, y0, _, x1, y1, _ = frame.box3d(box)
            prompt_box = np.array([x0, y0, x1, y1], np.float32)
        else:
            prompt_box = None
        corrected = segmenter.predict_slice(click.k, box=prompt_box, points=points, labels=point_labels)
        self._paint(labels, click.k, click.label, corrected.mask)
