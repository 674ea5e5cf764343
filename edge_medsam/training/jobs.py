"""Training jobs behind `edge-medsam train teacher` and `edge-medsam distill`: data splits, model set-up,
one engine run per stage, and a final model file (weights + spec) for the next step."""

from __future__ import annotations

import importlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from edge_medsam.data.dataset import SegmentationDataset, collate
from edge_medsam.data.layouts import Sample, open_dataset, split_samples
from edge_medsam.engine.checkpoint import LATEST, load_checkpoint
from edge_medsam.engine.trainer import TrainConfig, Trainer
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.io.files import atomic_write_text
from edge_medsam.models.files import load_model, save_model
from edge_medsam.models.student import EdgeStudent, StudentConfig
from edge_medsam.models.student.config import preset_config
from edge_medsam.models.student.inherit import embedding_scale, inherit_sam_decoder
from edge_medsam.models.teachers import build_sam, load_teacher
from edge_medsam.preprocess import PreprocessConfig
from edge_medsam.recipes import DataSection, DistillStageSection, StudentSection, TeacherSection
from edge_medsam.training.families import TEACHER_FAMILIES
from edge_medsam.training.student_task import DistillationModel, DistillConfig, StudentDistillTask, stage_param_groups
from edge_medsam.training.teacher_task import InteractiveConfig, InteractiveTeacherTask
from edge_medsam.training.teacher_view import TeacherView


def data_splits(root: str | Path, data: DataSection) -> tuple[list[Sample], list[Sample]]:
    """(train, test) samples of a dataset folder, split by case and modality, reproducibly."""
    dataset = open_dataset(root, data.layout, data.modality)
    if not dataset.samples:
        raise EdgeMedSAMError("no usable samples", path=root, fix="check the folder layout (edge-medsam data layout)")
    if data.test_fraction <= 0:
        return list(dataset.samples), []
    train, test = split_samples(dataset.samples, (1 - data.test_fraction, data.test_fraction), seed=data.split_seed)
    return train, test


def _fit(model: torch.nn.Module, task: Any, dataset: SegmentationDataset, train: dict[str, Any], seed: int,
         out_dir: Path, resume: bool, run_config: dict[str, Any], param_groups: list | None = None) -> None:
    config = TrainConfig.from_dict({"seed": seed, **train})
    trainer = Trainer(model, task, dataset, config, out_dir, collate_fn=collate, param_groups=param_groups,
                      run_config=run_config)
    trainer.fit(resume=resume and trainer.checkpoint_path.exists())


def train_teacher(section: TeacherSection, samples: list[Sample], out_dir: str | Path, *, seed: int = 0,
                  resume: bool = False) -> Path:
    """Train (or fine-tune) a teacher of the section's family; returns ``teacher.pt``.

    Each family trains with its job in ``TEACHER_FAMILIES``. A ``pretrained`` teacher is not trained: its
    verified weights file is returned as it is.
    """
    if section.pretrained:
        from edge_medsam.models.reference.litemedsam_weights import load_pretrained

        return Path(load_pretrained(section.pretrained).weights["path"])  # verified, loads strictly
    if section.family not in TEACHER_FAMILIES:
        raise EdgeMedSAMError(f"unknown teacher family {section.family!r}",
                              fix=f"use one of {', '.join(TEACHER_FAMILIES)}")
    module, function = TEACHER_FAMILIES[section.family].split(":")
    job = getattr(importlib.import_module(module), function)
    return job(section, samples, out_dir, seed=seed, resume=resume)


def train_sam(section: TeacherSection, samples: list[Sample], out_dir: str | Path, *, seed: int = 0,
              resume: bool = False) -> Path:
    """SAM / MedSAM / SAM-Med2D (adapters) trained or fine-tuned with SAM-Med2D's interactive loop."""
    out_dir = Path(out_dir)
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the same recipe and seed start from the same weights
        if section.checkpoint:
            teacher = load_teacher(section.checkpoint, image_size=section.image_size, adapter=section.adapter)
        else:
            teacher = build_sam(section.arch, image_size=section.image_size, adapter=section.adapter,
                                spatial_prompts=section.spatial_prompts)
    if section.train_all:
        teacher.requires_grad_(True)
    else:
        teacher.freeze_for_training()
    data_config = teacher.profile.preprocess
    task = InteractiveTeacherTask(InteractiveConfig(**section.interactive), data_config)
    _fit(teacher, task, SegmentationDataset(samples, data_config), section.train, seed, out_dir, resume,
         {"teacher": asdict(section), "samples": len(samples)})
    return save_model(teacher.eval(), out_dir / "teacher.pt", extra={"trained_on": len(samples)})


def student_config(section: StudentSection) -> StudentConfig:
    """The student architecture of a recipe (preset + overrides)."""
    return preset_config(section.preset, section.overrides, "student.overrides")


def _teacher_dim(teacher: torch.nn.Module) -> int:
    size = teacher.profile.preprocess.size
    with torch.no_grad():
        return int(teacher.encode(torch.zeros(1, 3, size, size)).embedding.shape[1])


def distill_student(section: StudentSection, stages: list[DistillStageSection], teacher_path: str | Path | None,
                    samples: list[Sample], out_dir: str | Path, *, seed: int = 0, resume: bool = False,
                    cache_embeddings: bool = True) -> Path:
    """Run the MMDKD stages in order (each resumable, finished ones kept); returns ``student.pt``.

    ``cache_embeddings``: a teacher with published weights has its embeddings computed up front into the
    content-keyed disk cache (CPU runs on a few hundred images); off, they are computed during training (GPU runs
    on millions of images, where that cache would not fit).
    """
    out_dir = Path(out_dir)
    if not stages:
        raise EdgeMedSAMError("the recipe has no distill stages", path=out_dir,
                              fix="add distill: [{stage: general}, {stage: decoupled}, {stage: decoder}]")
    config = student_config(section)
    teacher = load_model(teacher_path) if teacher_path else None
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the same recipe and seed start from the same weights
        student = EdgeStudent(config)
    scale = None
    if section.inherit:
        if teacher is None:
            raise EdgeMedSAMError("student.inherit needs a teacher to inherit from", path=out_dir,
                                  fix="set teacher.pretrained (e.g. litemedsam) or student.inherit: false")
        inherit_sam_decoder(student, teacher)
        scale = embedding_scale(teacher)
    model = DistillationModel(student, _teacher_dim(teacher) if teacher is not None else None, scale)
    data_config = PreprocessConfig(size=config.image_size)
    published = cache_embeddings and teacher is not None and getattr(teacher, "weights", None) is not None
    view = TeacherView(teacher, data_config, disk_cache=published) if teacher is not None else None
    dataset = SegmentationDataset(samples, data_config)
    pending = [stage for i, stage in enumerate(stages)
               if not (resume and (out_dir / f"stage{i}_{stage.stage}" / "done.json").exists())]
    if published and any(stage.stage != "decoder" or DistillConfig(stage=stage.stage, **stage.losses).kd_mask_weight > 0
                         for stage in pending):
        view.warm(dataset)
    for i, stage in enumerate(stages):
        stage_dir = out_dir / f"stage{i}_{stage.stage}"
        done = stage_dir / "done.json"
        if resume and done.exists():
            model.load_state_dict(load_checkpoint(stage_dir / "checkpoints" / LATEST)["model"])
            continue
        cfg = DistillConfig(stage=stage.stage, **stage.losses)
        train = {"seed": seed, **stage.train}
        groups = stage_param_groups(model, cfg, float(train.get("lr", TrainConfig.lr)))
        _fit(model, StudentDistillTask(cfg, view), dataset, stage.train, seed, stage_dir, resume,
             {"stage": asdict(stage), "student": config.to_dict()}, param_groups=groups)
        atomic_write_text(done, json.dumps({"stage": stage.stage}))
    return save_model(student.eval(), out_dir / "student.pt",
                      extra={"teacher": str(teacher_path) if teacher_path else None, "trained_on": len(samples)})
