"""Do two pipeline runs agree? Every evaluation figure of one run (Dice and NSD per prompt mode, modality
recognition, the refinement before/after) next to the other's, with the largest difference."""

from __future__ import annotations

import json
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

    @property
    def delta(self) -> float:
        return self.second - self.first


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


def run_figures(run_dir: str | Path) -> dict[str, dict[str, float]]:
    """Report name → figure → value, from a finished run's evaluate stage."""
    run_dir = Path(run_dir)
    state_path = run_dir / "pipeline.json"
    if not state_path.exists():
        raise InputError("not a pipeline run folder (no pipeline.json)", path=run_dir,
                         fix="give the folder `edge-medsam pipeline` wrote, e.g. runs/quickstart")
    evaluate = json.loads(state_path.read_text()).get("evaluate", {})
    if not evaluate.get("done"):
        raise InputError("the run has not finished its evaluate stage", path=run_dir,
                         fix="run `edge-medsam pipeline RECIPE` to the end first")
    reports = {}
    for name, metrics_path in evaluate["outputs"]["reports"].items():
        path = Path(metrics_path)
        if not path.exists():  # the run folder was moved: the report sits at the same place inside it
            path = run_dir / "evaluate" / name / "metrics.json"
        reports[name] = _figures(json.loads(path.read_text()))
    return reports


def compare_runs(first: str | Path, second: str | Path) -> list[FigureDelta]:
    """Every figure both runs report, in the first run's order."""
    a, b = run_figures(first), run_figures(second)
    return [FigureDelta(report, figure, value, b[report][figure])
            for report, figures in a.items() if report in b
            for figure, value in figures.items() if figure in b[report]]


def comparison_markdown(deltas: list[FigureDelta], first: str, second: str, tolerance: float) -> str:
    """A Markdown table of both runs' figures, the differences over ``tolerance`` marked."""
    lines = [f"| report | figure | {first} | {second} | difference |", "|---|---|---:|---:|---:|"]
    for d in deltas:
        mark = " **over tolerance**" if abs(d.delta) > tolerance else ""
        lines.append(f"| {d.report} | {d.figure} | {d.first:.3f} | {d.second:.3f} | {d.delta:+.3f}{mark} |")
    worst = max((abs(d.delta) for d in deltas), default=0.0)
    lines.append("")
    lines.append(f"{len(deltas)} figures; largest difference {worst:.4f} (tolerance {tolerance}).")
    return "\n".join(lines)
