"""`edge-medsam train teacher` for the KA²ER family: two engine runs, each resumable, finished ones skipped.

Stage 1 trains one nnU-Net expert per task on that task's samples (nnU-Net's loss: Dice + cross-entropy on
the foreground, deep-supervised); stage 2 freezes the experts and trains the SwinUNETR target, the amalgamation
layer, the prompt encoder and the mask decoder on every sample with SAM-Med2D's simulated interactive loop.

Recipe keys: ``teacher.image_size``; ``teacher.options``: the Ka2erConfig fields (``tasks`` defaults to one
expert per modality of the training samples) plus ``expert_train`` (the experts' engine settings);
``teacher.train`` / ``teacher.interactive``: stage 2's optimisation and prompt simulation.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from monai.losses import DeepSupervisionLoss, DiceCELoss
from torch import nn

from edge_medsam.data.dataset import SegmentationDataset, collate
from edge_medsam.data.layouts import Sample
from edge_medsam.engine.checkpoint import LATEST, load_checkpoint
from edge_medsam.engine.trainer import StepContext, TrainConfig, Trainer
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.io.files import atomic_write_text
from edge_medsam.modalities import get_modality
from edge_medsam.models.files import save_model
from edge_medsam.models.teachers.ka2er import Ka2erTeacher, build_ka2er
from edge_medsam.recipes import TeacherSection
from edge_medsam.training.teacher_task import InteractiveConfig, InteractiveTeacherTask

EXPERT_TRAIN = "expert_train"  # the options key holding the experts' engine settings
DONE = "done.json"


class ExpertTask:
    """nnU-Net's loss for one expert: Dice + cross-entropy (softmax) of background/foreground, on every deep-
    supervision output (weights halve per level)."""

    def __init__(self) -> None:
        self.loss = DeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True), weight_mode="exp")

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, torch.Tensor]:
        images = batch["image"].to(ctx.device)
        target = (batch["labels"] > 0).unsqueeze(1).to(ctx.device, torch.int64)
        with ctx.autocast():
            logits = model(images)
        outputs = list(logits.float().unbind(1)) if logits.dim() == 5 else [logits.float()]
        return {"loss": self.loss(outputs, target)}


def default_tasks(samples: list[Sample]) -> dict[str, list[str]]:
    """One expert task per modality present in ``samples``."""
    names = sorted({get_modality(sample.modality).name for sample in samples})
    return {name: [name] for name in names}


def task_samples(samples: list[Sample], modalities: list[str]) -> list[Sample]:
    """The samples whose modality belongs to a task."""
    wanted = set(modalities)
    return [sample for sample in samples if get_modality(sample.modality).name in wanted]


def _run_stage(model: nn.Module, task: Any, dataset: SegmentationDataset, train: dict[str, Any], seed: int,
               stage_dir: Path, resume: bool, run_config: dict[str, Any]) -> None:
    """One engine run in its own folder; on resume a finished stage only reloads its final weights."""
    done = stage_dir / DONE
    if resume and done.exists():
        model.load_state_dict(load_checkpoint(stage_dir / "checkpoints" / LATEST)["model"])
        return
    trainer = Trainer(model, task, dataset, TrainConfig.from_dict({"seed": seed, **train}), stage_dir,
                      collate_fn=collate, run_config=run_config)
    trainer.fit(resume=resume and trainer.checkpoint_path.exists())
    atomic_write_text(done, json.dumps({"stage": stage_dir.name}))


def build_for_section(section: TeacherSection, samples: list[Sample]) -> tuple[Ka2erTeacher, dict[str, Any]]:
    """The untrained teacher a recipe section describes, and the experts' engine settings."""
    options = dict(section.options)
    expert_train = dict(options.pop(EXPERT_TRAIN, None) or {})
    tasks = options.pop("tasks", None) or default_tasks(samples)
    return build_ka2er(tasks, image_size=section.image_size, **options), expert_train


def train_ka2er(section: TeacherSection, samples: list[Sample], out_dir: str | Path, *, seed: int = 0,
                resume: bool = False) -> Path:
    """Train the experts (stage 1), then amalgamate them with the experts frozen (stage 2); returns ``teacher.pt``."""
    out_dir = Path(out_dir)
    torch.manual_seed(seed)  # the initial weights are part of the run: a rerun or resume starts from the same ones
    teacher, expert_train = build_for_section(section, samples)
    data_config = teacher.profile.preprocess
    run_config = {"teacher": asdict(section), "samples": len(samples)}
    for name, modalities in teacher.config.tasks.items():
        own = task_samples(samples, modalities)
        if not own:
            raise EdgeMedSAMError(f"expert task {name!r} ({', '.join(modalities)}) has no training samples",
                                  fix="change teacher.options.tasks to modalities present in the data")
        _run_stage(teacher.experts[name], ExpertTask(), SegmentationDataset(own, data_config), expert_train, seed,
                   out_dir / f"stage1_expert_{name}", resume, {**run_config, "expert": name, "task_samples": len(own)})
    teacher.freeze_for_training()
    task = InteractiveTeacherTask(InteractiveConfig(**section.interactive), data_config)
    _run_stage(teacher, task, SegmentationDataset(samples, data_config), section.train, seed,
               out_dir / "stage2_amalgamation", resume, run_config)
    return save_model(teacher.eval(), out_dir / "teacher.pt",
                      extra={"trained_on": len(samples), "tasks": teacher.config.tasks})
