"""The CVPR 2025 interactive 3D protocol (``CVPR25_iter_eval.py``) run on a VolumeInteractor, one case at a time.

Step 0 is the box prompt when the case has boxes; a case without boxes scores 0 there and the step is not timed.
Steps 1..5 each add one click per object that still has an error (``clicks3d``), and the model receives the boxes,
every click so far and its previous prediction. After every step: Dice per object and their mean; NSD at 2 mm with
the voxel spacing, the case's NSD being the mean over its objects when the mean Dice is above 0.2 and 0 otherwise
(the challenge's rule; the per-object NSD applies it per object). Over the click steps: DSC_AUC and NSD_AUC, the
trapezoid of the five scores at x = 0..4 (at most 4). The final scores are those of step 5. Time: ``start`` and
every timed step, against the challenge's limit of 90 s per object. Memory: the peak resident set of the process
during the case (Linux's VmHWM, reset at the case's start; elsewhere the process's peak so far).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.integrate import trapezoid

from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.evaluation.clicks3d import simulate_clicks
from edge_medsam.io.types import Volume
from edge_medsam.metrics import NSD_MIN_DICE, NSD_TOLERANCE, dice, surface_dice
from edge_medsam.runtime.protocol import Click3D, VolumeInteractor

CLICK_STEPS = 5
SECONDS_PER_OBJECT = 90.0


@dataclass
class Interactive3DCase:
    """A labelled volume to run the protocol on: ``truth`` in the volume's (i, j, k), voxel ``boxes`` by label (None
    when the case has no box prompt)."""

    name: str
    volume: Volume
    truth: np.ndarray
    boxes: dict[int, tuple[int, int, int, int, int, int]] | None = None

    @property
    def labels(self) -> list[int]:
        """The objects: every non-zero label of the truth, in order."""
        return [int(v) for v in np.unique(self.truth) if v != 0]


@dataclass
class StepScores:
    """One step: Dice and NSD per object and for the case, its time (None when not timed) and its new clicks."""

    step: int
    dice: dict[int, float]
    nsd: dict[int, float]
    case_dice: float
    case_nsd: float
    seconds: float | None
    clicks: list[Click3D] = field(default_factory=list)


@dataclass
class CaseResult:
    """The protocol's outcome for one case and model."""

    model: str
    case: str
    labels: list[int]
    has_box: bool
    steps: list[StepScores]
    start_seconds: float
    peak_rss_mb: float | None
    prediction: np.ndarray | None = None
    all_predictions: list[np.ndarray] = field(default_factory=list)

    @property
    def dsc_auc(self) -> float:
        return click_auc([s.case_dice for s in self.steps])

    @property
    def nsd_auc(self) -> float:
        return click_auc([s.case_nsd for s in self.steps])

    @property
    def final_dice(self) -> float:
        return self.steps[-1].case_dice

    @property
    def final_nsd(self) -> float:
        return self.steps[-1].case_nsd

    @property
    def total_seconds(self) -> float:
        """``start`` plus every timed step."""
        return self.start_seconds + sum(s.seconds or 0.0 for s in self.steps)

    @property
    def limit_seconds(self) -> float:
        return SECONDS_PER_OBJECT * len(self.labels)

    def object_auc(self, label: int, metric: str = "dice") -> float:
        """One object's AUC over the click steps."""
        return click_auc([getattr(s, metric)[label] for s in self.steps])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the summary figures, then per step the scores, time and clicks."""
        return {"model": self.model, "case": self.case, "labels": self.labels, "has_box": self.has_box,
                "dsc_auc": self.dsc_auc, "nsd_auc": self.nsd_auc, "final_dice": self.final_dice,
                "final_nsd": self.final_nsd, "box_dice": self.steps[0].case_dice, "total_seconds": self.total_seconds,
                "start_seconds": self.start_seconds, "limit_seconds": self.limit_seconds,
                "over_limit": self.total_seconds > self.limit_seconds, "peak_rss_mb": self.peak_rss_mb,
                "objects": {str(label): {"dsc_auc": self.object_auc(label), "nsd_auc": self.object_auc(label, "nsd"),
                                         "final_dice": self.steps[-1].dice[label],
                                         "final_nsd": self.steps[-1].nsd[label]} for label in self.labels},
                "steps": [{"step": s.step, "case_dice": s.case_dice, "case_nsd": s.case_nsd, "seconds": s.seconds,
                           "dice": {str(k): v for k, v in s.dice.items()},
                           "nsd": {str(k): v for k, v in s.nsd.items()},
                           "clicks": [{"label": c.label, "ijk": [c.i, c.j, c.k], "positive": c.positive}
                                      for c in s.clicks]} for s in self.steps]}


def click_auc(step_scores: Sequence[float]) -> float:
    """The challenge's AUC: the trapezoid of the last five scores (the click steps) at x = 0..4."""
    scores = np.asarray(step_scores, np.float64)[-CLICK_STEPS:]
    if scores.size != CLICK_STEPS:
        raise ValueError(f"{scores.size} click-step scores, the AUC needs {CLICK_STEPS}")
    return float(trapezoid(scores, np.arange(CLICK_STEPS)))


def score_step(prediction: np.ndarray, truth: np.ndarray, labels: Sequence[int], spacing: Sequence[float],
               tolerance: float = NSD_TOLERANCE) -> tuple[dict[int, float], dict[int, float], float, float]:
    """Dice and NSD per object, and the case's Dice and NSD by the challenge's rule (NSD 0 unless mean Dice > 0.2)."""
    dices = {label: dice(prediction == label, truth == label) for label in labels}
    case_dice = float(np.mean(list(dices.values())))
    raw = {label: surface_dice(prediction == label, truth == label, spacing, tolerance)
           if case_dice > NSD_MIN_DICE or dices[label] > NSD_MIN_DICE else 0.0 for label in labels}
    nsds = {label: raw[label] if dices[label] > NSD_MIN_DICE else 0.0 for label in labels}
    case_nsd = float(np.mean(list(raw.values()))) if case_dice > NSD_MIN_DICE else 0.0
    return dices, nsds, case_dice, case_nsd


def _rss_peak_reset() -> bool:
    """Reset the process's peak resident set (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_peak_mb() -> float | None:
    try:
        found = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    except OSError:
        found = None
    if found:
        return int(found.group(1)) / 1024
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except (ImportError, OSError):
        return None


def _checked(prediction: Any, volume: Volume, model: str, step: int) -> np.ndarray:
    array = np.asarray(prediction)
    if array.shape != volume.shape or (not np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_):
        raise EdgeMedSAMError(f"{model} returned a {array.dtype} volume of shape {array.shape} at step {step}, not "
                              f"integer labels of shape {volume.shape}", fix="return the label volume of the case")
    return array.astype(np.uint16, copy=False)


def run_case(interactor: VolumeInteractor, case: Interactive3DCase, *, keep_predictions: bool = False,
             tolerance: float = NSD_TOLERANCE) -> CaseResult:
    """The box step and five click steps of one case."""
    labels, truth, spacing = case.labels, case.truth, case.volume.spacing
    if truth.shape != case.volume.shape:
        raise EdgeMedSAMError(f"the truth of case {case.name} has shape {truth.shape}, the volume {case.volume.shape}",
                              fix="give labels on the volume's grid")
    boxes: Mapping[int, Sequence[int]] = {k: v for k, v in (case.boxes or {}).items() if k in labels}
    _rss_peak_reset()
    started = time.perf_counter()
    interactor.start(case.volume)
    start_seconds = time.perf_counter() - started
    steps: list[StepScores] = []
    predictions: list[np.ndarray] = []
    clicks: list[Click3D] = []
    prediction: np.ndarray | None = None
    for step in range(CLICK_STEPS + 1):
        new: list[Click3D] = []
        previous = None
        if step == 0 and not boxes:
            steps.append(StepScores(0, dict.fromkeys(labels, 0.0), dict.fromkeys(labels, 0.0), 0.0, 0.0, None))
            continue
        if step > 0:  # after a skipped box step the previous prediction is empty, as the challenge hands it on
            previous = prediction if prediction is not None else np.zeros(truth.shape, np.uint16)
            new = simulate_clicks(previous, truth, labels)
            clicks += new
        started = time.perf_counter()
        output = interactor.step(boxes, list(clicks), None if previous is None else previous.copy())
        seconds = time.perf_counter() - started
        prediction = _checked(output, case.volume, interactor.name, step)
        dices, nsds, case_dice, case_nsd = score_step(prediction, truth, labels, spacing, tolerance)
        steps.append(StepScores(step, dices, nsds, case_dice, case_nsd, seconds, new))
        if keep_predictions:
            predictions.append(prediction)
    return CaseResult(interactor.name, case.name, labels, bool(boxes), steps, start_seconds, _rss_peak_mb(),
                      prediction if keep_predictions else None, predictions)
