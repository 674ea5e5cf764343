"""Figures derived from the measured rows: the interactive scenario, ours-versus-anchor ratios, and the issue's
targets with their verdicts.

Ratios are anchor / ours (how many times faster, smaller or cheaper ours is): per backend both in FP32 at the
largest thread count, and "best vs best": each side's fastest row over every backend, precision and thread count
among those that keep its accuracy (a precision whose measured Dice loss exceeds ``INT8_DICE_POINTS`` does not
compete; where a model's accuracy per precision was not measured, only its FP32 graphs do).

Verdicts are noise-aware. The timed calls interleave every model round by round, so each round gives one median
per row; a ratio's band is the range of its per-round ratios, a latency's band the range of its round medians.
A target is "met" or "missed" only when the whole band is on one side of the goal, otherwise "within noise".
"""

from __future__ import annotations

from typing import Any

from edge_medsam.benchmark.subjects import ANCHOR, OURS

# The targets (figures to report, never test assertions).
SPEEDUP_TARGETS = {"litemedsam": 30.0, "esp_medsam": 60.0}
DECODER_MS = 2.0
ENCODER_PEAK_FRACTION = 0.5
CT_SECONDS = 10.0
INT8_MB = 5.0
INT8_DICE_POINTS = 0.5
RATIO_COLUMNS = ("ours", "anchor", "basis", "ours_variant", "anchor_variant", "ours_threads", "anchor_threads",
                 "ours_2d_ms", "anchor_2d_ms", "speedup_2d", "speedup_2d_band", "speedup_encoder", "speedup_decoder",
                 "speedup_3d", "macs_ratio", "size_ratio")


MET, MISSED, WITHIN_NOISE, NOT_MEASURED = "met", "missed", "within noise", "not measured"


def _ok(rows: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") == "ok" and all(r.get(k) == v for k, v in match.items())]


def _p50(row: dict[str, Any], stage: str | None = None) -> float:
    return row["stages"][stage]["p50"] if stage else row["total"]["p50"]


def _round_p50s(row: dict[str, Any], stage: str | None = None) -> dict[int, float]:
    stats = row["stages"][stage] if stage else row["total"]
    return dict(zip(stats.get("round_ids", []), stats.get("round_p50s", []), strict=True))


def ratio_band(anchor: dict[str, Any] | None, ours: dict[str, Any] | None,
               stage: str | None = None) -> tuple[float, float] | None:
    """Lowest and highest anchor / ours ratio of the rounds both rows ran in (None below two such rounds)."""
    if anchor is None or ours is None:
        return None
    theirs, mine = _round_p50s(anchor, stage), _round_p50s(ours, stage)
    values = [theirs[r] / mine[r] for r in sorted(set(theirs) & set(mine)) if mine[r] > 0]
    return (round(min(values), 2), round(max(values), 2)) if len(values) >= 2 else None


def value_band(row: dict[str, Any] | None, stage: str | None = None, scale: float = 1.0) -> tuple[float, float] | None:
    """Lowest and highest round median of a row (None below two rounds), times ``scale``."""
    medians = list(_round_p50s(row, stage).values()) if row else []
    return (round(min(medians) * scale, 4), round(max(medians) * scale, 4)) if len(medians) >= 2 else None


def verdict(value: float | None, goal: float, band: tuple[float, float] | None, at_least: bool) -> str:
    """met / missed when the band (or, without one, the value) is wholly on one side of the goal, else within noise."""
    if value is None:
        return NOT_MEASURED
    low, high = band or (value, value)
    if at_least:
        return MET if low >= goal else MISSED if high < goal else WITHIN_NOISE
    return MET if high <= goal else MISSED if low > goal else WITHIN_NOISE


def interactive(rows: list[dict[str, Any]], prompts: int) -> list[dict[str, Any]]:
    """Encode once + K prompts per variant: the 2D image case plus K - 1 more prompts on the cached embedding."""
    found = []
    for image in _ok(rows, task="image", batch=1):
        key = {k: image[k] for k in ("subject", "family", "backend", "precision", "threads")}
        prompt = next(iter(_ok(rows, task="prompt", batch=1, **key)), None)
        if prompt is None:
            continue
        found.append(key | {"prompts": prompts, "first_mask_ms": _p50(image),
                            "per_prompt_ms": _p50(prompt), "decoder_only_ms": _p50(prompt, "decoder"),
                            "total_ms": _p50(image) + (prompts - 1) * _p50(prompt)})
    return found


def _anchor_name(subject: dict[str, Any]) -> str:
    return subject["info"].get("reference") or subject["name"]


def accurate_precisions(results: dict[str, Any], subject: str) -> set[tuple[str, str]] | None:
    """(backend, precision) pairs whose measured Dice loss stays within INT8_DICE_POINTS; None: not measured."""
    accuracy = results["accuracy"].get(subject)
    if not accuracy:
        return None
    return {(r["backend"], r["precision"]) for r in accuracy["variants"]
            if max(r["dice_points_lost"].values()) <= INT8_DICE_POINTS}


def _best(results: dict[str, Any], subject: str, task: str = "image",
          stage: str | None = None) -> dict[str, Any] | None:
    """The subject's fastest accurate row over every backend, precision and thread count."""
    accurate = accurate_precisions(results, subject)
    candidates = [r for r in _ok(results["timings"], subject=subject, task=task, batch=1)
                  if r["precision"] == "fp32" or (accurate is not None and (r["backend"], r["precision"]) in accurate)]
    return min(candidates, key=lambda r: _p50(r, stage), default=None)


def _projected(results: dict[str, Any], row: dict[str, Any] | None) -> float | None:
    if row is None:
        return None
    return next((p["projected_ms"] for p in results["ct"]["projected"]
                 if all(p[k] == row[k] for k in ("subject", "backend", "precision", "threads"))), None)


def _ratio(anchor: float | None, ours: float | None) -> float | None:
    return round(anchor / ours, 2) if anchor and ours else None


def _pair_row(results: dict[str, Any], ours: dict[str, Any], anchor: dict[str, Any], basis: str,
              mine: dict[str, Any], theirs: dict[str, Any], prompt_mine: dict[str, Any] | None,
              prompt_theirs: dict[str, Any] | None) -> dict[str, Any]:
    macs = (anchor["macs"]["encoder_gmacs"], ours["macs"]["encoder_gmacs"])
    return {
        "ours": ours["name"], "anchor": anchor["name"], "basis": basis,
        "ours_variant": f"{mine['backend']} {mine['precision']}", "anchor_variant": f"{theirs['backend']} {theirs['precision']}",
        "ours_threads": mine["threads"], "anchor_threads": theirs["threads"],
        "ours_2d_ms": round(_p50(mine), 2), "anchor_2d_ms": round(_p50(theirs), 2),
        "speedup_2d": _ratio(_p50(theirs), _p50(mine)), "speedup_2d_band": ratio_band(theirs, mine),
        "speedup_encoder": _ratio(_p50(theirs, "encoder"), _p50(mine, "encoder")),
        "speedup_decoder": _ratio(prompt_theirs and _p50(prompt_theirs, "decoder"),
                                  prompt_mine and _p50(prompt_mine, "decoder")),
        "speedup_3d": _ratio(_projected(results, theirs), _projected(results, mine)),
        "macs_ratio": _ratio(*macs),
        "size_ratio": _ratio(theirs.get("size_mb"), mine.get("size_mb")),
    }


def ratios(results: dict[str, Any], threads: int) -> list[dict[str, Any]]:
    """Ours versus each anchor: per common backend in FP32 at ``threads``, and best versus best."""
    rows, subjects = results["timings"], results["subjects"]
    found = []
    for ours in (s for s in subjects if s["family"] == OURS):
        for anchor in (s for s in subjects if s["family"] == ANCHOR):
            anchor_threads = max((r["threads"] for r in _ok(rows, subject=anchor["name"])), default=threads)
            best_mine, best_theirs = _best(results, ours["name"]), _best(results, anchor["name"])
            if best_mine and best_theirs:
                found.append(_pair_row(results, ours, anchor, "best vs best", best_mine, best_theirs,
                                       _best(results, ours["name"], "prompt", "decoder"),
                                       _best(results, anchor["name"], "prompt", "decoder")))
            for theirs in _ok(rows, subject=anchor["name"], task="image", batch=1, precision="fp32",
                              threads=anchor_threads):
                mine = next(iter(_ok(rows, subject=ours["name"], task="image", batch=1, precision="fp32",
                                     threads=threads, backend=theirs["backend"])), None)
                if mine is None:
                    continue
                match = {"backend": theirs["backend"], "precision": "fp32", "task": "prompt", "batch": 1}
                found.append(_pair_row(results, ours, anchor, f"{theirs['backend']} fp32", mine, theirs,
                                       next(iter(_ok(rows, subject=ours["name"], threads=threads, **match)), None),
                                       next(iter(_ok(rows, subject=anchor["name"], threads=anchor_threads, **match)),
                                            None)))
    return found


def _target(name: str, subject: str, goal: str, value: float | None, unit: str, outcome: str, missed_by: str,
            basis: str, note: str = "", band: tuple[float, float] | None = None) -> dict[str, Any]:
    return {"target": name, "subject": subject, "goal": goal, "value": None if value is None else round(value, 4),
            "band": band, "unit": unit, "verdict": outcome, "missed_by": missed_by if outcome == MISSED else "",
            "basis": basis, "note": note}


def _at_most(name: str, subject: str, value: float | None, goal: float, unit: str, basis: str,
             note: str = "", band: tuple[float, float] | None = None) -> dict[str, Any]:
    if value is None:
        return _target(name, subject, f"<= {goal:g} {unit}", None, unit, NOT_MEASURED, "", basis, note or "not measured")
    over = value - goal
    return _target(name, subject, f"<= {goal:g} {unit}", value, unit, verdict(value, goal, band, at_least=False),
                   f"{over:.3g} {unit} over ({value / goal:.2f}x the goal)", basis, note, band)


def targets(results: dict[str, Any], threads: int) -> list[dict[str, Any]]:
    """Every target for every subject of ours: the value, whether it is met and, where not, by how much."""
    rows, found = results["timings"], []
    anchors = {_anchor_name(s): s for s in results["subjects"] if s["family"] == ANCHOR}
    by_pair = {(r["ours"], r["anchor"]): r for r in results["ratios"] if r["basis"] == "best vs best"}
    for ours in (s for s in results["subjects"] if s["family"] == OURS):
        name = ours["name"]
        for anchor, goal in SPEEDUP_TARGETS.items():
            pair = by_pair.get((name, anchors[anchor]["name"])) if anchor in anchors else None
            value = pair["speedup_2d"] if pair else None
            target = f"2D self-prompted >= {goal:g}x faster than {anchor}"
            if value is None:
                found.append(_target(target, name, f">= {goal:g}x", None, "x", NOT_MEASURED, "", "best vs best",
                                     "anchor not measured in this run"))
            else:
                band = pair["speedup_2d_band"]
                found.append(_target(target, name, f">= {goal:g}x", value, "x", verdict(value, goal, band, True),
                                     f"{goal / value:.2f}x short ({value:.1f}x measured)",
                                     f"best vs best: {pair['ours_variant']} t{pair['ours_threads']} vs "
                                     f"{pair['anchor_variant']} t{pair['anchor_threads']}", band=band))
        prompt = _best(results, name, "prompt", "decoder")
        found.append(_at_most("decoder per prompt, cached embedding", name, prompt and _p50(prompt, "decoder"),
                              DECODER_MS, "ms", prompt and f"{prompt['backend']} {prompt['precision']} "
                              f"t{prompt['threads']}, graph only", band=value_band(prompt, "decoder")))
        fp32 = [r for r in _ok(rows, subject=name, task="image", batch=1, threads=threads, precision="fp32")
                if r.get("fraction_of_peak")]
        best = max(fp32, key=lambda r: r["fraction_of_peak"]["measured"] or 0.0, default=None)
        value = best["fraction_of_peak"]["measured"] if best else None
        # The fraction scales with 1 / encoder time: its band is the encoder's round medians, inverted.
        times = value_band(best, "encoder") if best else None
        encoder_ms = best and _p50(best, "encoder")
        band = (round(value * encoder_ms / times[1], 4), round(value * encoder_ms / times[0], 4)) if times else None
        found.append(_target("encoder FP32 throughput >= 50% of measured peak FP32", name, ">= 0.5", value,
                             "fraction", verdict(value, ENCODER_PEAK_FRACTION, band, at_least=True),
                             "" if value is None else
                             f"{100 * (ENCODER_PEAK_FRACTION - value):.1f} points short ({100 * value:.1f}% reached)",
                             best and f"{best['backend']} fp32, {best['encoder_gflops']} GFLOP/s", band=band))
        real = [r for r in results["ct"]["real"] if r["subject"] == name and r.get("runs")]
        fastest = min(real, key=lambda r: r["total"]["p50"], default=None)
        found.append(_at_most("3D CT case (challenge protocol)", name, fastest and fastest["total"]["p50"] / 1e3,
                              CT_SECONDS, "s", fastest and f"{fastest['backend']} {fastest['precision']}, measured "
                              f"end to end on {results['ct']['case']['shape']}", band=value_band(fastest, scale=1e-3)))
        int8 = [v for v in ours["variants"] if v["precision"] == "int8"]
        smallest = min(int8, key=lambda v: v["mb"], default=None)
        found.append(_at_most("INT8 graphs on disk", name, smallest and smallest["mb"], INT8_MB, "MB",
                              smallest and f"{smallest['format']} encoder + decoder", smallest and smallest["note"]))
        found.append(_int8_dice(results, name))
    return found


def _int8_dice(results: dict[str, Any], name: str) -> dict[str, Any]:
    accuracy = results["accuracy"].get(name)
    target = "INT8 Dice lost versus FP32"
    rows = [r for r in (accuracy or {}).get("variants", []) if r["precision"] == "int8"]
    if not rows:
        return _target(target, name, f"<= {INT8_DICE_POINTS:g} points", None, "points", NOT_MEASURED, "", "",
                       "no INT8 variant measured")
    best = min(rows, key=lambda r: max(r["dice_points_lost"].values()))
    lost = max(best["dice_points_lost"].values())
    agreement = min(best["agreement_dice"].values())
    note = f"mask agreement with FP32 {agreement:.3f}; weights: {accuracy['weights']}"
    return _at_most(target, name, lost, INT8_DICE_POINTS, "points", f"{best['backend']} int8 vs {accuracy['reference']}",
                    note)


def derive(results: dict[str, Any]) -> dict[str, Any]:
    """Fill in the interactive scenario, the ratios and the targets of a run's measured results."""
    settings = results["settings"]
    threads = max(settings["threads"])
    results["interactive"] = interactive(results["timings"], settings["prompts"])
    results["ratios"] = ratios(results, threads)
    results["targets"] = targets(results, threads)
    return results
