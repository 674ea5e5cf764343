"""Evaluate a segmenter over dataset samples with the SAM-Med2D protocol: scores, recognition, latency."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from edge_medsam.data.layouts import Sample, load_sample
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.evaluation.protocol import (
    CLICK_MODES,
    IMAGE_MODES,
    PROMPT_MODES,
    check_modes,
    run_box,
    run_clicks,
    run_refine,
    score_auto,
    select_objects,
)
from edge_medsam.evaluation.report import AUTO_CLASS, EvalReport
from edge_medsam.io.types import ReadLimits
from edge_medsam.modalities import Modality, normalise_intensity
from edge_medsam.runtime.protocol import Prediction, Segmenter

DEFAULT_MAX_OBJECTS = 8


class TimedSegmenter:
    """Wraps a segmenter and records how long each encoding and each prompt call takes (milliseconds)."""

    def __init__(self, segmenter: Segmenter, report: EvalReport):
        self.segmenter = segmenter
        self.report = report

    @property
    def detected_modality(self) -> Modality | None:
        """The wrapped segmenter's recognised modality."""
        return self.segmenter.detected_modality

    def set_image(self, image01: np.ndarray, modality: Modality | None) -> None:
        """Encode, timed."""
        start = time.perf_counter()
        self.segmenter.set_image(image01, modality)
        self.report.encode_ms.append((time.perf_counter() - start) * 1e3)

    def predict(self, **prompts: Any) -> Prediction:
        """Answer prompts, timed."""
        start = time.perf_counter()
        prediction = self.segmenter.predict(**prompts)
        self.report.decode_ms.append((time.perf_counter() - start) * 1e3)
        return prediction

    def predict_auto(self, **prompts: Any) -> Prediction:
        """Self-prompted foreground (or its correction), timed."""
        start = time.perf_counter()
        prediction = self.segmenter.predict_auto(**prompts)
        self.report.decode_ms.append((time.perf_counter() - start) * 1e3)
        return prediction


def _evaluate_image(timed: TimedSegmenter, report: EvalReport, sample: Sample, image01: np.ndarray,
                    labels: np.ndarray, modality: Modality, max_objects: int | None, multimask: bool) -> None:
    encoded_as: Modality | None = None
    if any(mode in IMAGE_MODES for mode in report.modes):
        timed.set_image(image01, None)
        detected = timed.detected_modality
        report.recognition.append((modality.name, detected.name if detected is not None else None))
        auto = timed.predict_auto()  # scored as it is, and the mask the refinement clicks start from
        if "auto" in report.modes:
            report.add("auto", sample.id, modality.name, AUTO_CLASS, 0, score_auto(auto, labels))
        if "refine" in report.modes:
            outcome = run_refine(timed, labels, auto)
            report.add("refine", sample.id, modality.name, AUTO_CLASS, 0, outcome.score, outcome.clicks)
        encoded_as = detected
    prompted = [mode for mode in report.modes if mode not in IMAGE_MODES]
    objects = select_objects(labels, sample.objects, max_objects) if prompted else []
    if not objects:
        return
    if encoded_as != modality:  # a correctly recognised image is encoded exactly as with its modality given
        timed.set_image(image01, modality)
    for mode in prompted:
        if mode == "box":
            outcomes = run_box(timed, objects, multimask)
        else:
            outcomes = run_clicks(timed, objects, CLICK_MODES[mode], multimask)
        for obj, outcome in zip(objects, outcomes, strict=True):
            report.add(mode, sample.id, modality.name, obj.name, obj.label, outcome.score, outcome.clicks)


def evaluate(segmenter: Segmenter, samples: Sequence[Sample], prompts: str | Iterable[str] = PROMPT_MODES, *,
             max_objects: int | None = DEFAULT_MAX_OBJECTS, multimask: bool = True, progress: bool = True,
             limits: ReadLimits | None = None) -> EvalReport:
    """Run the protocol on every sample: Dice/NSD per prompt mode, modality and class, recognition, latency.

    Prompted modes use the sample's known modality; "auto" and "refine" let the segmenter recognise it (and are
    left out, with a note, for segmenters without a self-prompt). Unreadable samples are listed in ``skipped``.
    """
    modes = check_modes(tuple(prompts) if not isinstance(prompts, str) else prompts)
    notes = []
    dropped = [mode for mode in modes if mode in IMAGE_MODES and not segmenter.supports_auto]
    if dropped:
        modes = tuple(mode for mode in modes if mode not in dropped)
        notes.append(f"{' and '.join(dropped)} left out: {segmenter.name} has no self-prompt")
    report = EvalReport(segmenter.name, modes, {"prompts": list(modes), "max_objects": max_objects,
                                                "multimask": multimask}, notes=notes)
    if not modes:
        return report
    timed = TimedSegmenter(segmenter, report)
    items: Iterable[Sample] = samples
    if progress:
        from tqdm import tqdm

        items = tqdm(samples, desc=f"evaluating {segmenter.name}", unit="image")
    for sample in items:
        try:
            image, labels, modality = load_sample(sample, limits)
            if labels is None:
                raise EdgeMedSAMError("no label map to score against", path=sample.source, fix="pair it with a mask")
            image01 = normalise_intensity(image.pixels, modality, hounsfield=image.hounsfield)
        except EdgeMedSAMError as err:
            report.skipped.append((sample.id, str(err)))
            continue
        _evaluate_image(timed, report, sample, image01, labels, modality, max_objects, multimask)
        report.images += 1
    return report
