"""Interactive 3D protocol results as files: ``cases.csv`` (the challenge's metric columns, one row per model and
case), ``results.json`` (settings, summary, every step of every case) and ``report.md`` (the tables)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_medsam.evaluation.interactive3d import CLICK_STEPS, CaseResult
from edge_medsam.io.files import atomic_write_text

STEP_COUNT = CLICK_STEPS + 1
CSV_COLUMNS = ("Model", "CaseName", "TotalRunningTime", *(f"RunningTime_{n}" for n in range(1, STEP_COUNT + 1)),
               "DSC_AUC", "NSD_AUC", "DSC_Final", "NSD_Final", *(f"DSC_{n}" for n in range(1, STEP_COUNT + 1)),
               *(f"NSD_{n}" for n in range(1, STEP_COUNT + 1)), "num_class", "runtime_upperbound", "StartTime",
               "PeakRSS_MB")


def case_row(result: CaseResult) -> dict[str, Any]:
    """One CSV row; steps are numbered 1..6 as in the challenge's CSV (1 = box), an untimed step takes 0 s."""
    row: dict[str, Any] = {"Model": result.model, "CaseName": result.case, "TotalRunningTime": result.total_seconds,
                           "DSC_AUC": result.dsc_auc, "NSD_AUC": result.nsd_auc, "DSC_Final": result.final_dice,
                           "NSD_Final": result.final_nsd, "num_class": len(result.labels),
                           "runtime_upperbound": result.limit_seconds, "StartTime": result.start_seconds,
                           "PeakRSS_MB": result.peak_rss_mb}
    for n, step in enumerate(result.steps, start=1):
        row[f"RunningTime_{n}"] = step.seconds or 0.0
        row[f"DSC_{n}"] = step.case_dice
        row[f"NSD_{n}"] = step.case_nsd
    return row


def summary(results: Sequence[CaseResult]) -> dict[str, dict[str, Any]]:
    """Per model: means over its cases of the box-step and final scores, the AUCs and the time; the largest peak RSS."""
    out: dict[str, dict[str, Any]] = {}
    for model in dict.fromkeys(r.model for r in results):
        mine = [r for r in results if r.model == model]
        boxed = [r for r in mine if r.has_box]
        peaks = [r.peak_rss_mb for r in mine if r.peak_rss_mb is not None]
        out[model] = {
            "cases": len(mine), "objects": sum(len(r.labels) for r in mine),
            "box_dice": float(np.mean([r.steps[0].case_dice for r in boxed])) if boxed else None,
            "box_cases": len(boxed),
            "dice_per_step": [float(np.mean([r.steps[n].case_dice for r in mine])) for n in range(STEP_COUNT)],
            "final_dice": float(np.mean([r.final_dice for r in mine])),
            "final_nsd": float(np.mean([r.final_nsd for r in mine])),
            "dsc_auc": float(np.mean([r.dsc_auc for r in mine])), "nsd_auc": float(np.mean([r.nsd_auc for r in mine])),
            "seconds_per_case": float(np.mean([r.total_seconds for r in mine])),
            "seconds_per_object": sum(r.total_seconds for r in mine) / max(sum(len(r.labels) for r in mine), 1),
            "over_limit": sum(r.total_seconds > r.limit_seconds for r in mine),
            "peak_rss_mb": max(peaks) if peaks else None}
    return out


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(results: Sequence[CaseResult], settings: dict[str, Any]) -> str:
    """The summary per model, then every case's scores step by step."""
    lines = ["# Interactive 3D protocol (CVPR 2025 challenge rules)", "",
             f"Box step: {settings.get('boxes', 'case')} boxes; then {CLICK_STEPS} clicks per object from the current "
             "error. DSC_AUC / NSD_AUC: trapezoid over the 5 click steps (x = 0..4, at most 4). NSD at "
             f"{settings.get('tolerance_mm', 2.0)} mm, 0 where the case's mean DSC <= 0.2. Time: start + every "
             "timed step, limit 90 s per object. Means over cases.", "",
             "| model | cases | objects | box DSC | final DSC | final − box | DSC_AUC | NSD_AUC | final NSD | s / case "
             "| s / object | over limit | peak RSS MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model, s in summary(results).items():
        gain = None if s["box_dice"] is None else s["final_dice"] - s["box_dice"]
        lines.append(f"| {model} | {s['cases']} | {s['objects']} | {_number(s['box_dice'])} | "
                     f"{_number(s['final_dice'])} | {_number(gain)} | {_number(s['dsc_auc'])} | "
                     f"{_number(s['nsd_auc'])} | {_number(s['final_nsd'])} | {_number(s['seconds_per_case'], 2)} | "
                     f"{_number(s['seconds_per_object'], 2)} | {s['over_limit']} | {_number(s['peak_rss_mb'], 0)} |")
    lines += ["", "Per case: DSC after the box and after each click (NSD_AUC, time)", "",
              "| model | case | objects | box | click 1 | click 2 | click 3 | click 4 | click 5 | DSC_AUC | NSD_AUC "
              "| s |", "|---|---|---:|" + "---:|" * 9]
    for r in results:
        box = _number(r.steps[0].case_dice) if r.has_box else "no box"
        clicks = " | ".join(_number(s.case_dice) for s in r.steps[1:])
        lines.append(f"| {r.model} | {r.case} | {len(r.labels)} | {box} | {clicks} | {_number(r.dsc_auc)} | "
                     f"{_number(r.nsd_auc)} | {_number(r.total_seconds, 2)} |")
    return "\n".join(lines) + "\n"


def write_report(out: str | Path, results: Sequence[CaseResult], settings: dict[str, Any]) -> dict[str, Path]:
    """``cases.csv``, ``results.json`` and ``report.md`` in ``out``."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(case_row(r) for r in results)
    data = {"protocol": "CVPR 2025 interactive 3D (CVPR25_iter_eval.py)", "settings": settings,
            "summary": summary(results), "cases": [r.to_dict() for r in results]}
    return {"csv": atomic_write_text(folder / "cases.csv", text.getvalue()),
            "json": atomic_write_text(folder / "results.json", json.dumps(data, indent=1)),
            "markdown": atomic_write_text(folder / "report.md", markdown(results, settings))}
