"""Do two pipeline runs agree? Every evaluation figure of one run (Dice and NSD per prompt mode, modality
recognition, the refinement before/after) next to the other's, with the difference and, for Dice and NSD, the
noise of that difference: twice the standard error of the per-object paired differences (the same objects are
scored in both runs). A difference is within noise when it is below that or below a fixed tolerance."""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_medsam.errors import InputError


@dataclass(frozen=True)
class FigureDelta:
    """One figure of both runs."""

    report: str
    figure: str
    first: float
    second: float
    noise: float | None = None  # 2 x standard error of the paired per-object differences (Dice and NSD)

    @property
    def delta(self) -> float:
        return self.second - self.first

    def within(self, tolerance: float) -> bool:
        """Whether the difference is below the tolerance or below the noise of the difference."""
        return abs(self.delta) <= max(tolerance, self.noise or 0.0)


def _figures(metrics: dict[str, Any]) -> dict[str, float]:
    figures = {}
    for mode, scores in metrics.get("overall", {}).items():
        for key in ("dice", "nsd"):
            if scores.get(key) is not None:
                figures[f"{mode} {key}"] = float(scores[key])
    recognition = metrics.get("modality_recognition") or {}
    if recognition.get("accuracy") is not None:
        figures["modality accuracy"] = float(recognition["accuracy"])
    correction = metrics.get("correction") or {}
    for key in ("auto_dice", "refined_dice"):
        if correction.get(key) is not None:
            figures[f"wrong self-prompts {key.replace('_dice', '')}"] = float(correction[key])
    return figures


def _object_scores(metrics_path: Path) -> dict[str, dict[tuple[str, ...], float]]:
    """Figure ("box dice") → object key → score, from the objects.csv next to a report's metrics.json."""
    table = metrics_path.with_name("objects.csv")
    scores: dict[str, dict[tuple[str, ...], float]] = {}
    if not table.exists():
        return scores
    with table.open(newline="") as handle:
        for row in csv.DictReader(handle):
            key = (row["sample"], row["class"], row["label"])
            for metric in ("dice", "nsd"):
                if row.get(metric) not in (None, "", "nan"):
                    scores.setdefault(f"{row['mode']} {metric}", {})[key] = float(row[metric])
    return scores


def paired_noise(first: dict[tuple[str, ...], float], second: dict[tuple[str, ...], float]) -> float | None:
    """Twice the standard error of the mean per-object difference (None with fewer than two shared objects)."""
    diffs = [second[k] - first[k] for k in first if k in second and math.isfinite(first[k] + second[k])]
    if len(diffs) < 2:
        return None
    return 2 * statistics.stdev(diffs) / math.sqrt(len(diffs))


def _report_paths(run_dir: str | Path) -> dict[str, Path]:
    """Report name → metrics.json of a finished run's evaluate stage."""
    run_dir = Path(run_dir)
    state_path = run_dir / "pipeline.json"
    if not state_path.exists():
        raise InputError("not a pipeline run folder (no pipeline.json)", path=run_dir,
                         fix="give the folder `edge-medsam pipeline` wrote, e.g. runs/quickstart")
    evaluate = json.loads(state_path.read_text()).get("evaluate", {})
    if not evaluate.get("done"):
        raise InputError("the run has not finished its evaluate stage", path=run_dir,
                         fix="run `edge-medsam pipeline RECIPE` to the end first")
    paths = {}
    for name, metrics_path in evaluate["outputs"]["reports"].items():
        path = Path(metrics_path)
        if not path.exists():  # the run folder was moved: the report sits at the same place inside it
            path = run_dir / "evaluate" / name / "metrics.json"
        paths[name] = path
    return paths


def compare_runs(first: str | Path, second: str | Path) -> list[FigureDelta]:
    """Every figure both runs report, in the first run's order, with the paired noise where objects are listed."""
    paths_a, paths_b = _report_paths(first), _report_paths(second)
    deltas = []
    for report in (r for r in paths_a if r in paths_b):
        a, b = _figures(json.loads(paths_a[report].read_text())), _figures(json.loads(paths_b[report].read_text()))
        objects_a, objects_b = _object_scores(paths_a[report]), _object_scores(paths_b[report])
        for figure in (f for f in a if f in b):
            noise = paired_noise(objects_a[figure], objects_b[figure]) if figure in objects_a and figure in objects_b \
                else None
            deltas.append(FigureDelta(report, figure, a[figure], b[figure], noise))
    return deltas


def comparison_markdown(deltas: list[FigureDelta], first: str, second: str, tolerance: float) -> str:
    """A Markdown table of both runs' figures, the differences beyond noise and tolerance marked."""
    lines = [f"| report | figure | {first} | {second} | difference | noise (2 SE) |", "|---|---|---:|---:|---:|---:|"]
    for d in deltas:
        mark = "" if d.within(tolerance) else " **beyond noise**"
        noise = "–" if d.noise is None else f"{d.noise:.3f}"
        lines.append(f"| {d.report} | {d.figure} | {d.first:.3f} | {d.second:.3f} | {d.delta:+.3f}{mark} | {noise} |")
    worst = max((abs(d.delta) for d in deltas), default=0.0)
    beyond = sum(not d.within(tolerance) for d in deltas)
    lines.append("")
    lines.append(f"{len(deltas)} figures; largest difference {worst:.4f}; {beyond} beyond both the paired noise "
                 f"(2 standard errors of the per-object differences) and the tolerance {tolerance}.")
    return "\n".join(lines)
