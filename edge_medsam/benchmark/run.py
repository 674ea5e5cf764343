"""One benchmark run, start to end: machine and peak FP32, subjects (export), MACs, interleaved 2D timings,
the 3D CT case, cold starts, accuracy per precision, ratios and targets, and the written results."""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edge_medsam.benchmark import coldstart, compare, report
from edge_medsam.benchmark.accuracy import measure_accuracy, measure_box_accuracy
from edge_medsam.benchmark.engines import Loaded, Skipped, graph_files, load_graph
from edge_medsam.benchmark.machine import describe_machine, load_average, machine_slug, measured_peak, theoretical_peak
from edge_medsam.benchmark.macs import count_macs
from edge_medsam.benchmark.scenarios import (
    Pipeline,
    TestImage,
    Variant,
    ct_case,
    ct_test_image,
    encoder_batch_call,
    image_call,
    project_ct_case,
    prompt_call,
    run_ct_case,
    run_volume_case,
)
from edge_medsam.benchmark.settings import GRAPH_PRECISIONS, BenchSettings
from edge_medsam.benchmark.subjects import (
    ANCHOR,
    OURS,
    Subject,
    anchor_subject,
    batch_is_dynamic,
    bundle_subject,
    student_subject,
    synthetic_probes,
    zero_outputs,
)
from edge_medsam.benchmark.timing import Task, run_interleaved, summarize, summarize_samples
from edge_medsam.engine.logs import Steps
from edge_medsam.errors import InputError
from edge_medsam.models.reference import REFERENCE_NAMES

Log = Callable[[str], None]


def _log(line: str) -> None:
    print(f"bench: {line}", file=sys.stderr, flush=True)


def _first_line(err: BaseException) -> str:
    return (f"{type(err).__name__}: {err}".strip().splitlines() or [type(err).__name__])[0][:300]


def build_subjects(settings: BenchSettings, work: Path, log: Log) -> tuple[list[Subject], list[dict[str, Any]]]:
    """Open or export every subject; an anchor that fails to build is reported, not fatal."""
    anchors = list(REFERENCE_NAMES) if settings.anchors is None else settings.anchors
    unknown = [name for name in anchors if name not in REFERENCE_NAMES]
    if unknown:  # before any export: a typo must not cost a whole run
        raise InputError(f"unknown anchors {unknown}", fix=f"use some of {', '.join(REFERENCE_NAMES)}, or none")
    subjects, failed = [], []
    for path in settings.bundles:
        subjects.append(bundle_subject(path))
    for path in settings.compare_bundles:
        subject = bundle_subject(path)
        subject.family, subject.name = ANCHOR, f"{subject.name} (compared bundle)"
        subjects.append(subject)
    graph_precisions = tuple(p for p in settings.precisions if p in GRAPH_PRECISIONS)
    sizes: list[int | None] = list(settings.sizes) or [None]
    jobs = [("preset", p, s) for p in settings.presets for s in sizes]
    jobs += [("model", m, s) for m in settings.model_files for s in ([None] if not settings.sizes else sizes)]
    for kind, what, size in jobs:
        folder = work / f"{Path(str(what)).stem}-{size or 'native'}"
        log(f"exporting {kind} {what} (size {size or 'native'}) into {folder}")
        subjects.append(student_subject(folder, preset=what if kind == "preset" else None,
                                        model_file=Path(what) if kind == "model" else None, size=size,
                                        precisions=graph_precisions, calib_count=settings.calib_images,
                                        eval_count=max(2, settings.calib_images // 4), seed=settings.seed,
                                        log=lambda line: log(line.removeprefix("export: "))))
    for name in anchors:
        try:
            subjects.append(anchor_subject(name, work / f"anchor-{name}", precisions=graph_precisions,
                                           calib_count=settings.calib_images, seed=settings.seed, log=log))
        except Exception as err:  # the comparison goes on without it; the results say why
            log(f"anchor {name} failed to build: {_first_line(err)}")
            failed.append({"name": name, "reason": _first_line(err)})
    names = [s.name for s in subjects]
    for subject in subjects:  # two bundles of one model name stay apart in the results
        if names.count(subject.name) > 1:
            subject.name = f"{subject.name} [{subject.bundle.name if subject.bundle else subject.family}]"
    return subjects, failed


def subject_macs(subject: Subject) -> dict[str, Any]:
    """MACs of the encoder (one image) and of the decoder (one box) from the FP32 ONNX graphs."""
    pair = subject.reference_pair
    feed = subject.encoder_inputs(np.zeros((1, 3, subject.size, subject.size), np.float32))
    box = np.array([[subject.size * 0.25, subject.size * 0.25, subject.size * 0.75, subject.size * 0.75]], np.float32)
    decoder_feed = subject.prompter.feed(zero_outputs(pair.encoder), box)  # shapes are all MACs depend on
    return {"encoder": count_macs(pair.encoder, feed), "decoder_per_box": count_macs(pair.decoder, decoder_feed)}


def load_variants(subjects: list[Subject], settings: BenchSettings, log: Log) -> tuple[list[Variant], list[dict]]:
    """Every (subject, backend, precision, threads) that loads here, and the others with the reason."""
    variants, skipped = [], []
    combos = [(s, b, p, t) for s in subjects for b in settings.backends for p in settings.precisions
              for t in (settings.threads if s.family == OURS else settings.anchor_threads)]
    for subject, backend, precision, threads in tqdm(combos, desc="loading", unit="graph pair",
                                                     disable=not settings.progress, leave=False):
        key = {"subject": subject.name, "family": subject.family, "backend": backend, "precision": precision,
               "threads": threads}
        try:
            encoder = load_graph(subject, "encoder", backend, precision, threads)
            decoder = load_graph(subject, "decoder", backend, precision, threads)
        except Skipped as why:
            skipped.append({**key, "status": "skipped", "reason": str(why)})
            continue
        except Exception as err:  # a backend that cannot load a graph it should run is a finding
            log(f"{subject.name} {backend} {precision}: load failed: {_first_line(err)}")
            skipped.append({**key, "status": "failed", "reason": _first_line(err)})
            continue
        variants.append(Variant(subject, backend, precision, threads, encoder, decoder))
    return variants, skipped


def timing_tasks(variants: list[Variant], image: TestImage, settings: BenchSettings) -> tuple[list[Task], list[dict]]:
    """The 2D tasks of every variant (image, prompt per batch, encoder per batch > 1) and the impossible ones."""
    tasks, rows = [], []
    for variant in variants:
        pipeline = Pipeline(variant)
        plan = settings.anchor_plan if variant.subject.family == ANCHOR else None
        tasks.append(Task(f"{variant.id}|image|b1", image_call(pipeline, image), plan))
        dynamic_encoder = batch_is_dynamic(variant.subject.reference_pair.encoder)
        for batch in settings.batches:
            if batch > 1 and not variant.subject.prompter.objects_dynamic:
                rows.append(_row(variant, "prompt", batch) | {"status": "skipped",
                                                              "reason": "decoder exported for a fixed object count"})
            else:
                tasks.append(Task(f"{variant.id}|prompt|b{batch}", prompt_call(pipeline, image, batch), plan))
            if batch > 1 and dynamic_encoder:
                tasks.append(Task(f"{variant.id}|encoder|b{batch}", encoder_batch_call(pipeline, image, batch), plan))
            elif batch > 1:
                rows.append(_row(variant, "encoder", batch) | {
                    "status": "skipped", "reason": "encoder exported for batch 1 (one image per call)"})
    return tasks, rows


def _row(variant: Variant, task: str, batch: int) -> dict[str, Any]:
    return {"subject": variant.subject.name, "family": variant.subject.family, "backend": variant.backend,
            "precision": variant.precision, "threads": variant.threads, "task": task, "batch": batch,
            "computes_in": {g: getattr(variant, g).details.get("computes_in") for g in ("encoder", "decoder")},
            "details": {"encoder": variant.encoder.details, "decoder": variant.decoder.details}}


def timing_rows(variants: list[Variant], samples: dict[str, Any], macs: dict[str, Any],
                peaks: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per timed task: statistics, throughput, size on disk and the encoder's fraction of peak FP32."""
    rows = []
    for variant in variants:
        for task_id, record in samples.items():
            if not task_id.startswith(variant.id + "|"):
                continue
            _, task, batch = task_id.rsplit("|", 2)
            row = _row(variant, task, int(batch[1:])) | summarize_samples(record, int(batch[1:]))
            row["status"] = "failed" if "error" in row else "ok"
            if "error" in row:
                row["reason"] = row.pop("error")
            fmt = "openvino" if variant.backend == "openvino" else "onnx"
            graphs = graph_files(variant.precision)
            pair = variant.subject.variants.get((fmt, graphs)) or variant.subject.variants.get(("onnx", graphs))
            row["size_mb"] = round(pair.bytes / 1e6, 3) if pair and variant.backend != "pytorch" else None
            encoder = row.get("stages", {}).get("encoder", {}).get("p50")
            subject_macs = macs.get(variant.subject.name)
            if encoder and subject_macs and task != "prompt":
                achieved = 2.0 * subject_macs["encoder"]["macs"] * int(batch[1:]) / (encoder / 1e3) / 1e9
                peak = peaks.get(variant.threads, {})
                row["encoder_gflops"] = round(achieved, 2)
                row["fraction_of_peak"] = {k: round(achieved / v, 4) if v else None for k, v in peak.items()}
            rows.append(row)
    return rows


def _released(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    raise RuntimeError("this graph was released after the 2D timings")


def ct_anchor_variants(variants: list[Variant], settings: BenchSettings) -> list[Variant]:
    """The anchors' variants the 3D case measures end to end: FP32 on the 3D backends at their most threads."""
    spec = settings.ct
    top = {v.subject.name: max(w.threads for w in variants if w.subject is v.subject) for v in variants}
    return [v for v in variants if v.subject.family == ANCHOR and v.subject.info.get("reference") in spec.anchors
            and v.threads == top[v.subject.name] and v.backend in spec.backends and v.precision == "fp32"]


def release_anchor_graphs(variants: list[Variant], keep: list[Variant] = ()) -> None:
    """Drop the anchors' loaded graphs once the 2D timings and the accuracy check are done, but those of ``keep``
    (measured in the 3D case): SAM ViT-B @1024 alone keeps gigabytes in its PyTorch, ONNX Runtime and OpenVINO sessions, and with
    every variant still loaded the full run was killed for memory (24 GB) in the 3D case."""
    for variant in variants:
        if variant.subject.family != OURS and not any(variant is k for k in keep):
            variant.encoder = Loaded(_released, variant.encoder.details)
            variant.decoder = Loaded(_released, variant.decoder.details)
    gc.collect()


def ct_results(variants: list[Variant], rows: list[dict[str, Any]], settings: BenchSettings, log: Log) -> dict[str, Any]:
    """The 3D case: its protocol counts, a projection for every variant, real runs for ours."""
    spec = settings.ct
    log(f"3D case: synthetic CT {spec.slices} x {spec.size} x {spec.size}, {spec.boxes} boxes")
    case = ct_case(spec.slices, spec.size, spec.boxes, settings.seed)
    counts = case.counts()
    by_key = {(r["subject"], r["backend"], r["precision"], r["threads"], r["task"], r["batch"]): r
              for r in rows if r.get("status") == "ok"}
    projected = []
    for variant in variants:
        base = (variant.subject.name, variant.backend, variant.precision, variant.threads)
        image, prompt = by_key.get((*base, "image", 1)), by_key.get((*base, "prompt", 1))
        if (variant.subject.family == OURS and variant.threads != settings.max_threads) or not (image and prompt):
            continue
        stages = {name: {k: v["p50"] for k, v in r["stages"].items()} for name, r in (("image", image),
                                                                                       ("prompt", prompt))}
        projected.append({"subject": variant.subject.name, "family": variant.subject.family,
                          "backend": variant.backend, "precision": variant.precision, "threads": variant.threads,
                          "projected_ms": round(project_ct_case(counts, stages["image"], stages["prompt"]), 1),
                          "baseline_projected_ms": round(project_ct_case(
                              {**counts, "encoder_calls": counts["baseline_encoder_calls"]}, stages["image"],
                              stages["prompt"]), 1)})
    real = []
    ours = [v for v in variants if v.subject.family == OURS and v.threads == settings.max_threads
            and v.backend in spec.backends and v.precision in spec.precisions]
    anchors = ct_anchor_variants(variants, settings)
    order = [v for _ in range(spec.runs) for v in ours] + anchors
    runs: dict[str, list[dict[str, Any]]] = {}
    for variant in tqdm(order, desc="3D case", unit="run", disable=not settings.progress, leave=False):
        try:
            run = run_volume_case(variant, case) if variant.subject.family == OURS else run_ct_case(Pipeline(variant),
                                                                                                   case)
            run.pop("labels", None)
            runs.setdefault(variant.id, []).append(run)
        except Exception as err:  # e.g. a backend failing on a shape only the 3D loop uses
            runs.setdefault(variant.id, []).append({"error": _first_line(err)})
    for variant in ours + anchors:
        done = [r for r in runs.get(variant.id, []) if "error" not in r]
        entry = {"subject": variant.subject.name, "family": variant.subject.family, "backend": variant.backend,
                 "precision": variant.precision, "threads": variant.threads, "runs": len(done),
                 "path": "VolumeSegmenter" if variant.subject.family == OURS else "benchmark loop, same rule"}
        if done:
            entry |= {"total": summarize([r["total_ms"] for r in done]),
                      "stages_ms": {k: float(np.median([r["stages_ms"].get(k, 0.0) for r in done]))
                                    for k in done[0]["stages_ms"]},
                      "encoder_calls": done[0]["encoder_calls"], "decoder_calls": done[0]["decoder_calls"]}
        else:
            entry |= {"status": "failed", "reason": runs[variant.id][0]["error"]}
        real.append(entry)
    return {"case": counts | {"shape": [spec.slices, spec.size, spec.size], "objects": case.names},
            "projected": projected, "real": real}


def coldstart_results(variants: list[Variant], image: TestImage, settings: BenchSettings, work: Path) -> list[dict]:
    """New process → first mask for ours (runtime Predictor) and the anchors (their graphs), ORT and OpenVINO."""
    pixels = work / "coldstart-slice.npy"
    np.save(pixels, image.pixels)
    jobs = []
    for variant in variants:
        family_threads = settings.threads if variant.subject.family == OURS else settings.anchor_threads
        if (variant.backend in ("onnxruntime", "openvino") and variant.precision in settings.coldstart_precisions
                and variant.threads == max(family_threads)):
            spec = coldstart.spec_for(variant.subject, variant.backend, variant.precision, variant.threads, pixels,
                                      image.boxes[0], work)
            jobs.append((variant, spec, settings.coldstart_runs if variant.subject.family == OURS else 1))
    results = []
    for variant, spec, count in tqdm(jobs, desc="cold starts", unit="variant", disable=not settings.progress,
                                     leave=False):
        launches = [coldstart.launch(spec, work) for _ in range(count)]
        ok = [r for r in launches if r["status"] == "ok"]
        entry = {"subject": variant.subject.name, "family": variant.subject.family, "backend": variant.backend,
                 "precision": variant.precision, "threads": variant.threads, "path": spec["kind"],
                 "launches": launches}
        if ok:
            warm = ok[1:] or ok
            entry |= {"status": "ok", "first_launch_ms": ok[0]["wall_ms"],
                      "wall_ms": float(np.median([r["wall_ms"] for r in warm])),
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in ok)}
        else:
            entry |= {"status": "failed", "reason": launches[0]["reason"]}
        results.append(entry)
    return results


def accuracy_results(variants: list[Variant], settings: BenchSettings, log: Log) -> dict[str, Any]:
    """Dice per precision against FP32 for every subject (at its largest thread count): ours with boxes and the
    self-prompt, the anchors with boxes."""
    found = {}
    for subject in {v.subject.name: v.subject for v in variants}.values():
        top = max(v.threads for v in variants if v.subject is subject)
        mine = [v for v in variants if v.subject is subject and v.threads == top]
        # PyTorch is the reference only with the model's own weights (a bundle alone ships none).
        own_weights = not subject.torch_note
        reference = next((v for v in mine if v.backend == "pytorch" and own_weights), None) or next(
            (v for v in mine if v.backend == "onnxruntime" and v.precision == "fp32"), None)
        if reference is None:
            continue
        log(f"accuracy of {subject.name} on {settings.accuracy_images} held-out synthetic images")
        probes = synthetic_probes(settings.accuracy_images, subject.size, 1000 + settings.seed, subject.preprocess)
        others = [v for v in mine if v is not reference and (own_weights or v.backend != "pytorch")]
        measure = measure_accuracy if subject.family == OURS else measure_box_accuracy
        result = measure(reference, others, probes)
        result["weights"] = "trained" if subject.trained else "random (agreement with FP32 is the figure)"
        found[subject.name] = result
    return found


def run_benchmark(settings: BenchSettings, log: Log = _log) -> Path:
    """Run everything ``settings`` asks for and write the results; returns the results folder."""
    started = time.perf_counter()
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    phase = Steps(log)
    machine = describe_machine(settings.note)
    work = settings.work or Path(tempfile.gettempdir()) / "edge-medsam-bench"
    work.mkdir(parents=True, exist_ok=True)
    threads = sorted(set(settings.threads) | set(settings.anchor_threads))
    log(f"machine: {machine['cpu']}, {machine['usable_cores']} cores, load {machine['load_average_start']}")
    before = phase("peak FP32 GEMM", lambda: {t: measured_peak(t, side=settings.gemm_side) for t in threads})
    machine["peak_fp32"] = {"measured_before": before, "theoretical": {t: theoretical_peak(machine, t) for t in threads}}
    peaks = {t: {"measured": before[t]["gflops"], "theoretical": machine["peak_fp32"]["theoretical"][t]["gflops"]}
             for t in threads}
    subjects, failed = phase("subjects (open bundles, export models)", lambda: build_subjects(settings, work, log))
    image = ct_test_image(512, settings.seed)
    macs = phase("MACs", lambda: {s.name: subject_macs(s) for s in subjects})
    variants, skipped = phase("loading graphs", lambda: load_variants(subjects, settings, log))
    tasks, impossible = timing_tasks(variants, image, settings)
    log(f"timing {len(tasks)} tasks of {len(variants)} loaded variants, interleaved in {settings.plan.rounds} rounds")
    samples = phase("2D timings", lambda: run_interleaved(tasks, settings.plan, progress=settings.progress))
    rows = timing_rows(variants, samples, macs, peaks) + impossible + skipped
    tasks.clear()  # their closures hold every loaded graph
    accuracy = phase("accuracy", lambda: accuracy_results(variants, settings, log))
    release_anchor_graphs(variants, keep=ct_anchor_variants(variants, settings))
    ct = phase("3D CT case", lambda: ct_results(variants, rows, settings, log))
    cold = phase("cold starts", lambda: coldstart_results(variants, image, settings, work))
    machine["peak_fp32"]["measured_after"] = {t: measured_peak(t, side=settings.gemm_side) for t in threads}
    machine["load_average_end"] = load_average()
    results = {
        "schema": 1, "mode": settings.mode, "started": stamp, "wall_s": None, "phases_s": phase.seconds,
        "machine": machine, "settings": settings.to_dict(),
        "subjects": [report.subject_entry(s, macs[s.name]) for s in subjects], "subjects_failed": failed,
        "timings": rows, "ct": ct, "coldstart": cold, "accuracy": accuracy,
    }
    compare.derive(results)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    folder = report.write_results(results, settings.out / machine_slug(machine), plots=settings.plots)
    log(f"results written to {folder} in {results['wall_s']:.0f} s")
    return folder
