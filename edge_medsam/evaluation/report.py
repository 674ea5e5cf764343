"""An evaluation's results: per-object scores, modality recognition and latency, as JSON, Markdown and CSV."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_medsam.evaluation.protocol import CLICK_MODES, IMAGE_MODES
from edge_medsam.io.files import atomic_write_text
from edge_medsam.metrics import Score, ScoreTable

ALL = "all"
AUTO_CLASS = "foreground"
WRONG_AUTO_DICE = 0.9  # a self-prompted mask below this Dice is one a user would correct
MAX_CLASS_ROWS = 12  # beyond this (instance maps) the Markdown shows a modality's total only; JSON keeps all


@dataclass(frozen=True)
class ObjectScore:
    """One object (or, for "auto", one image's foreground) scored under one prompt mode."""

    mode: str
    sample: str
    modality: str
    name: str
    label: int
    dice: float
    nsd: float
    clicks: int = 0


def _stats(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    arr = np.asarray(values, float)
    return {"mean": float(arr.mean()), "median": float(np.median(arr)), "p90": float(np.percentile(arr, 90)),
            "n": int(arr.size)}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _ordered(groups: dict[str, Any]) -> list[str]:
    """Keys in natural order (label_2 before label_10) with "all" last."""
    return sorted(groups, key=lambda key: (key == ALL, [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key)]))


@dataclass
class EvalReport:
    """Everything one ``evaluate`` run measured.

    ``recognition``: (true modality, recognised modality or None) per automatically encoded image.
    ``encode_ms``/``decode_ms``: the duration of every ``set_image`` and every predict call.
    ``skipped``: (sample id, reason) of samples that could not be read.
    """

    model: str
    modes: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    objects: list[ObjectScore] = field(default_factory=list)
    recognition: list[tuple[str, str | None]] = field(default_factory=list)
    encode_ms: list[float] = field(default_factory=list)
    decode_ms: list[float] = field(default_factory=list)
    images: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, mode: str, sample: str, modality: str, name: str, label: int, score: Score, clicks: int = 0) -> None:
        """Record one scored object."""
        self.objects.append(ObjectScore(mode, sample, modality, name, label, score.dice, score.nsd, clicks))

    def table(self, mode: str) -> ScoreTable:
        """The scores of one prompt mode."""
        table = ScoreTable()
        for obj in self.objects:
            if obj.mode == mode:
                table.add(obj.modality, obj.name, Score(obj.dice, obj.nsd))
        return table

    def summary(self) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
        """{mode: {modality or "all": {class or "all": {"dice", "nsd", "n"}}}}."""
        return {mode: self.table(mode).summary() for mode in self.modes}

    def overall(self) -> dict[str, dict[str, float]]:
        """Per mode: mean Dice/NSD over objects, over modalities (each modality's mean counts once), mean clicks."""
        out = {}
        for mode, summary in self.summary().items():
            if not summary:
                continue
            per_modality = [classes[ALL] for modality, classes in summary.items() if modality != ALL]
            out[mode] = {**summary[ALL][ALL],
                         "dice_modality_mean": float(np.mean([s["dice"] for s in per_modality])),
                         "nsd_modality_mean": float(np.mean([s["nsd"] for s in per_modality]))}
            if mode in CLICK_MODES or mode == "refine":
                out[mode]["clicks"] = float(np.mean([obj.clicks for obj in self.objects if obj.mode == mode]))
        return out

    def recognition_summary(self) -> dict[str, Any] | None:
        """Modality recognition accuracy overall and per true modality (None when nothing was recognised)."""
        if not self.recognition:
            return None
        per: dict[str, list[bool]] = defaultdict(list)
        for truth, found in self.recognition:
            per[truth].append(truth == found)
        hits = [hit for values in per.values() for hit in values]
        return {"accuracy": float(np.mean(hits)), "n": len(hits),
                "per_modality": {m: {"accuracy": float(np.mean(v)), "n": len(v)} for m, v in sorted(per.items())}}

    def correction_summary(self) -> dict[str, float | int | None] | None:
        """Images whose self-prompted Dice is below WRONG_AUTO_DICE: their Dice before and after the refinement
        clicks (None without both "auto" and "refine")."""
        auto = {obj.sample: obj for obj in self.objects if obj.mode == "auto"}
        refined = {obj.sample: obj for obj in self.objects if obj.mode == "refine"}
        wrong = [key for key in auto if key in refined and auto[key].dice < WRONG_AUTO_DICE]
        if not (auto and refined):
            return None
        return {"threshold": WRONG_AUTO_DICE, "images": len(wrong),
                "auto_dice": _mean([auto[key].dice for key in wrong]),
                "refined_dice": _mean([refined[key].dice for key in wrong]),
                "improved": sum(refined[key].dice > auto[key].dice for key in wrong),
                "clicks": _mean([refined[key].clicks for key in wrong])}

    def latency(self) -> dict[str, dict[str, float | int]]:
        """Milliseconds per image encoding and per prompt call (one call answers every object of an image)."""
        return {"encode_ms": _stats(self.encode_ms), "decode_ms": _stats(self.decode_ms)}

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (what metrics.json holds)."""
        return {"model": self.model, "modes": list(self.modes), "settings": self.settings, "images": self.images,
                "overall": self.overall(), "summary": self.summary(),
                "modality_recognition": self.recognition_summary(), "correction": self.correction_summary(),
                "latency": self.latency(),
                "skipped": [{"sample": s, "reason": r} for s, r in self.skipped], "notes": self.notes}

    def markdown(self) -> str:
        """A readable report: a prompted table (modes side by side), the automatic table, latency."""
        summary = self.summary()
        head = f"{self.images} images, prompts {', '.join(self.modes)}"
        head += f", {len(self.skipped)} samples skipped." if self.skipped else "."
        lines = [f"# Evaluation of {self.model}", "", head, *(f"\nNote: {note}" for note in self.notes)]
        lines += self._prompted_lines(summary) + self._auto_lines(summary) + self._latency_lines()
        return "\n".join(lines) + "\n"

    def _prompted_lines(self, summary: dict[str, Any]) -> list[str]:
        prompted = [m for m in self.modes if m not in IMAGE_MODES and summary.get(m)]
        if not prompted:
            return []
        lines = ["", "## Prompted (Dice / NSD per object)", "",
                 "| modality | class | n | " + " | ".join(f"{m} Dice | {m} NSD" for m in prompted) + " |",
                 "|---|---|---:|" + "---:|---:|" * len(prompted)]
        first = summary[prompted[0]]  # every prompted mode scores the same objects
        collapsed = []
        for modality in _ordered(first):
            names = _ordered(first[modality])
            if len(names) - 1 > MAX_CLASS_ROWS:
                collapsed.append(f"{modality} ({len(names) - 1})")
                names = [ALL]
            for name in names:
                cells = " | ".join(f"{summary[m][modality][name]['dice']:.4f} | {summary[m][modality][name]['nsd']:.4f}"
                                   for m in prompted)
                lines.append(f"| {modality} | {name} | {first[modality][name]['n']} | {cells} |")
        if collapsed:
            lines += ["", f"Classes not listed one by one (see metrics.json): {', '.join(collapsed)}."]
        point_modes = [m for m in prompted if m in CLICK_MODES]
        if point_modes:
            overall = self.overall()
            lines += ["", "Mean clicks per object: "
                      + ", ".join(f"{m} {overall[m]['clicks']:.2f}" for m in point_modes) + "."]
        return lines

    def _auto_lines(self, summary: dict[str, Any]) -> list[str]:
        modes = [m for m in IMAGE_MODES if summary.get(m)]
        if not modes:
            return []
        recognition = self.recognition_summary() or {"accuracy": None, "per_modality": {}}
        lines = ["", "## Automatic (self-prompted foreground vs all objects; refine: + up to 3 correction clicks)", "",
                 "| modality | images | " + " | ".join(f"{m} Dice | {m} NSD" for m in modes) + " | modality recognised |",
                 "|---|---:|" + "---:|---:|" * len(modes) + "---:|"]
        first = summary[modes[0]]
        for modality in _ordered(first):
            found = recognition["accuracy"] if modality == ALL else \
                recognition["per_modality"].get(modality, {}).get("accuracy")
            shown = "n/a" if found is None else f"{found:.1%}"
            cells = " | ".join(f"{summary[m][modality][ALL]['dice']:.4f} | {summary[m][modality][ALL]['nsd']:.4f}"
                               for m in modes)
            lines.append(f"| {modality} | {first[modality][ALL]['n']} | {cells} | {shown} |")
        correction = self.correction_summary()
        if correction and correction["images"]:
            lines += ["", f"Where the self-prompt is wrong (Dice < {correction['threshold']}): {correction['images']} "
                          f"images, Dice {correction['auto_dice']:.4f} → {correction['refined_dice']:.4f} after "
                          f"{correction['clicks']:.2f} clicks on average ({correction['improved']} improved)."]
        return lines

    def _latency_lines(self) -> list[str]:
        lines = ["", "## Latency", ""]
        for key, label in (("encode_ms", "image encoding"), ("decode_ms", "prompt call (all objects of an image)")):
            stats = self.latency()[key]
            if stats["n"]:
                lines.append(f"- {label}: mean {stats['mean']:.1f} ms, median {stats['median']:.1f} ms, "
                             f"p90 {stats['p90']:.1f} ms ({stats['n']} calls)")
        return lines

    def csv(self) -> str:
        """Every scored object, one row each (for finding the worst cases)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["mode", "sample", "modality", "class", "label", "dice", "nsd", "clicks"])
        for obj in self.objects:
            writer.writerow([obj.mode, obj.sample, obj.modality, obj.name, obj.label, f"{obj.dice:.6f}",
                             f"{obj.nsd:.6f}", obj.clicks])
        return buffer.getvalue()

    def write(self, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """Write metrics.json, metrics.md and objects.csv atomically; returns their paths by kind."""
        folder = Path(out_dir)
        texts = {"json": ("metrics.json", json.dumps(self.to_dict(), indent=2) + "\n"),
                 "markdown": ("metrics.md", self.markdown()), "csv": ("objects.csv", self.csv())}
        return {kind: atomic_write_text(folder / name, text) for kind, (name, text) in texts.items()}
