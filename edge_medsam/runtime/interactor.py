"""The runtime as a VolumeInteractor ("ours"): voxel-index boxes and clicks in, a corrected label volume out.

The interactive 3D protocol speaks in voxel indices of ``Volume.voxels`` and slices along k; the runtime's
VolumeSegmenter speaks in display pixels of ``slice_volume`` slices. ``SliceFrame`` converts between them by
the display convention itself (a permutation and flips of the in-plane axes), so it holds for any affine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edge_medsam.errors import InputError
from edge_medsam.io import Volume, slice_volume
from edge_medsam.runtime.corrections import DEFAULT_STOP_IOU, CorrectionSession, SliceClick
from edge_medsam.runtime.images import ModalityLike, WindowLike
from edge_medsam.runtime.predictor import Predictor
from edge_medsam.runtime.protocol import Click3D
from edge_medsam.runtime.volume import DEFAULT_MARGIN, DEFAULT_PROPAGATION, VolumeSegmenter

SLICING_AXIS = 2  # the protocol's slicing axis: k


class SliceFrame:
    """Where each voxel of a volume appears on its displayed slices along ``axis``: (i, j, k) → (slice, x, y)."""

    def __init__(self, volume: Volume, axis: int = SLICING_AXIS):
        self.axis = axis
        self.shape = volume.shape
        self._in_plane = [a for a in range(3) if a != axis]
        rows, cols = (volume.shape[a] for a in self._in_plane)
        # Number the voxels of one slice, display that slice, and invert: display position of every voxel.
        numbered = np.arange(rows * cols).reshape(rows, cols)
        grid = np.broadcast_to(np.expand_dims(numbered, axis), volume.shape)
        shown = slice_volume(Volume(grid, volume.affine), axis, 0).pixels
        self.height, self.width = shown.shape
        self._position = np.empty(rows * cols, np.int64)
        self._position[shown.ravel()] = np.arange(shown.size)
        self._cols = cols

    def display(self, i: int, j: int, k: int) -> tuple[int, int, int]:
        """Voxel (i, j, k) → (slice index, x, y) in display pixels."""
        voxel = (int(i), int(j), int(k))
        if not all(0 <= v < n for v, n in zip(voxel, self.shape, strict=True)):
            raise InputError(f"voxel {voxel} is outside the volume of shape {self.shape}",
                             fix="give voxel indices inside the volume")
        p, q = (voxel[a] for a in self._in_plane)
        y, x = divmod(int(self._position[p * self._cols + q]), self.width)
        return voxel[self.axis], x, y

    def box3d(self, box: Sequence[int]) -> list[float]:
        """An inclusive voxel box (i0, j0, k0, i1, j1, k1) → the display box [x0, y0, z0, x1, y1, z1] (x, y on pixel
        edges, z inclusive slice indices), as ``VolumeSegmenter.segment_box3d`` takes it."""
        values = [int(v) for v in box]
        if len(values) != 6:
            raise InputError(f"voxel box {list(box)} is not six indices", fix="give i0 j0 k0 i1 j1 k1")
        low, high = values[:3], values[3:]
        if any(b < a for a, b in zip(low, high, strict=True)):
            raise InputError(f"voxel box {values} has a maximum below its minimum", fix="give i0 j0 k0 i1 j1 k1")
        z0, xa, ya = self.display(*low)
        z1, xb, yb = self.display(*high)
        return [float(min(xa, xb)), float(min(ya, yb)), float(min(z0, z1)),
                float(max(xa, xb) + 1), float(max(ya, yb) + 1), float(max(z0, z1))]

    def click(self, click: Click3D) -> SliceClick:
        """A voxel click → the same click on its displayed slice."""
        index, x, y = self.display(click.i, click.j, click.k)
        return SliceClick(click.label, index, float(x), float(y), bool(click.positive))


class RuntimeInteractor:
    """``edge_medsam.runtime.protocol.VolumeInteractor`` over a bundle's predictor: boxes segment by propagation,
    clicks correct in 3D (``CorrectionSession``).

    The previous prediction is taken at the first step (a case's ``prev_pred``); later steps continue from the
    session's own state, which is that prediction. Every slice of a case stays in the embedding cache, so each is
    encoded at most once per case (about 5 MB per slice for the shipped bundle).
    """

    def __init__(self, predictor: Predictor, *, name: str = "ours", modality: ModalityLike = "auto",
                 window: WindowLike = None, propagation: str = DEFAULT_PROPAGATION, margin: int = DEFAULT_MARGIN,
                 stop_iou: float = DEFAULT_STOP_IOU):
        self.predictor = predictor
        self.name = name
        self.modality, self.window = modality, window
        self.propagation, self.margin, self.stop_iou = propagation, margin, stop_iou
        self.session: CorrectionSession | None = None
        self.frame: SliceFrame | None = None
        self._boxes: dict[int, tuple[int, ...]] | None = None
        self._clicks: list[Click3D] = []

    def start(self, volume: Volume) -> None:
        """A new case: a fresh segmenter (and embedding cache) over ``volume``."""
        segmenter = VolumeSegmenter(self.predictor, volume, axis=SLICING_AXIS, modality=self.modality,
                                    window=self.window, cache_size=volume.shape[SLICING_AXIS], margin=self.margin,
                                    propagation=self.propagation)
        self.session = CorrectionSession(segmenter, stop_iou=self.stop_iou)
        self.frame = SliceFrame(volume, SLICING_AXIS)
        self._boxes, self._clicks = None, []

    def step(self, boxes: Mapping[int, Sequence[int]], clicks: Sequence[Click3D],
             previous: np.ndarray | None) -> np.ndarray:
        """The label volume after this step (boxes at the first step, then the clicks not yet applied)."""
        if self.session is None or self.frame is None:
            raise InputError("step before start", fix="call start(volume) for each case")
        given = {int(label): tuple(int(v) for v in box) for label, box in boxes.items()}
        clicks = list(clicks)
        if self._boxes is None:
            if previous is not None:
                self.session.restart_from(previous)
            for label in sorted(given):
                self.session.add_box(label, self.frame.box3d(given[label]))
            self._boxes = given
        elif given != self._boxes:
            raise InputError("the boxes changed during a case", fix="give a case's boxes unchanged at every step")
        if clicks[:len(self._clicks)] != self._clicks:
            raise InputError("the clicks do not extend the earlier steps' clicks",
                             fix="give every click so far, in order, at each step")
        for click in clicks[len(self._clicks):]:
            self.session.add_click(self.frame.click(click))
        self._clicks = clicks
        return self.session.labels.copy()
