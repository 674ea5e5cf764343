"""A run's evaluation reports as independent jobs (a model file or a bundle on one image set), run one after the
other or spread over worker processes: each job evaluates one image at a time on ``threads`` threads, so on a
2-core machine two single-thread workers finish the reports in about half the time."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from edge_medsam.data.layouts import Sample


@dataclass(frozen=True)
class EvalJob:
    """One report: a teacher/student model file, or a bundle at one precision, on one image set, written to
    ``out``."""

    out: Path
    samples: tuple[Sample, ...]
    prompts: tuple[str, ...]
    max_objects: int | None
    threads: int | None
    model: str | None = None
    bundle: str | None = None
    precision: str = "fp32"
    backend: str = "onnxruntime"


def run_job(job: EvalJob, progress: bool = True) -> float:
    """Evaluate and write one report; returns how many seconds it took."""
    from edge_medsam.evaluation.runner import evaluate

    started = time.perf_counter()
    if job.model is not None:
        from edge_medsam.engine.threads import torch_threads
        from edge_medsam.evaluation.torch_segmenters import segmenter_for
        from edge_medsam.models.files import load_model

        with torch_threads(job.threads):
            report = evaluate(segmenter_for(load_model(job.model)), job.samples, prompts=job.prompts,
                              max_objects=job.max_objects, progress=progress)
    else:
        from edge_medsam.runtime import Predictor
        from edge_medsam.runtime.segmenter import RuntimeSegmenter

        predictor = Predictor.from_bundle(job.bundle, backend=job.backend, precision=job.precision,
                                          threads=job.threads)
        report = evaluate(RuntimeSegmenter(predictor), job.samples, prompts=job.prompts,
                          max_objects=job.max_objects, progress=progress)
    report.write(job.out)
    return time.perf_counter() - started


def run_jobs(jobs: Sequence[EvalJob], workers: int = 1, log: Callable[[str], None] = print) -> None:
    """Run every job: in order in this process (``workers`` 1, with progress bars), or over ``workers`` spawned
    processes (a line per finished report). Reports do not depend on how they were run."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            log(f"evaluated {job.out.name} in {run_job(job):.0f} s")
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_job, job, False): job for job in jobs}
        for future in as_completed(futures):
            log(f"evaluated {futures[future].out.name} in {future.result():.0f} s (in a worker process)")
