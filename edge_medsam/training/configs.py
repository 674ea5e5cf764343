"""The plain settings of the training tasks (torch-free: recipes check their sections when they load)."""

from __future__ import annotations

from dataclasses import dataclass

from edge_medsam.errors import InputError

STAGES = ("general", "decoupled", "decoder")


@dataclass
class DistillConfig:
    """Loss weights and prompt simulation of one MMDKD stage (the recipe's `distill:` section)."""

    stage: str = "decoder"
    embed_weight: float = 1.0
    cosine_weight: float = 0.0
    kd_mask_weight: float = 1.0
    gt_mask_weight: float = 1.0
    auto_weight: float = 1.0
    patch_weight: float = 1.0
    confidence_weight: float = 0.5
    modality_weight: float = 0.2
    refine_weight: float = 1.0
    refine_rounds: int = 3  # correction clicks per refinement, each round adding one to the previous ones
    wrong_auto_prob: float = 0.5  # automatic masks made wrong (an object dropped or a blob added) before refining
    max_objects: int = 4
    box_prob: float = 0.5
    encoder_lr_scale: float = 0.1  # decoder stage: the encoder keeps learning, slowly (0 freezes it)
    inherited_lr_scale: float = 1.0  # decoder stage: prompt encoder and decoder weights inherited from the teacher

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise InputError(f"unknown distillation stage {self.stage!r}", fix=f"use one of {', '.join(STAGES)}")


@dataclass
class InteractiveConfig:
    """Prompt simulation of the teacher's training (the recipe's `interactive:` section)."""

    iterations: int = 8  # decoder-only refinement passes after the first (SAM-Med2D: 8)
    objects_per_image: int = 5
    box_prob: float = 0.5
    click_counts: tuple[int, ...] = (1, 3, 5, 9)
    box_jitter: float = 0.1
