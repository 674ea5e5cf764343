"""One browser session: the uploaded document, the view, the objects with their prompts and masks, and undo.

Every object has, per view it was prompted on (plane, slice), its points, its box and the mask they gave. A
click refines the object with all its points, its box and its previous low-res logits (as the student was
trained: one click at a time with the previous mask); a new box predicts from the box and the points. With no
prompt an object takes the model's self-prompt, which is what an upload shows at once.

In 3D mode (volumes) the objects live in one label volume instead (``runtime.corrections.CorrectionSession`` over
the acquisition plane): entering it follows each object's mask on the shown slice through the volume; a box or
the self-prompt on a slice does the same for the active object; a click on any slice corrects the object there
and carries the correction to the neighbouring slices. The other planes show that volume; undo takes back 3D
steps too.

Methods that run the model must be called while holding the engine's lock (``DemoEngine.lock``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from edge_medsam.apps.demo.document import Document
from edge_medsam.apps.demo.engine import DemoEngine
from edge_medsam.apps.demo.stacks import PICTURE, Stack, display_pixels, open_stack, planes
from edge_medsam.errors import InputError
from edge_medsam.io import Volume, insert_slice, slice_volume
from edge_medsam.runtime.corrections import CorrectionSession, SliceClick
from edge_medsam.runtime.images import ModalityLike, WindowLike
from edge_medsam.runtime.predictor import EncodedImage, timed
from edge_medsam.runtime.volume import SliceMask, VolumeSegmenter

ViewKey = tuple[str, int]  # (plane, slice index); a picture's only view is (PICTURE, 0)
Point = tuple[float, float, int]  # x, y in pixels of the view, label 1 (foreground) or 0 (background)
Box = tuple[float, float, float, float]
MAX_HISTORY = 50  # undo steps kept per session (each holds references to masks, not copies)
MAX_NAME = 64  # characters of an object name (DICOM-SEG segment labels hold 64)
ENCODE_STAGES = ("read", "normalise", "preprocess", "encoder")


@dataclass(frozen=True)
class Annotation:
    """One object on one view: its prompts, the mask they gave, the low-res logits for the next click, the IoU,
    and whether it is the self-prompted foreground (its clicks correct that) or an object of its own prompts."""

    points: tuple[Point, ...]
    box: Box | None
    mask: np.ndarray
    logits: np.ndarray
    score: float
    auto: bool

    @property
    def prompted(self) -> bool:
        """False for a self-prompted mask."""
        return bool(self.points) or self.box is not None


@dataclass(frozen=True)
class DemoObject:
    """A named object and its annotations by view (never modified in place: undo keeps old versions)."""

    name: str
    annotations: dict[ViewKey, Annotation] = field(default_factory=dict)

    def with_annotation(self, key: ViewKey, annotation: Annotation | None) -> DemoObject:
        """A copy with the annotation of a view set (or removed with None)."""
        annotations = {k: v for k, v in self.annotations.items() if k != key}
        if annotation is not None:
            annotations[key] = annotation
        return replace(self, annotations=annotations)


@dataclass(frozen=True)
class Step:
    """The last action and the wall time of each stage it ran, in milliseconds."""

    action: str
    latency_ms: dict[str, float]


def _clean_name(name: str) -> str:
    cleaned = " ".join(str(name).split())[:MAX_NAME]
    if not cleaned:
        raise InputError("an object name cannot be empty", fix="type a name such as 'liver' or 'lesion 1'")
    return cleaned


class DemoSession:
    """The state of one browser session (kept in a gr.State; the engine is shared, the rest is private)."""

    def __init__(self, engine: DemoEngine, document: Document, modality: ModalityLike = "auto",
                 window: WindowLike = None, cache_size: int = 16):
        self.engine = engine
        self.document = document
        self.modality: ModalityLike = modality
        self.window: WindowLike = window
        self.cache_size = cache_size
        self.planes = planes(document.volume) if document.volume is not None else [PICTURE]
        self.plane = self.planes[0]
        self._stacks: dict[str, Stack] = {}
        self.index = self.stack.count // 2
        self.objects: list[DemoObject] = [DemoObject("object 1")]
        self.active = 0
        self._history: list[tuple[list[DemoObject], int, CorrectionSession | None]] = []
        self.volume3d: CorrectionSession | None = None  # the 3D mode's label volume, None outside 3D mode
        self.last_step = Step("load", {})
        self._run("load", self._auto_current)

    # --- views ------------------------------------------------------------------------------------------------
    @property
    def stack(self) -> Stack:
        """The stack of views along the current plane."""
        return self._stack_of(self.plane)

    @property
    def view(self) -> ViewKey:
        """The view shown: (plane, slice index)."""
        return self.plane, self.index

    @property
    def uses_window(self) -> bool:
        """True when the image is in Hounsfield units, so a CT window decides what the model sees."""
        return bool(self.stack.plan.hounsfield)

    def display(self) -> np.ndarray:
        """The shown view as (H, W, 3) uint8, as the model sees it."""
        return display_pixels(self.stack, self.index)

    def encoded(self) -> EncodedImage:
        """The shown view's encoder outputs (modality recognised, confidence), from the cache if there."""
        return self.stack.encoded(self.index)

    def set_view(self, plane: str, index: int | None = None) -> None:
        """Show slice ``index`` of ``plane`` (the middle slice when the plane changes or no index is given)."""
        if plane not in self.planes:
            raise InputError(f"no {plane!r} view of this upload", fix=f"choose one of {', '.join(self.planes)}")
        count = self._stack_of(plane).count
        index = count // 2 if index is None or plane != self.plane else int(index)
        if not 0 <= index < count:
            raise InputError(f"slice {index} is outside 0..{count - 1}", fix=f"choose a slice from 0 to {count - 1}")
        self.plane, self.index = plane, index
        self._run("view", self._encode)

    def set_intensity(self, modality: ModalityLike, window: WindowLike) -> None:
        """Change the modality choice or CT window: the views are encoded again and every object re-predicted
        from its prompts. Undo history starts afresh (older masks belong to the old input); on an error
        nothing changes."""
        saved = self.modality, self.window, dict(self._stacks), list(self.objects), self.view
        self.modality, self.window = modality, window
        self._stacks.clear()
        try:
            self._run("intensity", self._predict_all)
        except Exception:
            self.modality, self.window, self._stacks, self.objects, (self.plane, self.index) = saved
            raise
        self._history.clear()
        self.volume3d = None  # its masks came from the old input: 3D mode starts again from the 2D masks

    # --- objects and prompts ----------------------------------------------------------------------------------
    @property
    def current(self) -> Annotation | None:
        """The active object's annotation on the shown view."""
        return self.objects[self.active].annotations.get(self.view)

    # --- 3D mode ----------------------------------------------------------------------------------------------
    def set_3d(self, on: bool) -> None:
        """Enter 3D mode (each object's mask on the shown slice followed through the volume) or leave it (the
        per-slice masks are shown again; the 3D result is dropped)."""
        if not on:
            self.volume3d = None
            self.last_step = Step("2D", {})
            return
        if self.document.volume is None:
            raise InputError("3D mode needs a volume", fix="upload a DICOM series, NIfTI or a 3D .npz")
        if self.volume3d is not None:
            return
        if self.plane != self.planes[0]:
            self.set_view(self.planes[0], None)
        stack = self._stack_of(self.planes[0])
        assert isinstance(stack, VolumeSegmenter)
        volume3d = CorrectionSession(stack)

        def follow(stages: dict[str, float]) -> None:
            for label, obj in enumerate(self.objects, start=1):
                annotation = obj.annotations.get(self.view)
                if annotation is not None and annotation.mask.any():
                    box = None if annotation.box is None else np.array(annotation.box, np.float32)
                    with timed(stages, "propagate"):
                        volume3d.add_slice(label, self.index, SliceMask(annotation.mask, annotation.score,
                                                                        annotation.logits, box))

        self._run("3D", follow)
        self.volume3d = volume3d

    def _in_3d(self, action: str, work: Callable[[CorrectionSession, dict[str, float]], object]) -> bool:
        """Run a 3D step for the active object (undoable); False outside 3D mode."""
        volume3d = self.volume3d
        if volume3d is None:
            return False
        if self.plane != self.planes[0]:
            raise InputError(f"3D corrections take clicks and boxes on the {self.planes[0]} plane",
                             fix=f"switch to the {self.planes[0]} plane, or leave 3D mode")
        steps = volume3d.steps
        self._history.append((list(self.objects), self.active, volume3d))
        del self._history[:-MAX_HISTORY]
        try:
            self._run(action, lambda stages: work(volume3d, stages))
        except Exception:
            self._history.pop()
            if volume3d.steps > steps:
                volume3d.undo()
            raise
        return True

    def _clear_3d(self, volume3d: CorrectionSession, stages: dict[str, float]) -> None:
        size = self.engine.predictor.bundle.low_res_size
        nothing = np.zeros(self.stack.slice_image(self.index).shape, bool)
        volume3d.add_slice(self.active + 1, self.index, SliceMask(nothing, 0.0, np.zeros((1, size, size), np.float32)))

    def _follow_3d(self, action: str, annotation: Callable[[dict[str, float]], Annotation]) -> bool:
        """In 3D mode: the active object from a prediction on the shown slice, followed through the volume."""
        def work(volume3d: CorrectionSession, stages: dict[str, float]) -> None:
            found = annotation(stages)
            box = None if found.box is None else np.array(found.box, np.float32)
            with timed(stages, "propagate"):
                volume3d.add_slice(self.active + 1, self.index, SliceMask(found.mask, found.score, found.logits, box))

        return self._in_3d(action, work)

    def add_point(self, x: float, y: float, positive: bool) -> None:
        """Refine the active object with a foreground (or background) click at pixel (x, y) of the shown view; on a
        self-prompted mask the click corrects that foreground. In 3D mode the click corrects the object in 3D."""
        click = SliceClick(self.active + 1, self.index, float(x), float(y), bool(positive))

        def correct(volume3d: CorrectionSession, stages: dict[str, float]) -> None:
            with timed(stages, "correct 3D"):
                volume3d.add_click(click)

        if self._in_3d("click 3D", correct):
            return
        previous = self.current
        points = (*(previous.points if previous else ()), (float(x), float(y), 1 if positive else 0))
        box = previous.box if previous else None
        auto = previous is not None and previous.auto
        self._change("click", lambda stages: self._predict(points, box, previous, stages, auto))

    def set_box(self, box: Box | None) -> None:
        """Give the active object a box on the shown view (None removes it; the points stay)."""
        previous = self.current
        points = previous.points if previous else ()
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        if box is not None and self._follow_3d("box 3D", lambda stages: self._predict((), box, None, stages, False)):
            return
        if box is None and not points:
            self._change("box", lambda stages: None)
            return
        self._change("box", lambda stages: self._predict(points, box, None, stages, False))

    def auto(self) -> None:
        """Give the active object the self-prompted mask on the shown view (its prompts there are dropped); in 3D
        mode followed through the volume."""
        if self._follow_3d("auto 3D", lambda stages: self._predict((), None, None, stages, True)):
            return
        self._change("auto", lambda stages: self._predict((), None, None, stages, True))

    def clear_object(self) -> None:
        """Remove the active object's annotation on the shown view (in 3D mode: from the whole volume)."""
        if self._in_3d("clear 3D", self._clear_3d):
            return
        self._change("clear", lambda stages: None)

    def new_object(self, name: str | None = None) -> None:
        """Add an object (named "object N" unless given) and make it the active one; it has no mask yet."""
        obj = DemoObject(_clean_name(name or f"object {len(self.objects) + 1}"))
        self._remember()
        self.objects.append(obj)
        self.active = len(self.objects) - 1
        self.last_step = Step("new object", {})

    def select(self, index: int) -> None:
        """Make object ``index`` (0-based) the active one."""
        if not 0 <= int(index) < len(self.objects):
            raise InputError(f"there is no object {int(index) + 1}", fix=f"choose 1 to {len(self.objects)}")
        self.active = int(index)

    def rename(self, name: str) -> None:
        """Rename the active object."""
        renamed = replace(self.objects[self.active], name=_clean_name(name))
        self._remember()
        self.objects[self.active] = renamed

    def undo(self) -> bool:
        """Go back one change of prompts or objects; False when there is nothing to undo."""
        if not self._history:
            return False
        objects, active, volume3d = self._history.pop()
        self.objects, self.active = objects, active
        if volume3d is not None:
            volume3d.undo()
        self.last_step = Step("undo", {})
        return True

    def reset(self) -> None:
        """Back to the upload: one object with the self-prompted mask on the shown view (undoable in 2D; 3D mode is
        left)."""
        self._remember()
        self.volume3d = None
        self.objects, self.active = [DemoObject("object 1")], 0
        self._run("reset", self._auto_current)

    # --- results ----------------------------------------------------------------------------------------------
    def labels(self) -> np.ndarray:
        """(H, W) uint16 label map of the shown view: object i is label i + 1, later objects over earlier ones."""
        if self.volume3d is not None:
            return slice_volume(Volume(self.volume3d.labels, self.volume3d.segmenter.volume.affine), self.plane,
                                self.index).pixels
        height, width = self.stack.slice_image(self.index).shape
        plane = np.zeros((height, width), np.uint16)
        for label, obj in enumerate(self.objects, start=1):
            annotation = obj.annotations.get(self.view)
            if annotation is not None:
                plane[annotation.mask] = label
        return plane

    def label_volume(self, propagate: bool = False, stages: dict[str, float] | None = None) -> np.ndarray:
        """The volume's label map: every object's masks on the slices it was prompted on, or with ``propagate``
        followed from there through the volume (slice by slice until a slice comes back empty). The time it
        took is added to ``stages``."""
        volume = self.document.volume
        if volume is None:
            raise InputError("a 2D picture has no label volume", fix="download it as PNG")
        if self.volume3d is not None:
            return self.volume3d.labels.copy()
        labels = Volume(np.zeros(volume.shape, np.uint16), volume.affine)
        with timed(stages if stages is not None else {}, "propagate" if propagate else "labels"):
            for label, obj in enumerate(self.objects, start=1):
                for (plane, index), annotation in obj.annotations.items():
                    slices = {index: annotation.mask}
                    if propagate and annotation.mask.any():
                        stack = self._stack_of(plane)
                        assert isinstance(stack, VolumeSegmenter)
                        first = SliceMask(annotation.mask, annotation.score, annotation.logits)
                        found = stack.propagate(index, first, 0, stack.count - 1)
                        slices.update({i: later.mask for i, later in found.items()})
                    for i, mask in slices.items():
                        shown = slice_volume(labels, plane, i).pixels
                        shown[mask] = label
                        insert_slice(labels.voxels, shown, volume, plane, i)
        return labels.voxels

    def shown_3d(self) -> list[tuple[np.ndarray, tuple[Point, ...]]] | None:
        """In 3D mode, per object: its mask on the shown view and its clicks there; None outside 3D mode."""
        if self.volume3d is None:
            return None
        plane = self.labels()
        shown = []
        for label in range(1, len(self.objects) + 1):
            tracked = self.volume3d.objects.get(label)
            clicks = [] if tracked is None or self.plane != self.planes[0] else tracked.clicks
            shown.append((plane == label, tuple((c.x, c.y, int(c.positive)) for c in clicks if c.index == self.index)))
        return shown

    def object_names(self) -> dict[int, str]:
        """Label value → object name."""
        return {label: obj.name for label, obj in enumerate(self.objects, start=1)}

    # --- internals --------------------------------------------------------------------------------------------
    def _stack_of(self, plane: str) -> Stack:
        """The stack of views along ``plane``, opened on first use (a volume's modality is decided then)."""
        if plane not in self._stacks:
            self._stacks[plane] = open_stack(self.engine.predictor, self.document, plane, self.modality, self.window,
                                             self.cache_size)
        return self._stacks[plane]

    def _remember(self) -> None:
        self._history.append((list(self.objects), self.active, None))
        del self._history[:-MAX_HISTORY]

    def _run(self, action: str, work: Callable[[dict[str, float]], object]) -> None:
        stages: dict[str, float] = {}
        started = time.perf_counter()
        work(stages)
        stages["total"] = (time.perf_counter() - started) * 1e3
        self.last_step = Step(action, stages)

    def _change(self, action: str, predict: Callable[[dict[str, float]], Annotation | None]) -> None:
        """Replace the active object's annotation on the shown view with what ``predict(stages)`` returns."""
        key = self.view
        self._remember()

        def work(stages: dict[str, float]) -> None:
            annotation = predict(stages)
            self.objects[self.active] = self.objects[self.active].with_annotation(key, annotation)

        try:
            self._run(action, work)
        except Exception:
            self._history.pop()  # nothing changed, so nothing to undo
            raise

    def _encode(self, stages: dict[str, float]) -> EncodedImage:
        misses = self.stack.cache.misses
        encoded = self.encoded()
        if self.stack.cache.misses > misses:  # encoded in this step: its stages belong to this step's latency
            for stage in ENCODE_STAGES:
                if stage in encoded.latency_ms:
                    stages[stage] = stages.get(stage, 0.0) + encoded.latency_ms[stage]
        return encoded

    def _predict(self, points: tuple[Point, ...], box: Box | None, previous: Annotation | None,
                 stages: dict[str, float], auto: bool) -> Annotation:
        encoded = self._encode(stages)
        predictor = self.engine.predictor
        predictor.set_encoded(encoded)
        coords = np.array([p[:2] for p in points], np.float32) if points else None
        point_labels = np.array([p[2] for p in points], np.float32) if points else None
        mask = previous.logits if previous is not None else None
        result = predictor.predict(points=coords, labels=point_labels, boxes=None if box is None else [box], mask=mask,
                                   auto=auto or None)
        for stage in ("decoder", "postprocess"):
            stages[stage] = stages.get(stage, 0.0) + result.latency_ms.get(stage, 0.0)
        return Annotation(points, box, result.masks[0], result.low_res_logits[0], float(result.scores[0]), auto)

    def _predict_all(self, stages: dict[str, float]) -> None:
        """Predict every annotation again from its prompts (after the model's input changed)."""
        shown = self.view
        for i, obj in enumerate(self.objects):
            for key, annotation in obj.annotations.items():
                self.plane, self.index = key
                self.objects[i] = self.objects[i].with_annotation(
                    key, self._predict(annotation.points, annotation.box, None, stages, annotation.auto))
        self.plane, self.index = shown
        self._encode(stages)

    def _auto_current(self, stages: dict[str, float]) -> None:
        self.objects[self.active] = self.objects[self.active].with_annotation(
            self.view, self._predict((), None, None, stages, True))
