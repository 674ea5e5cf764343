"""The Gradio page: upload, see the self-prompted mask at once, refine with clicks and a box, download.

Every handler runs the session's work under the engine's lock and answers with the components it changed.
Besides the page's own events, ``/load``, ``/click``, ``/box``, ``/view``, ``/three_d``, ``/intensity``, ``/undo``,
``/reset``, ``/new_object``, ``/download`` and the others are callable with gradio_client (state stays per
client session), which is how the tests drive the app without a browser.
"""

from __future__ import annotations

import functools
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import processing_utils
from gradio_image_annotation import image_annotator

from edge_medsam.apps.demo.document import load_document
from edge_medsam.apps.demo.engine import DemoEngine
from edge_medsam.apps.demo.export import export_mask
from edge_medsam.apps.demo.overlay import Layer, colour, legend, magnify, render, zoom_for
from edge_medsam.apps.demo.session import Box, DemoSession
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.io import ReadLimits

CUSTOM = "custom"
FOREGROUND, BACKGROUND = "foreground (+)", "background (−)"
SOURCES = {"model": "recognised by the model", "file": "declared by the file", "given": "chosen by you"}
BOX_LABEL = "box"
UPLOAD_TYPES = "PNG / JPEG / TIFF / BMP, DICOM (a file, the files of a series, or a .zip), NIfTI, MedSAM .npz"


@dataclass(frozen=True)
class DemoConfig:
    """Limits and settings of one demo server."""

    max_upload_mb: float = 512.0
    limits: ReadLimits = field(default_factory=lambda: ReadLimits(max_side=4096, max_pixels=4096 * 4096,
                                                                  max_voxels=ReadLimits.from_env().max_voxels))
    cache_size: int = 16
    session_ttl_s: int = 2 * 3600
    max_queue: int = 64
    examples: Sequence[Path] = ()


@dataclass
class Visitor:
    """What one browser session keeps: its private scratch folder (downloads) and its segmentation session."""

    folder: Path
    session: DemoSession | None = None


def _remove_folder(visitor: Visitor | None) -> None:
    if visitor is not None:
        shutil.rmtree(visitor.folder, ignore_errors=True)


def _user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show the package's one-line errors (file, problem, fix) in the page instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EdgeMedSAMError as err:
            raise gr.Error(str(err), print_exception=False) from err

    return wrapper


def _need(visitor: Visitor | None) -> DemoSession:
    if visitor is None or visitor.session is None:
        raise EdgeMedSAMError("nothing is uploaded yet", fix=f"upload an image first ({UPLOAD_TYPES})")
    return visitor.session


def _format_ms(stages: dict[str, float]) -> str:
    return " · ".join(f"{stage} {ms:.1f} ms" for stage, ms in stages.items())


def _zoom(session: DemoSession) -> tuple[int, int]:
    """The magnification (rows, columns) of the shown view on the page: page pixels per image pixel."""
    view = session.stack.slice_image(session.index)
    return zoom_for(view.shape, view.spacing)


def _box_dict(box: Box | None, index: int, zoom: tuple[int, int]) -> list[dict[str, Any]]:
    if box is None:
        return []
    down, across = zoom
    x0, y0, x1, y1 = round(box[0] * across), round(box[1] * down), round(box[2] * across), round(box[3] * down)
    return [{"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1, "label": BOX_LABEL, "color": colour(index)}]


class DemoPage:
    """The components of the page and the handlers that keep them in step with the session."""

    def __init__(self, engine: DemoEngine, config: DemoConfig, workdir: Path):
        self.engine = engine
        self.config = config
        self.workdir = workdir  # one private sub-folder per browser session (its downloads)
        self.presets = engine.windows()
        preset, (centre, width) = engine.default_window()
        self.default_preset = preset or CUSTOM
        self.default_window = (centre, width)

    # --- rendering ------------------------------------------------------------------------------------------
    def window_from(self, preset: str, level: float, width: float) -> str | tuple[float, float]:
        """The CT window the controls describe: a preset name, or (centre, width)."""
        return preset if preset in self.presets else (float(level), float(width))

    def refresh(self, visitor: Visitor, opacity: float, contours: bool, *, annotator: bool = False,
                controls: bool = False) -> dict[Any, Any]:
        """Component updates for the session's current state (call with the engine's lock held)."""
        session = visitor.session
        assert session is not None
        started = time.perf_counter()
        picture = session.display()
        zoom = _zoom(session)
        layers = []
        shown_3d = session.shown_3d()
        for i, obj in enumerate(session.objects):
            annotation = obj.annotations.get(session.view)
            if shown_3d is not None:
                layers.append(Layer(shown_3d[i][0], colour(i), shown_3d[i][1], None, i == session.active))
            elif annotation is not None:
                layers.append(Layer(annotation.mask, colour(i), annotation.points, annotation.box, i == session.active))
        shown = render(picture, layers, opacity, contours, zoom)
        latency = {**session.last_step.latency_ms, "overlay": (time.perf_counter() - started) * 1e3}
        encoded = session.encoded()
        modality = encoded.modality or f"index {encoded.modality_index}"
        source = SOURCES.get(encoded.modality_source, encoded.modality_source)
        confidence = f", confidence {encoded.modality_confidence:.0%}" if encoded.modality_source == "model" else ""
        model = self.engine.describe()
        where = (f" · {session.plane} slice {session.index} (0–{session.stack.count - 1})"
                 if session.document.is_volume else "")
        status = (f"**Modality: {modality}** ({source}{confidence}) · {session.document.description}{where}  \n"
                  f"Last step ({session.last_step.action}): {_format_ms(latency)}  \n"
                  f"Model {model['bundle']} · {model['precision']} · {model['backend']}")
        views = [obj.annotations.get(session.view) for obj in session.objects]
        pixels = ([int(mask.sum()) for mask, _ in shown_3d] if shown_3d is not None
                  else [int(a.mask.sum()) if a else 0 for a in views])
        details = {
            "input": session.document.description,
            "view": {"plane": session.plane, "slice": session.index, "slices": session.stack.count},
            "mode": "3D" if shown_3d is not None else "2D",
            "modality": {"name": encoded.modality, "source": encoded.modality_source,
                         "confidence": round(encoded.modality_confidence, 4)},
            "self_prompt_confidence": round(encoded.self_prompt_confidence, 4),
            "active": session.active + 1,
            "objects": [{"label": i + 1, "name": obj.name, "pixels": pixels[i],
                         "score": round(a.score, 4) if a else None, "points": [list(p) for p in a.points] if a else [],
                         "box": list(a.box) if a and a.box else None, "views": len(obj.annotations)}
                        for i, (obj, a) in enumerate(zip(session.objects, views, strict=True))],
            "step": {"action": session.last_step.action, "latency_ms": {k: round(v, 2) for k, v in latency.items()}},
            "model": model,
        }
        updates: dict[Any, Any] = {
            self.state: visitor,
            self.result: shown,
            self.status: status,
            self.details: details,
            self.legend: legend([o.name for o in session.objects], [d["pixels"] for d in details["objects"]],
                                [d["score"] for d in details["objects"]], session.active),
            self.objects: gr.update(choices=[(f"{i + 1}: {o.name}", i) for i, o in enumerate(session.objects)],
                                    value=session.active),
            self.name: session.objects[session.active].name,
        }
        if annotator:
            current = session.current
            # Saved as PNG here: the annotator would store a numpy image as lossy WebP.
            image = processing_utils.save_img_array_to_cache(magnify(picture, zoom), self.box_input.GRADIO_CACHE,
                                                             format="png")
            updates[self.box_input] = {"image": image,
                                       "boxes": _box_dict(current.box if current else None, session.active, zoom)}
        if controls:
            document = session.document
            several_views = document.is_volume and (session.stack.count > 1 or len(session.planes) > 1)
            formats = document.formats()
            updates.update({
                self.ct_group: gr.update(visible=session.uses_window),
                self.volume_group: gr.update(visible=several_views),
                self.plane: gr.update(choices=session.planes, value=session.plane),
                self.slice: gr.update(maximum=max(session.stack.count - 1, 1), value=session.index,
                                      interactive=session.stack.count > 1),
                self.format: gr.update(choices=formats, value=formats[-1]),
                self.propagate: gr.update(visible=document.is_volume and shown_3d is None),
                self.three_d: gr.update(value=shown_3d is not None),
            })
        return updates

    # --- handlers -------------------------------------------------------------------------------------------
    def on_load(self, visitor: Visitor | None, files: Sequence[str] | str | None, modality: str, preset: str,
                level: float, width: float, opacity: float, contours: bool) -> dict[Any, Any]:
        """A new upload: read it, self-prompt the middle view, show everything."""
        if not files:
            return {self.state: visitor}
        paths = [files] if isinstance(files, str) else list(files)
        document = load_document(paths, [Path(p).name for p in paths], self.config.limits,
                                 int(self.config.max_upload_mb * 2**20))
        if visitor is None:
            visitor = Visitor(self.workdir / secrets.token_hex(8))
        with self.engine.lock:
            visitor.session = DemoSession(self.engine, document, modality, self.window_from(preset, level, width),
                                          self.config.cache_size)
            return self.refresh(visitor, opacity, contours, annotator=True, controls=True)

    def on_click(self, visitor: Visitor | None, x: float, y: float, label: str, opacity: float,
                 contours: bool) -> dict[Any, Any]:
        """A click at pixel (x, y): a foreground or background point for the active object."""
        session = _need(visitor)
        with self.engine.lock:
            session.add_point(x, y, label != BACKGROUND)
            return self.refresh(visitor, opacity, contours)

    def on_select(self, visitor: Visitor | None, label: str, opacity: float, contours: bool,
                  evt: gr.SelectData) -> dict[Any, Any]:
        """A click on the result image (its index is the pixel (x, y) of the magnified view)."""
        down, across = _zoom(_need(visitor))
        x, y = evt.index
        return self.on_click(visitor, float(x // across), float(y // down), label, opacity, contours)

    def on_box(self, visitor: Visitor | None, x0: float, y0: float, x1: float, y1: float, opacity: float,
               contours: bool) -> dict[Any, Any]:
        """A box [x0, y0, x1, y1] in pixels for the active object."""
        session = _need(visitor)
        with self.engine.lock:
            session.set_box((x0, y0, x1, y1))
            return self.refresh(visitor, opacity, contours)

    def on_annotator(self, visitor: Visitor | None, value: dict | None, opacity: float,
                     contours: bool) -> dict[Any, Any]:
        """The box drawn (or removed) in the annotator; echoes of the page's own updates are ignored."""
        if visitor is None or visitor.session is None or value is None:
            return {self.state: visitor}
        session = visitor.session
        boxes = value.get("boxes") or []
        down, across = _zoom(session)
        drawn = (tuple(float(boxes[-1][k]) / scale for k, scale in
                       (("xmin", across), ("ymin", down), ("xmax", across), ("ymax", down))) if boxes else None)
        if drawn is not None and (drawn[2] - drawn[0] < 1 or drawn[3] - drawn[1] < 1):
            return {self.state: visitor}  # a drag that has only just begun
        current = session.current.box if session.current else None
        if drawn == current or (drawn and current and max(abs(a - b) for a, b in zip(drawn, current, strict=True)) < 1):
            return {self.state: visitor}  # the page's own update of the annotator coming back
        with self.engine.lock:
            session.set_box(drawn)  # type: ignore[arg-type]
            return self.refresh(visitor, opacity, contours)

    def on_view(self, visitor: Visitor | None, plane: str, index: float, opacity: float,
                contours: bool) -> dict[Any, Any]:
        """Show another slice or plane of a volume."""
        session = _need(visitor)
        with self.engine.lock:
            changed = plane != session.plane
            session.set_view(plane, int(index))
            return self.refresh(visitor, opacity, contours, annotator=True, controls=changed)

    def on_3d(self, visitor: Visitor | None, on: bool, opacity: float, contours: bool) -> dict[Any, Any]:
        """Enter or leave 3D mode: clicks and boxes then update the whole volume."""
        session = _need(visitor)
        with self.engine.lock:
            session.set_3d(bool(on))
            return self.refresh(visitor, opacity, contours, annotator=True, controls=True)

    def on_intensity(self, visitor: Visitor | None, modality: str, preset: str, level: float, width: float,
                     opacity: float, contours: bool) -> dict[Any, Any]:
        """Another modality choice or CT window: encode again and re-predict every object (before an upload the
        choice is only kept: the upload reads it)."""
        if visitor is None or visitor.session is None:
            return {self.state: visitor}
        session = visitor.session
        with self.engine.lock:
            session.set_intensity(modality, self.window_from(preset, level, width))
            return self.refresh(visitor, opacity, contours, annotator=True, controls=True)

    def on_preset(self, visitor: Visitor | None, modality: str, preset: str, level: float, width: float,
                  opacity: float, contours: bool) -> dict[Any, Any]:
        """A CT window preset: move the level/width sliders to it, then apply it."""
        level, width = self.presets.get(preset, (level, width))
        updates = {self.level: level, self.width: width}
        if visitor is None or visitor.session is None:
            return updates
        return {**updates, **self.on_intensity(visitor, modality, preset, level, width, opacity, contours)}

    def on_level_width(self, visitor: Visitor | None, modality: str, level: float, width: float, opacity: float,
                       contours: bool) -> dict[Any, Any]:
        """Level or width moved by hand: a custom window."""
        updates: dict[Any, Any] = {self.window_preset: CUSTOM}
        if visitor is None or visitor.session is None:
            return updates
        return {**updates, **self.on_intensity(visitor, modality, CUSTOM, level, width, opacity, contours)}

    def action(self, name: str) -> Callable[..., dict[Any, Any]]:
        """A handler for a session method without arguments (undo, reset, auto, clear_object, new_object)."""

        def handler(visitor: Visitor | None, opacity: float, contours: bool) -> dict[Any, Any]:
            session = _need(visitor)
            with self.engine.lock:
                done = getattr(session, name)()
                if done is False:
                    gr.Info("Nothing to undo.")
                return self.refresh(visitor, opacity, contours, annotator=True)

        handler.__name__ = name
        return _user_errors(handler)

    def on_object(self, visitor: Visitor | None, index: int, opacity: float, contours: bool) -> dict[Any, Any]:
        """Make another object the active one."""
        session = _need(visitor)
        with self.engine.lock:
            session.select(int(index))
            return self.refresh(visitor, opacity, contours, annotator=True)

    def on_rename(self, visitor: Visitor | None, name: str, opacity: float, contours: bool) -> dict[Any, Any]:
        """Rename the active object (its label in the legend and in a DICOM-SEG)."""
        session = _need(visitor)
        if name.strip() == session.objects[session.active].name:
            return {self.state: visitor}
        with self.engine.lock:
            session.rename(name)
            return self.refresh(visitor, opacity, contours)

    def on_display(self, visitor: Visitor | None, opacity: float, contours: bool) -> dict[Any, Any]:
        """Opacity or contour mode changed: draw again, without the model."""
        if visitor is None or visitor.session is None:
            return {self.state: visitor}
        with self.engine.lock:
            return self.refresh(visitor, opacity, contours)

    def on_download(self, visitor: Visitor | None, fmt: str, propagate: bool, opacity: float,
                    contours: bool) -> dict[Any, Any]:
        """Write the masks in the chosen format into the session's folder; the page offers the file."""
        session = _need(visitor)
        assert visitor is not None
        with self.engine.lock:
            written = export_mask(session, fmt, visitor.folder, propagate)
            return {self.file: str(written), **self.refresh(visitor, opacity, contours)}

    # --- layout ---------------------------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        """The page with its events wired."""
        model = self.engine.describe()
        with gr.Blocks(title="edge-medsam demo", delete_cache=(3600, self.config.session_ttl_s)) as demo:
            self.state = gr.State(None, time_to_live=self.config.session_ttl_s, delete_callback=_remove_folder)
            gr.Markdown(f"## edge-medsam: segment anything in medical images\n"
                        f"Model **{model['bundle']}** · {model['precision']} · {model['backend']}. "
                        "Upload an image: the model's own (self-prompted) mask appears at once. Click on the left "
                        "image to add foreground/background points, drag a box on the right one. "
                        "**Research demo, not for clinical use.**")
            with gr.Row():
                with gr.Column(scale=1, min_width=300):
                    self.files = gr.File(label="Upload an image or a volume", file_count="multiple", type="filepath",
                                         height=140, elem_id="edge-medsam-upload")
                    gr.Markdown(f"<small>{UPLOAD_TYPES}</small>")
                    if self.config.examples:
                        gr.Examples([[[str(p)]] for p in self.config.examples], inputs=[self.files],
                                    label="Synthetic examples")
                    self.modality = gr.Dropdown(["auto", *self.engine.modalities()], value="auto", label="Modality",
                                                info="auto: what the file declares, else what the model recognises")
                    with gr.Group(visible=False) as self.ct_group:
                        self.window_preset = gr.Dropdown([*self.presets, CUSTOM], value=self.default_preset,
                                                         label="CT window", elem_id="edge-medsam-window")
                        self.level = gr.Slider(-1100, 3100, value=self.default_window[0], step=1, label="Level (HU)")
                        self.width = gr.Slider(1, 4000, value=self.default_window[1], step=1, label="Width (HU)")
                    with gr.Group(visible=False) as self.volume_group:
                        self.plane = gr.Radio([], label="Plane")
                        self.slice = gr.Slider(0, 1, value=0, step=1, label="Slice", elem_id="edge-medsam-slice")
                        self.three_d = gr.Checkbox(False, label="Correct in 3D: a click or box on any slice "
                                                   "updates the whole volume", elem_id="edge-medsam-3d")
                    self.opacity = gr.Slider(0, 1, value=0.45, step=0.05, label="Mask opacity")
                    self.contours = gr.Checkbox(False, label="Contours only")
                with gr.Column(scale=3):
                    self.status = gr.Markdown("Upload an image to start.")
                    with gr.Row(equal_height=True):
                        with gr.Column(scale=1, min_width=240):
                            self.result = gr.Image(label="Click: add a point to the active object", type="numpy",
                                                   format="png", interactive=False, buttons=["download", "fullscreen"],
                                                   elem_id="edge-medsam-result")
                        with gr.Column(scale=1, min_width=240):
                            self.box_input = image_annotator(
                                label="Drag: a box for the active object", image_type="numpy", single_box=True,
                                label_list=[BOX_LABEL], use_default_label=True, disable_edit_boxes=True, sources=[],
                                show_clear_button=False, show_download_button=False, show_remove_button=True,
                                boxes_alpha=0.1, interactive=True, elem_id="edge-medsam-box")
                    with gr.Row():
                        self.point_label = gr.Radio([FOREGROUND, BACKGROUND], value=FOREGROUND, label="A click adds")
                        undo = gr.Button("Undo")
                        clear = gr.Button("Clear object")
                        auto = gr.Button("Self-prompt")
                        reset = gr.Button("Reset", variant="stop")
                    with gr.Row():
                        self.objects = gr.Dropdown([], label="Active object", type="value")
                        self.name = gr.Textbox(label="Name of the active object", max_length=64)
                        new = gr.Button("New object")
                    self.legend = gr.HTML()
                    with gr.Row():
                        self.format = gr.Radio(["PNG"], value="PNG", label="Download the mask as")
                        self.propagate = gr.Checkbox(False, visible=False, label="Follow each object through the volume")
                        download = gr.Button("Download", variant="primary")
                        self.file = gr.File(label="Mask file", interactive=False, height=90)
                    with gr.Accordion("Details", open=False):
                        self.details = gr.JSON(open=True, elem_id="edge-medsam-details")
                    with gr.Row(visible=False):  # typed inputs of the /click and /box endpoints (gradio_client)
                        x0, y0, x1, y1 = (gr.Number(label=n) for n in ("x0", "y0", "x1", "y1"))
                        click_api, box_api = gr.Button("click"), gr.Button("box")
            self._wire(undo, clear, auto, reset, new, download, (x0, y0, x1, y1), click_api, box_api)
        demo.queue(max_size=self.config.max_queue)
        return demo

    def _wire(self, undo: gr.Button, clear: gr.Button, auto: gr.Button, reset: gr.Button, new: gr.Button,
              download: gr.Button, corners: tuple[gr.Number, ...], click_api: gr.Button, box_api: gr.Button) -> None:
        outputs = [self.state, self.result, self.status, self.details, self.legend, self.objects, self.name,
                   self.box_input, self.ct_group, self.volume_group, self.plane, self.slice, self.format,
                   self.propagate, self.level, self.width, self.window_preset, self.three_d]
        look = [self.opacity, self.contours]
        intensity = [self.state, self.modality, self.window_preset, self.level, self.width, *look]
        self.files.change(_user_errors(self.on_load), [self.state, self.files, *intensity[1:]], outputs,
                          api_name="load")
        self.result.select(_user_errors(self.on_select), [self.state, self.point_label, *look], outputs,
                           trigger_mode="multiple", api_visibility="private")
        click_api.click(_user_errors(self.on_click), [self.state, *corners[:2], self.point_label, *look], outputs,
                        api_name="click")
        box_api.click(_user_errors(self.on_box), [self.state, *corners, *look], outputs, api_name="box")
        self.box_input.change(_user_errors(self.on_annotator), [self.state, self.box_input, *look], outputs,
                              api_visibility="private")
        view = [self.state, self.plane, self.slice, *look]
        self.plane.input(_user_errors(self.on_view), view, outputs, api_name="view")
        self.three_d.input(_user_errors(self.on_3d), [self.state, self.three_d, *look], outputs, api_name="three_d")
        self.slice.release(_user_errors(self.on_view), view, outputs, api_visibility="private")
        self.modality.input(_user_errors(self.on_intensity), intensity, outputs, api_name="intensity")
        self.window_preset.input(_user_errors(self.on_preset), intensity, outputs, api_visibility="private")
        level_width = [self.state, self.modality, self.level, self.width, *look]
        for slider in (self.level, self.width):
            slider.release(_user_errors(self.on_level_width), level_width, outputs, api_visibility="private")
        for button, name in ((undo, "undo"), (clear, "clear_object"), (auto, "auto"), (reset, "reset"),
                             (new, "new_object")):
            button.click(self.action(name), [self.state, *look], outputs, api_name=name)
        self.objects.input(_user_errors(self.on_object), [self.state, self.objects, *look], outputs,
                           api_name="select_object")
        self.name.submit(_user_errors(self.on_rename), [self.state, self.name, *look], outputs, api_name="rename")
        self.name.blur(_user_errors(self.on_rename), [self.state, self.name, *look], outputs, api_visibility="private")
        self.opacity.release(_user_errors(self.on_display), [self.state, *look], outputs, api_visibility="private")
        self.contours.input(_user_errors(self.on_display), [self.state, *look], outputs, api_name="display")
        download.click(_user_errors(self.on_download), [self.state, self.format, self.propagate, *look],
                       [self.file, *outputs], api_name="download")


def build_demo(engine: DemoEngine, config: DemoConfig, workdir: Path) -> gr.Blocks:
    """The demo's gr.Blocks for an opened engine; sessions keep their downloads under ``workdir``."""
    return DemoPage(engine, config, workdir).build()
