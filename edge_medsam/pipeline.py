"""`edge-medsam pipeline RECIPE`: data → teacher → distilled student → bundle → evaluation → quick benchmark →
report, in `runs/<name>/`.

Each stage writes into its own folder and records, in ``runs/<name>/pipeline.json``, the hash of everything it
depends on (its recipe sections and the hashes of the stages before it). A stage whose hash is unchanged and
whose outputs exist is skipped; ``--from STAGE`` forces that stage and the ones after it; a stage that was
interrupted resumes from its last checkpoint when its hash is unchanged, and restarts clean when it changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.io.files import atomic_write_text
from edge_medsam.recipes import DEFAULT_BENCHMARK_MODE, Recipe, load_recipe


@dataclass
class StageContext:
    """What a stage sees: the recipe, its folder, the outputs of earlier stages, and whether to resume."""

    recipe: Recipe
    run_dir: Path
    stage_dir: Path
    outputs: dict[str, dict[str, Any]]
    resume: bool


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: its name, the recipe sections it depends on, and the function that runs it."""

    name: str
    sections: tuple[str, ...]
    run: Callable[[StageContext], dict[str, Any]]


def _stage_data(ctx: StageContext) -> dict[str, Any]:
    from edge_medsam.data.synth import write_corpus

    data = ctx.recipe.data
    real = None
    if data.real:
        from edge_medsam.data.real import write_real

        real = str(write_real(ctx.stage_dir / "real").parent)
    if data.root:
        return {"train_root": str(Path(data.root).resolve()), "shift_root": None, "real_root": real}
    synth = data.synth
    train = write_corpus(ctx.stage_dir / "corpus", per_modality=synth.per_modality, size=synth.size, seed=synth.seed,
                         modalities=synth.modalities, volumes=synth.volumes)
    shift = None
    if synth.style_shift_per_modality:
        shift = write_corpus(ctx.stage_dir / "style_shift", per_modality=synth.style_shift_per_modality,
                             size=synth.size, seed=synth.seed + 1_000_003, style_shift=True,
                             modalities=synth.modalities, volumes=0)
    return {"train_root": str(train.parent), "shift_root": str(shift.parent) if shift else None, "real_root": real}


def _splits(ctx: StageContext):
    from edge_medsam.training.jobs import data_splits

    return data_splits(ctx.outputs["data"]["train_root"], ctx.recipe.data)


def _stage_teacher(ctx: StageContext) -> dict[str, Any]:
    from edge_medsam.runtime.manifest import sha256_file
    from edge_medsam.training.jobs import train_teacher

    if ctx.recipe.teacher.family == "none":  # the student learns from ground truth alone (an ablation)
        return {"model": None}
    train, _ = _splits(ctx)
    path = train_teacher(ctx.recipe.teacher, train, ctx.stage_dir, seed=ctx.recipe.seed, resume=ctx.resume)
    return {"model": str(path), "sha256": sha256_file(path), "pretrained": ctx.recipe.teacher.pretrained}


def _stage_distill(ctx: StageContext) -> dict[str, Any]:
    from edge_medsam.training.jobs import distill_student

    train, _ = _splits(ctx)
    real_root = ctx.outputs["data"].get("real_root")
    if real_root and ctx.outputs["teacher"]["model"]:  # real images without masks, labelled by the teacher, join in
        from edge_medsam.data.real import unlabelled_samples
        from edge_medsam.models.files import load_model
        from edge_medsam.training.pseudo_labels import pseudo_label

        teacher = load_model(ctx.outputs["teacher"]["model"])
        labelled = pseudo_label(unlabelled_samples(real_root), teacher, ctx.stage_dir / "teacher_labels",
                                cache=ctx.recipe.teacher.cache_embeddings)
        train = train + labelled * ctx.recipe.data.real_repeat
    path = distill_student(ctx.recipe.student, ctx.recipe.distill, ctx.outputs["teacher"]["model"], train,
                           ctx.stage_dir, seed=ctx.recipe.seed, resume=ctx.resume,
                           cache_embeddings=ctx.recipe.teacher.cache_embeddings)
    return {"model": str(path)}


def _stage_export(ctx: StageContext) -> dict[str, Any]:
    from edge_medsam.compress.pipeline import ExportSettings, export_student_bundle
    from edge_medsam.compress.probes import probes_from_samples
    from edge_medsam.models.files import load_model
    from edge_medsam.preprocess import PreprocessConfig
    from edge_medsam.runtime.manifest import sha256_file

    settings = ExportSettings.from_dict(ctx.recipe.export)
    train, test = _splits(ctx)
    student_path = Path(ctx.outputs["distill"]["model"])
    student = load_model(student_path)
    preprocess = PreprocessConfig(size=student.config.image_size)
    # Calibration from training images, parity and per-precision Dice on held-out ones.
    calib = probes_from_samples(train, settings.calib_count, preprocess, settings.seed)
    held_out = probes_from_samples(test or train, settings.eval_count, preprocess, settings.seed + 1)
    version = ctx.recipe.section_hash("seed", "data", "teacher", "student", "distill", "export")
    lineage = {"recipe": ctx.recipe.name, "recipe_hash": version, "model_file": student_path.name,
               "model_sha256": sha256_file(student_path), "teacher": ctx.outputs["teacher"]["model"],
               "teacher_sha256": ctx.outputs["teacher"].get("sha256"),
               "teacher_pretrained": ctx.recipe.teacher.pretrained,
               "trained_on": len(train), "real_unlabelled_images": bool(ctx.outputs["data"].get("real_root"))}
    report = export_student_bundle(student, ctx.stage_dir / "bundle", calib, held_out, settings,
                                   name=f"{ctx.recipe.name}-student", version=version, preprocess=preprocess,
                                   lineage=lineage, data={"calib": "training split", "held_out": "test split"},
                                   log=lambda line: print(line, flush=True))
    return {"bundle": str(report.bundle)}


def _evaluation_sets(ctx: StageContext) -> dict[str, list]:
    from edge_medsam.data.layouts import open_dataset

    _, test = _splits(ctx)
    sets = {"held_out": test}
    shift_root = ctx.outputs["data"].get("shift_root")
    if shift_root:
        sets["style_shift"] = list(open_dataset(shift_root).samples)
    limit = ctx.recipe.evaluate.limit
    return {name: samples[:limit] if limit else samples for name, samples in sets.items()}


def _stage_evaluate(ctx: StageContext) -> dict[str, Any]:
    from edge_medsam.evaluation.jobs import EvalJob, run_jobs

    sets = _evaluation_sets(ctx)
    cfg = ctx.recipe.evaluate
    jobs = []
    for set_name, samples in sets.items():
        common = {"samples": tuple(samples), "max_objects": cfg.max_objects, "threads": cfg.threads}
        for stage, name, prompts in (("teacher", "teacher", cfg.prompts if cfg.teacher_prompts is None
                                      else cfg.teacher_prompts), ("distill", "student", cfg.prompts)):
            if not prompts or not ctx.outputs[stage]["model"]:
                continue
            jobs.append(EvalJob(ctx.stage_dir / f"{name}_{set_name}", prompts=tuple(prompts),
                                model=ctx.outputs[stage]["model"], **common))
        bundle = ctx.outputs.get("export", {}).get("bundle")
        for precision in cfg.bundle_precisions if bundle else []:
            jobs.append(EvalJob(ctx.stage_dir / f"bundle_{precision}_{set_name}", prompts=tuple(cfg.bundle_prompts),
                                bundle=bundle, precision=precision, backend=cfg.bundle_backend, **common))
    jobs.sort(key=lambda job: job.bundle is not None)  # the models' reports take longest: they start first
    run_jobs(jobs, cfg.workers, log=lambda line: print(line, flush=True))
    outputs = {"reports": {job.out.name: str(job.out / "metrics.json") for job in jobs}}
    real_root = ctx.outputs["data"].get("real_root")
    if real_root and cfg.real_scans:
        outputs["real_scans"] = str(_real_scans(ctx, real_root))
    return outputs


def _bundle_label(bundle: str, backend: str, precision: str) -> str:
    """"bundle int8 (encoder int8, decoder int8_mixed)": what the accuracy control kept of each INT8 graph, so an
    FP32 fallback is never reported as INT8."""
    if precision != "int8":
        return f"bundle {precision}"
    manifest = json.loads((Path(bundle) / "manifest.json").read_text())
    chosen = manifest.get("metrics", {}).get("quantization", {}).get("onnx" if backend == "onnxruntime" else backend, {})
    graphs = ", ".join(f"{graph} {chosen[graph].get('chosen', '?')}" for graph in ("encoder", "decoder") if graph in chosen)
    return f"bundle int8 ({graphs})" if graphs else "bundle int8"


def _real_scans(ctx: StageContext, real_root: str) -> Path:
    """Teacher, student and bundle (each evaluated precision) on the real labelled scans, beside the baselines."""
    from edge_medsam.data.layouts import open_dataset
    from edge_medsam.engine.threads import torch_threads
    from edge_medsam.evaluation.real_scans import evaluate_real_scans
    from edge_medsam.evaluation.torch_segmenters import segmenter_for
    from edge_medsam.models.files import load_model
    from edge_medsam.runtime import Predictor
    from edge_medsam.runtime.segmenter import RuntimeSegmenter

    cfg = ctx.recipe.evaluate
    samples = open_dataset(real_root, include_volumes=True, foreground_only=True).samples
    models = {"teacher": ctx.outputs["teacher"]["model"], "student": ctx.outputs["distill"]["model"]}
    segmenters = [segmenter_for(load_model(path), name=name) for name, path in models.items() if path]
    bundle = ctx.outputs.get("export", {}).get("bundle")
    for precision in cfg.bundle_precisions if bundle else []:
        predictor = Predictor.from_bundle(bundle, backend=cfg.bundle_backend, precision=precision, threads=cfg.threads)
        segmenters.append(RuntimeSegmenter(predictor, name=_bundle_label(bundle, cfg.bundle_backend, precision)))
    with torch_threads(cfg.threads):
        report = evaluate_real_scans(segmenters, samples, log=lambda line: print(line, flush=True))
    return report.write(ctx.stage_dir / "real_scans")


def _stage_benchmark(ctx: StageContext) -> dict[str, Any]:
    """The benchmark harness (``edge_medsam.benchmark``) on the run's bundle; ``benchmark: {mode: none}``
    skips it. Other keys of the section are the harness's settings (e.g. anchors, threads, precisions)."""
    from edge_medsam.benchmark.run import run_benchmark
    from edge_medsam.benchmark.settings import preset_settings

    options = dict(ctx.recipe.benchmark)
    mode = options.pop("mode", DEFAULT_BENCHMARK_MODE)
    if mode == "none":
        return {"results": None}
    options.setdefault("presets", [])
    options.setdefault("note", f"edge-medsam pipeline run {ctx.recipe.name}")
    settings = preset_settings(mode, bundles=[Path(ctx.outputs["export"]["bundle"])],
                                                   out=ctx.stage_dir, work=ctx.stage_dir / "work", **options)
    folder = run_benchmark(settings, log=lambda line: print(line, flush=True))
    return {"results": str(folder)}


def _stage_report(ctx: StageContext) -> dict[str, Any]:
    from edge_medsam.reporting import write_report

    path = write_report(ctx.recipe, ctx.outputs, ctx.stage_dir.parent / "report.md")
    return {"report": str(path)}


STAGES: tuple[Stage, ...] = (
    Stage("data", ("data",), _stage_data),
    Stage("teacher", ("seed", "data", "teacher"), _stage_teacher),
    Stage("distill", ("seed", "data", "student", "distill"), _stage_distill),
    Stage("export", ("export",), _stage_export),
    Stage("evaluate", ("evaluate",), _stage_evaluate),
    Stage("benchmark", ("benchmark",), _stage_benchmark),
    Stage("report", (), _stage_report),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)


def _state_path(run_dir: Path) -> Path:
    return run_dir / "pipeline.json"


def _read_state(run_dir: Path) -> dict[str, Any]:
    path = _state_path(run_dir)
    return json.loads(path.read_text()) if path.exists() else {}


def run_pipeline(recipe_path: str | Path, runs_dir: str | Path = "runs", from_stage: str | None = None,
                 log: Callable[[str], None] = print, until: str | None = None) -> dict[str, Any]:
    """Run every stage that is out of date (up to ``until``, included); returns the recorded state."""
    recipe = load_recipe(recipe_path)
    for name in (from_stage, until):
        if name is not None and name not in STAGE_NAMES:
            raise EdgeMedSAMError(f"unknown stage {name!r}", fix=f"use one of {', '.join(STAGE_NAMES)}")
    run_dir = Path(runs_dir) / recipe.name
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "recipe.json", json.dumps(recipe.to_dict(), indent=2))
    state = _read_state(run_dir)
    outputs: dict[str, dict[str, Any]] = {}
    upstream = ""
    forced = False
    for stage in STAGES:
        forced = forced or stage.name == from_stage
        digest = hashlib.sha256((upstream + recipe.section_hash(*stage.sections) + stage.name).encode()).hexdigest()[:16]
        upstream = digest
        record = state.get(stage.name, {})
        stage_dir = run_dir / stage.name
        if not forced and record.get("hash") == digest and record.get("done"):
            log(f"[{stage.name}] up to date, skipped")
            outputs[stage.name] = record["outputs"]
            if stage.name == until:
                break
            continue
        resume = not forced and record.get("hash") == digest and stage_dir.exists()
        if not resume and stage_dir.exists():
            shutil.rmtree(stage_dir)
        stage_dir.mkdir(parents=True, exist_ok=True)
        state[stage.name] = {"hash": digest, "done": False}
        atomic_write_text(_state_path(run_dir), json.dumps(state, indent=2))
        log(f"[{stage.name}] {'resuming' if resume else 'running'}")
        started = time.perf_counter()
        result = stage.run(StageContext(recipe, run_dir, stage_dir, outputs, resume))
        seconds = round(time.perf_counter() - started, 1)
        outputs[stage.name] = result
        state[stage.name] = {"hash": digest, "done": True, "outputs": result, "seconds": seconds}
        atomic_write_text(_state_path(run_dir), json.dumps(state, indent=2))
        log(f"[{stage.name}] done in {seconds} s")
        if stage.name == until:
            break
    return state
