"""SAM's prompt path shared by every teacher with SAM's prompt encoder: check and flatten prompts, turn mask
prompts into what the model was trained with, and embed them (one row per object)."""

from __future__ import annotations

import torch

from edge_medsam.errors import InputError
from edge_medsam.models.teachers.base import Points, PromptBatch, Teacher


def sam_prompt_embeddings(model: Teacher, embedding: torch.Tensor, points: Points | None, boxes: torch.Tensor | None,
                          mask_input: torch.Tensor | None) -> tuple[PromptBatch, torch.Tensor, torch.Tensor]:
    """Check and flatten prompts and run the model's SAM prompt encoder: (prompts, sparse [O, P, C], dense
    [O, C, g, g]); mask prompts are the model's own previous low-res logits."""
    prompts = PromptBatch.from_prompts(embedding.shape[0], points, boxes, mask_input)
    masks = None
    if prompts.masks is not None:
        if tuple(prompts.masks.shape[-2:]) != (model.low_res_size, model.low_res_size):
            raise InputError(f"mask prompts of size {tuple(prompts.masks.shape[-2:])} do not fit a "
                             f"{model.profile.preprocess.size}-pixel model",
                             fix=f"give the previous low-res logits ({model.low_res_size}x{model.low_res_size})")
        masks = model.profile.mask_prompt_from_logits(prompts.masks)
    sparse, dense = model.prompt_encoder(points=prompts.points, boxes=prompts.boxes, masks=masks)
    if sparse.shape[0] != prompts.num_objects:  # without any prompt SAM's prompt encoder answers for one object
        sparse = sparse.expand(prompts.num_objects, -1, -1)
        dense = dense.expand(prompts.num_objects, -1, -1, -1)
    return prompts, sparse, dense
