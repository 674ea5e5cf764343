"""Warm-up, then timed calls of many tasks interleaved round by round, so a noisy machine hurts them alike.

Each task is warmed up (its first call, which holds lazy allocation and kernel selection, is kept apart), its
latency estimated, and its number of timed calls chosen to fit a time budget (at least ``min_samples``). The
calls are then spread over ``rounds`` rounds; in every round the tasks run in a new random order. A task may
report the milliseconds of its stages (preprocess, encoder, ...) next to the total the harness measures.
Statistics: p50/p90/p99, mean, std, and the median of each round with its round number: the spread of the
per-round medians ((max - min) / median) is what moves between repetitions on a shared machine, and two tasks'
medians of the same rounds give the noise band of their ratio (``edge_medsam.benchmark.compare``).
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

TaskCall = Callable[[], dict[str, float] | None]


@dataclass(frozen=True)
class TimingPlan:
    """How many calls: ``warmup`` untimed, then timed calls filling ``budget_s`` within the sample bounds."""

    warmup: int = 3
    rounds: int = 5
    min_samples: int = 3
    max_samples: int = 200
    budget_s: float = 10.0
    seed: int = 0


@dataclass
class Task:
    """One thing to time: an id (the result's key), the call, and its own plan for warm-up and sample counts
    (the rounds are the run's)."""

    id: str
    call: TaskCall
    plan: TimingPlan | None = None


@dataclass
class Samples:
    """Timed milliseconds of one task: totals, per stage, and the round each call ran in."""

    first_call_ms: float | None
    error: str | None = None
    warmup_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    stage_ms: dict[str, list[float]] = field(default_factory=dict)
    rounds: list[int] = field(default_factory=list)


def _timed(call: TaskCall) -> tuple[float, dict[str, float]]:
    start = time.perf_counter_ns()
    stages = call() or {}
    return (time.perf_counter_ns() - start) / 1e6, stages


def plan_calls(estimate_ms: float, plan: TimingPlan) -> int:
    """Timed calls for a task of about ``estimate_ms`` per call."""
    wanted = int(plan.budget_s * 1000.0 / max(estimate_ms, 1e-3))
    return max(plan.min_samples, min(plan.max_samples, wanted))


def spread_over_rounds(calls: int, rounds: int) -> list[int]:
    """Calls in each round: as even as possible; fewer calls than rounds take evenly spaced rounds."""
    if calls >= rounds:
        base, extra = divmod(calls, rounds)
        return [base + (1 if r < extra else 0) for r in range(rounds)]
    chosen = {round(r) for r in np.linspace(0, rounds - 1, calls)}
    return [1 if r in chosen else 0 for r in range(rounds)]


def run_interleaved(tasks: Sequence[Task], plan: TimingPlan, progress: bool = True) -> dict[str, Samples]:
    """Warm every task up, then run their timed calls interleaved over ``plan.rounds`` rounds."""
    samples: dict[str, Samples] = {}
    schedule: dict[str, list[int]] = {}
    for task in tqdm(tasks, desc="warm-up", unit="task", disable=not progress, leave=False):
        own = task.plan or plan
        try:
            first, _ = _timed(task.call)
            warm = [first]
            while len(warm) < own.warmup and sum(warm) < own.budget_s * 1000.0 / 4:
                warm.append(_timed(task.call)[0])
        except Exception as err:  # a backend failing on this graph is a result, not the end of the run
            samples[task.id] = Samples(first_call_ms=None, error=f"{type(err).__name__}: {err}".splitlines()[0][:300])
            schedule[task.id] = [0] * plan.rounds
            continue
        estimate = float(np.median(warm[1:])) if len(warm) > 1 else first
        samples[task.id] = Samples(first_call_ms=first, warmup_ms=warm)
        schedule[task.id] = spread_over_rounds(plan_calls(estimate, own), plan.rounds)
    rng = np.random.default_rng(plan.seed)
    total = sum(sum(s) for s in schedule.values())
    bar = tqdm(total=total, desc="timed calls", unit="call", disable=not progress, leave=False)
    was_enabled = gc.isenabled()
    try:
        for round_index in range(plan.rounds):
            gc.collect(1)  # the young generations: a full pass costs seconds once torch is loaded
            gc.disable()  # a collection inside a timed call would land on whichever task is unlucky
            for position in rng.permutation(len(tasks)):
                task = tasks[position]
                record = samples[task.id]
                for _ in range(schedule[task.id][round_index]):
                    elapsed, stages = _timed(task.call)
                    record.total_ms.append(elapsed)
                    record.rounds.append(round_index)
                    for stage, ms in stages.items():
                        record.stage_ms.setdefault(stage, []).append(ms)
                    bar.update()
            if was_enabled:
                gc.enable()
    finally:
        bar.close()
        if was_enabled:
            gc.enable()
    return samples


def summarize(values_ms: Sequence[float], rounds: Sequence[int] | None = None) -> dict[str, Any]:
    """p50/p90/p99, mean, std, min, max, count, and the spread of the per-round medians."""
    values = np.asarray(values_ms, np.float64)
    if values.size == 0:
        return {"n": 0}
    p50, p90, p99 = (float(v) for v in np.percentile(values, [50, 90, 99]))
    stats: dict[str, Any] = {"n": int(values.size), "p50": p50, "p90": p90, "p99": p99, "mean": float(values.mean()),
                             "std": float(values.std()), "min": float(values.min()), "max": float(values.max())}
    if rounds is not None:
        rounds_arr = np.asarray(rounds)
        ids = sorted(set(rounds_arr.tolist()))
        medians = [float(np.median(values[rounds_arr == r])) for r in ids]
        stats["round_ids"], stats["round_p50s"] = ids, medians
        stats["spread"] = (max(medians) - min(medians)) / float(np.median(medians)) if len(medians) > 1 else None
    return stats


def summarize_samples(record: Samples, items: int = 1) -> dict[str, Any]:
    """Statistics of a task's totals and stages, its first call, and its throughput (items per second at p50)."""
    if record.error is not None:
        return {"error": record.error}
    total = summarize(record.total_ms, record.rounds)
    p50 = total.get("p50")
    return {
        "total": total,
        "stages": {stage: summarize(ms, record.rounds) for stage, ms in record.stage_ms.items()},
        "first_call_ms": record.first_call_ms,
        "warmup_calls": len(record.warmup_ms),
        "throughput_per_s": items * 1000.0 / p50 if p50 and math.isfinite(p50) and p50 > 0 else None,
    }
