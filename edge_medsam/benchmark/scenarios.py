"""What a user waits for, for one loaded variant: the 2D image case, a prompt on a cached embedding, and the 3D
CT case of the MedSAM-on-Laptop challenge, each timed stage by stage (preprocess, encoder, decoder,
postprocess) on synthetic CT with real prompts.

- 2D image: a 512 x 512 CT slice → masks at 512 x 512. Our students segment it self-prompted (no prompt); the
  anchors have no self-prompt and get one box (the challenge's 2D prompt).
- Prompt: the decoder plus the mask's upsampling to 512 x 512 for B boxes on an already encoded image (the
  interactive case: encode once, then K prompts).
- 3D CT: the protocol of ``edge-medsam predict --box3d``: per 3D box, the middle slice with the 2D box, then
  slice by slice up and down within z_min..z_max, each slice prompted with the previous mask's box grown by 3 px,
  stopping at the first empty slice; every slice is encoded once (embedding cache). Ours run the shipped
  ``VolumeSegmenter`` itself (``run_volume_case``, on a Predictor of the variant's bundle); models without a bundle
  (the anchors) run ``run_ct_case``, the same rule over the benchmark's pipeline (a test holds the two to the same
  graph calls). The projection (``project_ct_case``) charges every slice of every z range: an upper bound.
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
from edge_medsam.io import Volume, slice_volume
from edge_medsam.modalities import normalise_intensity
from edge_medsam.preprocess import Geometry, logits_to_original, to_model_input
from edge_medsam.runtime.volume import DEFAULT_MARGIN as MARGIN

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
    """A CT volume as slices (Z, H, W) in HU with 3D boxes [x_min, y_min, z_min, x_max, y_max, z_max] on them, and
    the same volume as the runtime reads one with the boxes in its voxel indices (i0, j0, k0, i1, j1, k1)."""

    slices: np.ndarray
    boxes: np.ndarray
    names: list[str]
    volume: Volume
    voxel_boxes: np.ndarray

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
    from edge_medsam.runtime.interactor import SliceFrame

    generated = generate_volume(seed, size=size, slices=slices)
    volume = Volume(generated.hounsfield, generated.affine, modality="ct", hounsfield=True)
    found = []
    for obj in sorted(generated.objects, key=lambda o: -o.area)[:boxes]:
        i, j, k = np.nonzero(generated.labels == obj.label)
        if k.size:
            found.append(([i.min(), j.min(), k.min(), i.max(), j.max(), k.max()], obj.name))
    voxel = np.asarray([b for b, _ in found], np.int64).reshape(-1, 6)
    # The slices as the runtime displays them, and the boxes on them, so both 3D paths see the same pixels.
    stack = np.stack([slice_volume(volume, "axial", k).pixels for k in range(volume.shape[2])])
    frame = SliceFrame(volume)
    shown = np.asarray([frame.box3d(box) for box in voxel], np.float32).reshape(-1, 6)
    return CTCase(stack, shown, [n for _, n in found], volume, voxel)


def _grown(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    box = box_from_mask(mask) + np.array([-MARGIN, -MARGIN, MARGIN, MARGIN], np.float32)
    return np.clip(box, 0, [width, height, width, height]).astype(np.float32)


def run_ct_case(pipeline: Pipeline, case: CTCase) -> dict[str, Any]:
    """Segment every 3D box of ``case`` with ``predict --box3d``'s rule over the pipeline; stage ms and call counts."""
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
        lo, hi = int(z0), int(z1)
        middle = (lo + hi) // 2
        first = segment(middle, np.array([x0, y0, x1, y1], np.float32))
        if not first.any():
            continue
        for step in (1, -1):
            previous, z = first, middle + step
            while lo <= z <= hi:
                previous = segment(z, _grown(previous, height, width))
                if not previous.any():
                    break
                z += step
    clock.lap("other")
    total = (time.perf_counter_ns() - start) / 1e6
    return {"total_ms": total, "stages_ms": clock.ms, "encoder_calls": len(cache), "decoder_calls": decoder_calls}


def run_volume_case(variant: Variant, case: CTCase) -> dict[str, Any]:
    """The 3D case through the shipped ``VolumeSegmenter`` on a Predictor of the variant's bundle (graphs loaded
    before the clock starts); stage ms and graph calls."""
    from edge_medsam.runtime import Predictor
    from edge_medsam.runtime.volume import VolumeSegmenter

    if variant.subject.bundle is None:
        raise ValueError(f"{variant.subject.name} has no bundle for the runtime's VolumeSegmenter")
    predictor = Predictor.from_bundle(variant.subject.bundle, backend=variant.backend, precision=variant.precision,
                                      threads=variant.threads)
    start = time.perf_counter_ns()
    # Box propagation, the challenge baseline's protocol and all the anchors' loop can give (no mask prompt).
    segmenter = VolumeSegmenter(predictor, case.volume, modality="ct", propagation="box")
    result = segmenter.segment(boxes3d=case.boxes.tolist())
    total = (time.perf_counter_ns() - start) / 1e6
    stages = dict(result.latency_ms)
    stages["other"] = max(0.0, total - sum(stages.values()))
    return {"total_ms": total, "stages_ms": stages, "encoder_calls": result.encoder_runs,
            "decoder_calls": predictor.decoder_runs, "labels": result.labels}


def project_ct_case(counts: dict[str, int], image_stages: dict[str, float], prompt_stages: dict[str, float]) -> float:
    """3D case milliseconds projected from per-call p50s: (preprocess + encoder) x slices + (decoder + upsampling) x
    (slice, box) pairs."""
    per_slice = image_stages["preprocess"] + image_stages["encoder"]
    per_prompt = prompt_stages["decoder"] + prompt_stages["postprocess"]
    return counts["encoder_calls"] * per_slice + counts["decoder_calls"] * per_prompt
