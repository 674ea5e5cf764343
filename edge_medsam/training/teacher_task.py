"""SAM-Med2D's simulated interactive training as an engine task.

Step 1 prompts each sampled object with a box or with points and trains everything the profile leaves
trainable (adapters, prompt encoder, decoder). Steps 2..T reuse the detached image embedding and train the
decoder alone: each adds 1/3/5/9 clicks from the error region and feeds the previous mask back; at one random
step and at the last the prompt is the mask alone. Loss per step: 20·focal + Dice + IoU MSE. Unlike the
released loop, which steps the optimizer after every one of the T passes, the T losses are averaged into one
optimizer step, so gradient accumulation, AMP and DDP apply unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from edge_medsam.data.prompt_batch import pack_prompts
from edge_medsam.data.prompts import points_from_error
from edge_medsam.engine.trainer import StepContext
from edge_medsam.models.teachers.base import Teacher, best_mask
from edge_medsam.preprocess import PreprocessConfig
from edge_medsam.training.configs import InteractiveConfig
from edge_medsam.training.losses import mask_losses
from edge_medsam.training.prompt_objects import simulate_batch
from edge_medsam.training.teacher_view import reframe


def _point_counts(choices: tuple[int, ...]) -> dict[str, Any]:
    """SAM-Med2D's per-image point budget: one draw from ``choices``, up to half of it negatives."""
    state: dict[str, int] = {}

    def positives(rng: np.random.Generator) -> tuple[int, int]:
        state["n"] = int(rng.choice(choices))
        return (1, state["n"])

    def negatives(rng: np.random.Generator) -> tuple[int, int]:
        return (0, state["n"] // 2)

    return {"n_pos": positives, "n_neg": negatives}


class InteractiveTeacherTask:
    """Turns a batch of model-frame images and label maps into SAM-Med2D's interactive loss."""

    def __init__(self, config: InteractiveConfig, data_config: PreprocessConfig):
        self.config = config
        self.data_config = data_config

    def training_step(self, model: Teacher, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, torch.Tensor]:
        cfg = self.config
        images = reframe(batch["image"].to(ctx.device), self.data_config, model.profile)
        objects = self._objects(batch["labels"].numpy(), ctx.rng)
        if objects is None:  # nothing annotated in this batch: a zero loss that still touches the graph
            zero = sum(p.sum() for p in model.trainable_parameters()) * 0.0
            return {"loss": zero}
        index, coords, labels, targets = (t.to(ctx.device) for t in objects)
        with ctx.autocast():
            features = model.encode(images)
            selected = features.select(index, multiscale=model.decodes_multiscale)
            logits, iou = model.decode(selected, points=(coords, labels))
            first = mask_losses(logits, targets, iou)
        losses = [first["loss"]]
        detached = selected.detach()
        mask_only_step = int(ctx.rng.integers(1, cfg.iterations + 1)) if cfg.iterations else -1
        previous = best_mask(logits, iou)[0].detach()
        all_coords, all_labels = coords, labels
        for step in range(1, cfg.iterations + 1):
            clicks = self._clicks(previous, targets, ctx.rng)
            all_coords = torch.cat([all_coords, clicks[0].to(ctx.device)], 1)
            all_labels = torch.cat([all_labels, clicks[1].to(ctx.device)], 1)
            mask_only = step in (mask_only_step, cfg.iterations)
            with ctx.autocast():
                logits, iou = model.decode(detached, points=None if mask_only else (all_coords, all_labels),
                                           mask_input=previous)
                result = mask_losses(logits, targets, iou)
            losses.append(result["loss"])
            previous = best_mask(logits, iou)[0].detach()
        loss = torch.stack([term.float() for term in losses]).mean()
        return {"loss": loss, "first_dice_loss": first["dice_loss"].detach(), "first_iou": first["iou"],
                "last_iou": result["iou"] if cfg.iterations else first["iou"]}

    def _objects(self, label_maps: np.ndarray, rng: np.random.Generator):
        cfg = self.config
        return simulate_batch(label_maps, rng, max_objects=cfg.objects_per_image, box_prob=cfg.box_prob,
                              jitter=cfg.box_jitter, **_point_counts(cfg.click_counts))

    def _clicks(self, previous: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator):
        count = int(rng.choice(self.config.click_counts))
        full = F.interpolate(previous.float(), size=targets.shape[-2:], mode="bilinear", align_corners=False)[:, 0] > 0
        clicks = [points_from_error(pred, truth, rng, n=count, mode="uniform")
                  for pred, truth in zip(full.cpu().numpy(), targets.cpu().numpy() > 0.5, strict=True)]
        coords, labels = pack_prompts([None] * len(clicks), clicks, min_width=count)
        return torch.from_numpy(coords), torch.from_numpy(labels)
