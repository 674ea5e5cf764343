"""`edge-medsam train teacher` for the SyncSAM family: build (optionally from official SAM weights), freeze the ViT,
train with SAM-Med2D's interactive task on the training engine, write ``teacher.pt``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from edge_medsam.config_check import check_keys
from edge_medsam.data.dataset import SegmentationDataset
from edge_medsam.data.layouts import Sample
from edge_medsam.models.files import save_model
from edge_medsam.models.teachers import load_teacher
from edge_medsam.models.teachers.syncsam import SyncSamTeacher, build_syncsam
from edge_medsam.recipes import TeacherSection
from edge_medsam.training.jobs import _fit
from edge_medsam.training.teacher_task import InteractiveConfig, InteractiveTeacherTask

OPTIONS = ("arch", "image_size", "cnn", "cnn_kwargs", "cnn_weights", "spatial_prompts")


def syncsam_from_section(section: TeacherSection, seed: int = 0) -> SyncSamTeacher:
    """The recipe's SyncSAM: ``options`` (arch and image_size default to the section's), SAM weights if given."""
    check_keys(section.options, OPTIONS, "teacher.options (SyncSAM)")
    options: dict[str, Any] = {"arch": section.arch, "image_size": section.image_size, **section.options}
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the same recipe and seed start from the same random CNN and new modules
        teacher = build_syncsam(**options)
    if section.checkpoint:
        sam = load_teacher(section.checkpoint, arch=options["arch"], image_size=teacher.image_size)
        teacher.load_sam_state(sam.state_dict())
    return teacher


def train_syncsam(section: TeacherSection, samples: list[Sample], out_dir: str | Path, *, seed: int = 0,
                  resume: bool = False) -> Path:
    """Train a SyncSAM teacher (ViT frozen unless ``train_all``); returns ``teacher.pt``."""
    out_dir = Path(out_dir)
    teacher = syncsam_from_section(section, seed)
    if section.train_all:
        teacher.requires_grad_(True)
    else:
        teacher.freeze_for_training()
    data_config = teacher.profile.preprocess
    task = InteractiveTeacherTask(InteractiveConfig(**section.interactive), data_config)
    _fit(teacher, task, SegmentationDataset(samples, data_config), section.train, seed, out_dir,
         resume, {"teacher": asdict(section), "samples": len(samples)})
    return save_model(teacher.eval(), out_dir / "teacher.pt", extra={"trained_on": len(samples)})
