"""The torch-free predictor: encode an image once, then answer any number of prompts (SAM's verbs).

    predictor = Predictor.from_bundle("bundle/", backend="auto")
    predictor.set_image("scan.png", modality="auto")          # the encoder runs once
    result = predictor.predict(boxes=[[10, 20, 80, 90]])       # boxes / points in original pixels
    result = predictor.predict(points=[[40, 50]], labels=[1], mask=result.low_res_logits)  # refine
    result = predictor.predict()                               # self-prompted (no manual prompt)

Masks come back in the original image geometry (logits above the manifest's threshold, 0), with the predicted IoU,
low-res logits for refinement, the modality used (and how it was decided) and the latency of each stage.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_medsam.errors import EdgeMedSAMError, InputError
from edge_medsam.preprocess import Geometry, logits_to_original, to_model_input
from edge_medsam.runtime.backends import BackendOptions, GraphRunner, choose_backend
from edge_medsam.runtime.backends.base import Backend
from edge_medsam.runtime.bundle import Bundle, open_bundle
from edge_medsam.runtime.decoder_feed import best_of_k, decoder_feed, self_prompt_points
from edge_medsam.runtime.images import (
    ImageLike,
    ModalityLike,
    ModalityPlan,
    WindowLike,
    as_image,
    normalise_image,
    plan_modality,
)
from edge_medsam.runtime.manifest import AUTO_MODALITY
from edge_medsam.runtime.prompts import PackedPrompts, pack_user_prompts

PER_IMAGE_OUTPUTS = ("embedding", "skip8", "skip4", "dense_prompt", "modality_index")


@contextmanager
def timed(latency: dict[str, float], stage: str) -> Iterator[None]:
    """Add the block's wall time in milliseconds to ``latency[stage]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        latency[stage] = latency.get(stage, 0.0) + (time.perf_counter() - start) * 1e3


@dataclass
class EncodedImage:
    """One image after the encoder: its outputs, geometry and modality; reusable for any number of prompts."""

    features: dict[str, np.ndarray]
    geometry: Geometry
    modality: str | None
    modality_index: int
    modality_confidence: float
    modality_source: str
    self_prompt_confidence: float
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the original image."""
        return self.geometry.height, self.geometry.width


@dataclass
class SegmentationResult:
    """N objects' masks in the original geometry.

    ``masks`` bool [N, H, W] (best mask per object) or [N, K, H, W] with ``multimask`` (float32 logits with
    ``return_logits``); ``scores`` the predicted
    IoU, [N] or [N, K]; ``low_res_logits`` [N, 1, h, w] or [N, K, h, w] in the model frame (pass one mask per
    object back as ``mask=``). ``latency_ms``: the image's read/normalise/preprocess/encoder stages and this
    call's decoder/postprocess stages.
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray
    modality: str | None
    modality_index: int
    modality_confidence: float
    modality_source: str
    self_prompt_confidence: float
    latency_ms: dict[str, float]

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def label_map(self) -> np.ndarray:
        """[H, W] uint16 labels, object i = i + 1 (later objects over earlier ones where they overlap)."""
        masks = self.masks
        if masks.ndim == 4:
            masks, _ = best_of_k(masks, self.scores)
        labels = np.zeros(masks.shape[1:], np.uint16)
        for i, mask in enumerate(masks):
            labels[mask] = i + 1
        return labels


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


class Predictor:
    """Encoder and decoder of one bundle on one backend. ``encoder_runs`` / ``decoder_runs`` count graph calls."""

    def __init__(self, bundle: Bundle, backend: Backend, encoder: GraphRunner, decoder: GraphRunner, precision: str):
        self.bundle = bundle
        self.backend = backend
        self.precision = precision
        self.prompted_weight = bundle.manifest.prompted_self_prompt_weight
        self._encoder, self._decoder = encoder, decoder
        self._image: EncodedImage | None = None
        self.threshold = float(bundle.manifest.outputs.get("masks", {}).get("threshold", 0.0))
        self.encoder_runs = 0
        self.decoder_runs = 0

    @classmethod
    def from_bundle(cls, bundle: str | os.PathLike[str] | Bundle, backend: str = "auto", precision: str = "fp32", *,
                    device: str | None = None, threads: int | None = None, hint: str = "latency",
                    cache_dir: str | os.PathLike[str] | None = None,
                    engine_dir: str | os.PathLike[str] | None = None) -> Predictor:
        """Open a bundle (folder or .zip), pick the backend ("auto" = best available) and load both graphs.

        ``cache_dir`` holds unpacked zips and compiled-model caches; ``engine_dir`` overrides where TensorRT
        engines are looked for.
        """
        cache = Path(cache_dir) if cache_dir is not None else None
        opened = bundle if isinstance(bundle, Bundle) else open_bundle(bundle, cache, engine_dir)
        chosen = choose_backend(opened, backend, precision, device)
        options = BackendOptions(device=device, threads=threads, hint=hint, cache_dir=cache)
        encoder = chosen.load(opened, "encoder", precision, options)
        decoder = chosen.load(opened, "decoder", precision, options)
        return cls(opened, chosen, encoder, decoder, precision)

    @property
    def name(self) -> str:
        """Bundle, backend and precision, for reports."""
        return f"{self.bundle.manifest.name}:{self.backend.name}:{self.precision}"

    # --- encoding -------------------------------------------------------------------------------------------
    def encode_normalised(self, image01: np.ndarray, modality_index: int = AUTO_MODALITY, source: str = "model",
                          latency: dict[str, float] | None = None) -> EncodedImage:
        """Run the encoder on an (H, W, 3) [0, 1] image with a bundle modality index (-1 = recognise)."""
        latency = dict(latency or {})
        self._check_fits(*image01.shape[:2])
        with timed(latency, "preprocess"):
            model_input, geometry = to_model_input(image01, self.bundle.preprocess)
        with timed(latency, "encoder"):
            outputs = self._encoder({"image": model_input, "modality": np.array([modality_index], np.int64)})
        self.encoder_runs += 1
        used = int(outputs["modality_index"].reshape(-1)[0])
        probabilities = _softmax(outputs["modality_logits"].reshape(-1).astype(np.float64))
        confidence = float(probabilities[used]) if 0 <= used < len(probabilities) else 0.0
        features = {name: outputs[name] for name in PER_IMAGE_OUTPUTS}
        return EncodedImage(features, geometry, self.bundle.modality_name(used), used, confidence, source,
                            float(outputs["confidence"].reshape(-1)[0]), latency)

    def _check_fits(self, height: int, width: int) -> None:
        """Refuse a sliver whose short side would shrink to nothing in the model frame (no pixel left to encode)."""
        config = self.bundle.preprocess
        geometry = Geometry(height, width, config.size, config.resize == "longest_side")
        if geometry.keep_aspect and min(height, width) * geometry.scale < 0.5:  # `resized` clamps to 1 pixel
            raise InputError(f"image is {width}x{height} pixels: its short side would shrink below one pixel in the "
                             f"model's {config.size}x{config.size} input",
                             fix=f"crop it so that the long side is at most {2 * config.size} times the short side")

    def encode(self, image: ImageLike, modality: ModalityLike = "auto", window: WindowLike = None, *,
               plan: ModalityPlan | None = None) -> EncodedImage:
        """Read (if a path), normalise, preprocess and encode an image without making it the current one.

        ``plan`` fixes the intensity rule and modality index (a volume decides them once for all its slices).
        """
        latency: dict[str, float] = {}
        with timed(latency, "read"):
            img = as_image(image)
        with timed(latency, "normalise"):
            plan = plan or plan_modality(img, modality, self.bundle)
            image01 = normalise_image(img, plan, self.bundle, window)
        try:
            return self.encode_normalised(image01, plan.index, plan.source, latency)
        except InputError as err:
            if img.path is None or err.path is not None:
                raise
            raise err.with_path(img.path) from err

    def set_image(self, image: ImageLike, modality: ModalityLike = "auto", window: WindowLike = None) -> EncodedImage:
        """Encode an image (Image2D, (H, W) / (H, W, 3) array, or path) once; later predictions reuse it.

        ``modality``: "auto", a name/alias or an index; ``window``: a CT window preset name, "c,w" or a pair.
        """
        self._image = self.encode(image, modality, window)
        return self._image

    def set_encoded(self, encoded: EncodedImage) -> None:
        """Make an earlier encoding the current image (an embedding cache hands these out)."""
        self._image = encoded

    @property
    def image(self) -> EncodedImage:
        """The current encoded image."""
        if self._image is None:
            raise EdgeMedSAMError("no image is set", fix="call set_image(image) before predict")
        return self._image

    # --- decoding -------------------------------------------------------------------------------------------
    def decode(self, encoded: EncodedImage, prompts: PackedPrompts | None, latency: dict[str, float],
               auto: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Low-res mask logits [N, K, h, w] and IoU [N, K]; ``prompts`` None = the self-prompt alone (N = 1).

        ``auto``: the prompts correct the automatic foreground (self-prompt weight 1) instead of segmenting the
        object they point at (the bundle's prompted weight)."""
        if prompts is None:
            (coords, labels), mask = self_prompt_points(), None
        else:
            self._check_limits(prompts)
            coords, labels, mask = prompts.coords_in_model(encoded.geometry), prompts.labels, prompts.mask
        weight = 1.0 if auto or prompts is None else self.prompted_weight
        feeds = decoder_feed(encoded.features, coords, labels, weight, mask)
        with timed(latency, "decoder"):
            outputs = self._decoder(feeds)
        self.decoder_runs += 1
        return (outputs["masks"].astype(np.float32, copy=False),
                outputs["iou_predictions"].astype(np.float32, copy=False))

    def _check_limits(self, prompts: PackedPrompts) -> None:
        for dim, value in (("objects", prompts.count), ("points", prompts.labels.shape[1])):
            limit = self.bundle.dynamic_limit(dim)
            if limit is not None and value > limit:
                raise InputError(f"{value} {dim} in one call, the model takes at most {limit}",
                                 fix=f"split the prompts into calls of at most {limit} {dim}")

    def predict(self, points: np.ndarray | list | None = None, labels: np.ndarray | list | None = None,
                boxes: np.ndarray | list | None = None, mask: np.ndarray | None = None, auto: bool | None = None,
                multimask: bool = False, return_logits: bool = False) -> SegmentationResult:
        """Masks for the current image from points/labels, boxes and/or a previous mask, or self-prompted.

        Points (x, y) and boxes [x0, y0, x1, y1] are original-image pixels; several boxes are several objects
        decoded in one call. No prompt (or ``auto=True``) segments the self-prompted foreground; ``auto=True`` with
        clicks (and the previous result's ``low_res_logits`` as ``mask``) corrects that foreground instead of
        segmenting the clicked object. Prompts for zero objects (e.g. boxes of shape [0, 4]) give zero masks
        without a decoder run. ``return_logits`` (SAM's flag): masks as float32 logits in the original geometry
        instead of bool.
        """
        encoded = self.image
        latency = dict(encoded.latency_ms)
        height, width = encoded.shape
        prompts = pack_user_prompts(height, width, self.bundle.low_res_size, points=points, labels=labels,
                                    boxes=boxes, mask=mask)
        if auto and boxes is not None and len(np.asarray(boxes)):
            raise InputError("auto=True corrects the self-prompted foreground with clicks, but boxes were given",
                             fix="drop auto=True to segment the boxed objects, or give clicks only")
        if auto and prompts is not None and prompts.count > 1:
            raise InputError(f"auto=True corrects the one self-prompted foreground, but the prompts are for "
                             f"{prompts.count} objects", fix="give the clicks as one set of (x, y) points")
        if auto is False and prompts is None:
            raise InputError("no prompt given and auto=False", fix="give points, boxes or a mask, or use auto=True")
        if prompts is not None and prompts.count == 0:
            side = self.bundle.low_res_size
            low_res, iou = np.zeros((0, 1, side, side), np.float32), np.zeros((0, 1), np.float32)
        else:
            low_res, iou = self.decode(encoded, prompts, latency, auto=bool(auto))
        with timed(latency, "postprocess"):
            if not multimask:
                low_res, iou = best_of_k(low_res, iou)
                low_res = low_res[:, None]
            masks = logits_to_original(low_res, encoded.geometry)
            if not return_logits:
                masks = masks > self.threshold
            if not multimask:
                masks = masks[:, 0]
        return SegmentationResult(masks, iou, np.ascontiguousarray(low_res), encoded.modality, encoded.modality_index,
                                  encoded.modality_confidence, encoded.modality_source, encoded.self_prompt_confidence,
                                  latency)
