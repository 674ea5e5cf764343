"""What a user waits for, for one loaded variant: the 2D image case, a prompt on a cached embedding, and the 3D
CT case of the MedSAM-on-Laptop challenge, each timed stage by stage (preprocess, encoder, decoder,
postprocess) on synthetic CT with real prompts.

- 2D image: a 512 x 512 CT slice → masks at 512 x 512. Our students segment it self-prompted (no prompt); the
  anchors have no self-prompt and get one box (the challenge's 2D prompt).
- Prompt: the decoder plus the mask's upsampling to 512 x 512 for B boxes on an already encoded image (the
  interactive case: encode once, then K prompts).
- 3D CT (``run_ct_case``): the challenge baseline's protocol: per 3D box, the middle slice with the 2D box, then
  slice by slice up and down to z_min / z_max, each slice prompted with the previous mask's box grown by 3 px
  (the middle box where that mask is empty); every slice is encoded once (embedding cache), so the cost is
  encoder x unique slices + decoder x (slice, box) pairs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_medsam.benchmark.engines import Loaded
from edge_medsam.benchmark.subjects import OURS, Subject
from edge_medsam.data.prompts import box_from_mask
from edge_medsam.modalities import normalise_intensity
from edge_medsam.preprocess import Geometry, logits_to_original, to_model_input

MARGIN = 3  # pixels the baseline adds around the previous slice's mask box
StageCall = Callable[[], dict[str, float]]


@dataclass
class Variant:
    """A subject's graph pair loaded on one backend, precision and thread count."""

    subject: Subject
    backend: str
    precision: str
    threads: int
    encoder: Loaded
    decoder: Loaded

    @property
    def id(self) -> str:
        """Key of the variant in the results."""
        return f"{self.subject.name}|{self.backend}|{self.precision}|t{self.threads}"


@dataclass
class TestImage:
    """A raw CT slice (Hounsfield units) and boxes (original pixels) around its labelled objects."""

    pixels: np.ndarray
    boxes: np.ndarray  # [n, 4] x0, y0, x1, y1


def ct_test_image(size: int = 512, seed: int = 0) -> TestImage:
    """One synthetic abdominal CT slice with the boxes of its objects, largest first."""
    from edge_medsam.data.synth import generate_sample

    sample = generate_sample("ct", seed, size=size)
    objects = sorted(sample.objects, key=lambda o: -o.area)
    boxes = np.stack([box_from_mask(sample.labels == o.label) for o in objects]).astype(np.float32)
    return TestImage(sample.pixels, boxes)


class Pipeline:
    """Numpy pre/postprocessing around a variant's graphs, the same code for every subject."""

    def __init__(self, variant: Variant):
        self.variant = variant
        self.subject = variant.subject

    def preprocess(self, pixels: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """Window a CT slice and bring it into the model frame."""
        return to_model_input(normalise_intensity(pixels, "ct", hounsfield=True), self.subject.preprocess)

    def encode(self, model_input: np.ndarray) -> dict[str, np.ndarray]:
        """Encoder outputs of a [B, 3, S, S] model input."""
        return self.variant.encoder.run(self.subject.encoder_inputs(model_input))

    def decode(self, encoded: dict[str, np.ndarray], boxes: np.ndarray | None) -> np.ndarray:
        """[N, h, w] mask logits for model-frame boxes (None: self-prompt)."""
        outputs = self.variant.decoder.run(self.subject.prompter.feed(encoded, boxes))
        return self.subject.prompter.best_logits(outputs)

    @staticmethod
    def postprocess(logits: np.ndarray, geometry: Geometry) -> np.ndarray:
        """[N, H, W] bool masks in the original geometry."""
        return logits_to_original(logits, geometry) > 0.0


class _Clock:
    """Adds the milliseconds of consecutive stages into a dict."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self.last = time.perf_counter_ns()

    def lap(self, stage: str) -> None:
        now = time.perf_counter_ns()
        self.ms[stage] = self.ms.get(stage, 0.0) + (now - self.last) / 1e6
        self.last = now


def image_call(pipeline: Pipeline, image: TestImage) -> StageCall:
    """The 2D case: raw slice → masks; self-prompted for our students, one box for the anchors."""
    prompted = pipeline.subject.family != OURS

    def call() -> dict[str, float]:
        clock = _Clock()
        model_input, geometry = pipeline.preprocess(image.pixels)
        clock.lap("preprocess")
        encoded = pipeline.encode(model_input)
        clock.lap("encoder")
        logits = pipeline.decode(encoded, geometry.boxes_to_model(image.boxes[:1]) if prompted else None)
        clock.lap("decoder")
        pipeline.postprocess(logits, geometry)
        clock.lap("postprocess")
        return clock.ms

    return call


def prompt_call(pipeline: Pipeline, image: TestImage, boxes: int) -> StageCall:
    """``boxes`` box prompts on the already encoded slice: decoder + upsampling of the masks."""
    model_input, geometry = pipeline.preprocess(image.pixels)
    encoded = pipeline.encode(model_input)
    chosen = image.boxes[np.arange(boxes) % len(image.boxes)]
    model_boxes = geometry.boxes_to_model(chosen)

    def call() -> dict[str, float]:
        clock = _Clock()
        logits = pipeline.decode(encoded, model_boxes)
        clock.lap("decoder")
        pipeline.postprocess(logits, geometry)
        clock.lap("postprocess")
        return clock.ms

    return call


def encoder_batch_call(pipeline: Pipeline, image: TestImage, batch: int) -> StageCall:
    """The encoder alone on ``batch`` images per call (graphs exported with a dynamic batch only)."""
    model_input, _ = pipeline.preprocess(image.pixels)
    batched = np.ascontiguousarray(np.repeat(model_input, batch, axis=0))

    def call() -> dict[str, float]:
        clock = _Clock()
        pipeline.encode(batched)
        clock.lap("encoder")
        return clock.ms

    return call


# --- the 3D CT case ---------------------------------------------------------------------------------------------
@dataclass
class CTCase:
    """A CT volume as slices (Z, H, W) in HU and 3D boxes [x_min, y_min, z_min, x_max, y_max, z_max]."""

    slices: np.ndarray
    boxes: np.ndarray
    names: list[str]

    def counts(self) -> dict[str, int]:
        """Graph calls of the protocol: with the embedding cache, and the baseline's (one encoding per box and slice)."""
        covered = set()
        pairs = 0
        for _, _, z0, _, _, z1 in self.boxes.astype(int):
            covered.update(range(z0, z1 + 1))
            pairs += int(z1 - z0 + 1)
        return {"slices": int(self.slices.shape[0]), "boxes": len(self.boxes), "encoder_calls": len(covered),
                "decoder_calls": pairs, "baseline_encoder_calls": pairs}


def ct_case(slices: int, size: int, boxes: int, seed: int = 0) -> CTCase:
    """A synthetic abdominal CT with the 3D boxes of its ``boxes`` largest objects (organs, bone, vessels)."""
    from edge_medsam.data.synth import generate_volume

    volume = generate_volume(seed, size=size, slices=slices)
    stack = np.ascontiguousarray(np.moveaxis(volume.hounsfield, 2, 0))  # (k, i, j): one axial slice per k
    labels = np.moveaxis(volume.labels, 2, 0)
    found = []
    for obj in sorted(volume.objects, key=lambda o: -o.area)[:boxes]:
        z, y, x = np.nonzero(labels == obj.label)
        if z.size:
            found.append(([x.min(), y.min(), z.min(), x.max(), y.max(), z.max()], obj.name))
    return CTCase(stack, np.asarray([b for b, _ in found], np.float32), [n for _, n in found])


def _grown(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    box = box_from_mask(mask) + np.array([-MARGIN, -MARGIN, MARGIN, MARGIN], np.float32)
    return np.clip(box, 0, [width, height, width, height]).astype(np.float32)


def run_ct_case(pipeline: Pipeline, case: CTCase) -> dict[str, Any]:
    """Segment every 3D box of ``case`` with the baseline protocol; stage milliseconds and call counts."""
    clock = _Clock()
    cache: dict[int, tuple[dict[str, np.ndarray], Geometry]] = {}
    height, width = case.slices.shape[1:]
    decoder_calls = 0

    def segment(z: int, box: np.ndarray) -> np.ndarray:
        nonlocal decoder_calls
        if z not in cache:
            clock.lap("other")
            model_input, geometry = pipeline.preprocess(case.slices[z])
            clock.lap("preprocess")
            cache[z] = (pipeline.encode(model_input), geometry)
            clock.lap("encoder")
        encoded, geometry = cache[z]
        clock.lap("other")
        logits = pipeline.decode(encoded, geometry.boxes_to_model(box[None]))
        clock.lap("decoder")
        mask = pipeline.postprocess(logits, geometry)[0]
        clock.lap("postprocess")
        decoder_calls += 1
        return mask

    start = time.perf_counter_ns()
    for x0, y0, z0, x1, y1, z1 in case.boxes:
        lo, hi, middle_box = int(z0), int(z1), np.array([x0, y0, x1, y1], np.float32)
        middle = (lo + hi) // 2
        first = segment(middle, middle_box)
        for step, end in ((1, hi + 1), (-1, lo - 1)):
            previous = first
            for z in range(middle + step, end, step):
                previous = segment(z, _grown(previous, height, width) if previous.any() else middle_box)
    clock.lap("other")
    total = (time.perf_counter_ns() - start) / 1e6
    return {"total_ms": total, "stages_ms": clock.ms, "encoder_calls": len(cache), "decoder_calls": decoder_calls}


def project_ct_case(counts: dict[str, int], image_stages: dict[str, float], prompt_stages: dict[str, float]) -> float:
    """3D case milliseconds projected from per-call p50s: (preprocess + encoder) x slices + (decoder + upsampling) x
    (slice, box) pairs."""
    per_slice = image_stages["preprocess"] + image_stages["encoder"]
    per_prompt = prompt_stages["decoder"] + prompt_stages["postprocess"]
    return counts["encoder_calls"] * per_slice + counts["decoder_calls"] * per_prompt
