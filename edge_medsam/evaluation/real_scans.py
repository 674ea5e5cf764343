"""Box-prompted Dice and NSD on real labelled scans, beside two baselines that need no model.

The MedSAM-on-Laptop box protocol on every slice with a labelled pixel: each connected lesion of the slice is one
object, prompted with its tight box and with a jittered box (each side moved by up to 10 % of the box side, at most
20 pixels, seeded by slice and object, as MedSAM's training jittered them). The baselines answer the same boxes with
the box filled and with the ellipse inscribed in it. NSD uses the in-plane spacing in millimetres. Results are means
over each case's lesion objects (one per lesion and slice) and, overall, the mean of the case means (every case counts
once, however many slices its lesion spans).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from edge_medsam.data.layouts import Sample, load_sample
from edge_medsam.data.prompts import box_from_mask
from edge_medsam.io.files import atomic_write_text
from edge_medsam.metrics import score_mask
from edge_medsam.modalities import get_modality, normalise_intensity
from edge_medsam.runtime.protocol import Segmenter

BOX_KINDS = ("tight", "jittered")
JITTER, MAX_SHIFT = 0.1, 20.0
BASELINES = ("box_filled", "ellipse_in_box")


def box_filled(box: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The pixels whose centres lie inside the box."""
    ys, xs = np.mgrid[: shape[0], : shape[1]] + 0.5
    return (xs >= box[0]) & (xs <= box[2]) & (ys >= box[1]) & (ys <= box[3])


def ellipse_in_box(box: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The pixels whose centres lie inside the ellipse inscribed in the box."""
    ys, xs = np.mgrid[: shape[0], : shape[1]] + 0.5
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    rx, ry = max((box[2] - box[0]) / 2, 0.5), max((box[3] - box[1]) / 2, 0.5)
    return ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0


@dataclass(frozen=True)
class RealSlice:
    """One labelled slice of a real scan: the [0, 1] RGB image, its lesions and their boxes."""

    case: str
    sample_id: str
    modality: str
    image01: np.ndarray
    spacing: tuple[float, float]
    lesions: tuple[np.ndarray, ...]
    boxes: dict[str, np.ndarray]  # box kind -> [N, 4] in original pixels


def real_slices(samples: Iterable[Sample]) -> list[RealSlice]:
    """The slices with at least one labelled pixel, each lesion (connected component) with its boxes."""
    slices = []
    for sample in samples:
        image, labels, modality = load_sample(sample)
        if labels is None or not labels.any():
            continue
        components, count = ndimage.label(labels > 0)
        lesions = tuple(components == k for k in range(1, count + 1))
        seed = [int(b) for b in sample.id.encode()]
        boxes = {"tight": np.stack([box_from_mask(m) for m in lesions]),
                 "jittered": np.stack([box_from_mask(m, np.random.default_rng([*seed, k]), JITTER, MAX_SHIFT)
                                       for k, m in enumerate(lesions)])}
        spacing = tuple(float(s) for s in (image.spacing or (1.0, 1.0)))[:2]
        slices.append(RealSlice(sample.case, sample.id, modality.name,
                                normalise_intensity(image.pixels, modality, hounsfield=image.hounsfield),
                                spacing, lesions, boxes))
    return slices


@dataclass
class RealScanReport:
    """Scores per method, box kind and case; the modality a self-prompting model recognised per case."""

    methods: list[str] = field(default_factory=list)
    scores: dict[str, dict[str, dict[str, list[tuple[float, float]]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))
    recognised: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, method: str, kind: str, case: str, dice: float, nsd: float) -> None:
        """One object's score."""
        if method not in self.methods:
            self.methods.append(method)
        self.scores[method][kind][case].append((dice, nsd))

    def summary(self) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
        """{method: {kind: {case or "all": {"dice", "nsd", "objects"}}}}; "all" is the mean of the case means."""
        out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
        for method in self.methods:
            for kind, per_case in self.scores[method].items():
                rows = {case: {"dice": float(np.mean([d for d, _ in values])),
                               "nsd": float(np.mean([n for _, n in values])), "objects": len(values)}
                        for case, values in sorted(per_case.items())}
                rows["all"] = {"dice": float(np.mean([r["dice"] for r in rows.values()])),
                               "nsd": float(np.mean([r["nsd"] for r in rows.values()])),
                               "objects": sum(int(r["objects"]) for r in rows.values())}
                out.setdefault(method, {})[kind] = rows
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the summary, the cases and the recognised modalities."""
        return {"protocol": {"boxes": list(BOX_KINDS), "jitter": JITTER, "max_shift_px": MAX_SHIFT,
                             "baselines": list(BASELINES), "overall": "mean of per-case means"},
                "cases": self.cases, "summary": self.summary(), "recognised": self.recognised}

    def write(self, out: str | Path) -> Path:
        """``metrics.json`` and ``report.md`` in ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "metrics.json", json.dumps(self.to_dict(), indent=2))
        atomic_write_text(out / "report.md", real_scan_markdown(self.to_dict()))
        return out / "metrics.json"


def evaluate_real_scans(segmenters: Sequence[Segmenter], samples: Sequence[Sample],
                        log: Callable[[str], None] | None = None) -> RealScanReport:
    """Score every segmenter and both baselines on the real labelled slices of ``samples``."""
    slices = real_slices(samples)
    report = RealScanReport()
    for item in slices:
        case = report.cases.setdefault(item.case, {"modality": item.modality, "slices": 0, "objects": 0})
        case["slices"] += 1
        case["objects"] += len(item.lesions)
        for kind, boxes in item.boxes.items():
            for name, draw in (("box_filled", box_filled), ("ellipse_in_box", ellipse_in_box)):
                for box, truth in zip(boxes, item.lesions, strict=True):
                    score = score_mask(draw(box, truth.shape), truth, item.spacing)
                    report.add(name, kind, item.case, score.dice, score.nsd)
    for segmenter in segmenters:
        if log:
            log(f"real scans: {segmenter.name} on {len(slices)} slices")
        recognised: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for item in slices:
            if segmenter.supports_auto:
                segmenter.set_image(item.image01, None)
                found = segmenter.detected_modality
                recognised[item.case][found.name if found is not None else "none"] += 1
            segmenter.set_image(item.image01, get_modality(item.modality))
            for kind, boxes in item.boxes.items():
                prediction = segmenter.predict(boxes=boxes)
                for mask, truth in zip(prediction.masks, item.lesions, strict=True):
                    score = score_mask(mask, truth, item.spacing)
                    report.add(segmenter.name, kind, item.case, score.dice, score.nsd)
        if recognised:
            report.recognised[segmenter.name] = {case: dict(counts) for case, counts in recognised.items()}
    return report


def real_scan_markdown(data: dict[str, Any]) -> str:
    """Tables of a real-scan report: Dice (NSD) per case and overall, one row per method, per box kind."""
    summary, cases = data["summary"], data["cases"]
    columns = [*sorted(cases), "all"]
    lines = []
    for kind in BOX_KINDS:
        lines += [f"**{kind} boxes** — Dice (NSD), mean over each case's lesions per slice; all = mean of the cases", "",
                  "| method | " + " | ".join(f"{c} ({cases[c]['modality']}, {cases[c]['slices']} sl.)" if c in cases
                                            else c for c in columns) + " |",
                  "|---|" + "---:|" * len(columns)]
        for method, kinds in summary.items():
            rows = kinds.get(kind, {})
            cells = [f"{rows[c]['dice']:.3f} ({rows[c]['nsd']:.3f})" if c in rows else "–" for c in columns]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    for method, per_case in data.get("recognised", {}).items():
        found = "; ".join(f"{case}: " + ", ".join(f"{m} {n}" for m, n in sorted(counts.items(), key=lambda x: -x[1]))
                          for case, counts in sorted(per_case.items()))
        lines.append(f"Modality recognised by {method} (slices): {found}")
    return "\n".join(lines) + "\n"
