"""`edge-medsam train teacher` for the reference configurations (family "reference"): build one with random
weights from ``teacher.options`` (``{"name": "litemedsam", **overrides}``), train it with the same interactive task
as every SAM-family teacher on the training engine, write ``teacher.pt``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from edge_medsam.data.dataset import SegmentationDataset
from edge_medsam.data.layouts import Sample
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.models.files import save_model
from edge_medsam.models.reference import REFERENCE_NAMES, build_reference
from edge_medsam.models.teachers.base import Teacher
from edge_medsam.recipes import TeacherSection
from edge_medsam.training.jobs import _fit
from edge_medsam.training.teacher_task import InteractiveConfig, InteractiveTeacherTask


def reference_from_section(section: TeacherSection, seed: int = 0) -> Teacher:
    """The recipe's reference model, randomly initialised from ``seed``."""
    options = dict(section.options)
    name = options.pop("name", None)
    if name is None:
        raise EdgeMedSAMError("teacher.options names no reference model",
                              fix=f"set teacher.options.name to one of {', '.join(REFERENCE_NAMES)}")
    if section.checkpoint:
        raise EdgeMedSAMError("reference models start from random weights; teacher.checkpoint is not used for them",
                              path=section.checkpoint, fix="remove teacher.checkpoint")
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the same recipe and seed start from the same weights
        return build_reference(name, **options)


def train_reference(section: TeacherSection, samples: list[Sample], out_dir: str | Path, *, seed: int = 0,
                    resume: bool = False) -> Path:
    """Train a reference model with the interactive teacher task; returns ``teacher.pt`` (weights + spec).

    ``train_all`` trains every parameter; otherwise the reference's profile decides (everything, except MedSAM's
    frozen prompt encoder for sam_vit_b and ESP-MedSAM's patch map, which this task has no loss for).
    """
    out_dir = Path(out_dir)
    model = reference_from_section(section, seed).train()
    if section.train_all:
        model.requires_grad_(True)
    else:
        model.freeze_for_training()
    data_config = model.profile.preprocess
    task = InteractiveTeacherTask(InteractiveConfig(**section.interactive), data_config)
    _fit(model, task, SegmentationDataset(samples, data_config), section.train, seed, out_dir, resume,
         {"teacher": asdict(section), "samples": len(samples)})
    return save_model(model.eval(), out_dir / "teacher.pt", extra={"trained_on": len(samples)})
