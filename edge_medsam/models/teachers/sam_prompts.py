"""SAM's prompt path shared by every teacher with SAM's prompt encoder: check and flatten prompts, turn mask
prompts into what the model was trained with, embed them (one row per object, prompt maps added where the model
has them) and run SAM's mask decoder on them."""

from __future__ import annotations

import torch

from edge_medsam.errors import InputError
from edge_medsam.models.prompt_maps import prompt_points
from edge_medsam.models.teachers.base import Points, PromptBatch, Teacher


def sam_prompt_embeddings(model: Teacher, embedding: torch.Tensor, points: Points | None, boxes: torch.Tensor | None,
                          mask_input: torch.Tensor | None) -> tuple[PromptBatch, torch.Tensor, torch.Tensor]:
    """Check and flatten prompts and run the model's SAM prompt encoder: (prompts, sparse [O, P, C], dense
    [O, C, g, g]); mask prompts are the model's own previous low-res logits. A model with ``spatial_prompts``
    (prompt maps) gets its boxes and clicks drawn into the dense prompt too."""
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
    spatial = getattr(model, "spatial_prompts", None)
    if spatial is not None:
        dense = dense + spatial(*prompt_points(prompts, embedding))
    return prompts, sparse, dense


def sam_decode(model: Teacher, embedding: torch.Tensor, points: Points | None, boxes: torch.Tensor | None,
               mask_input: torch.Tensor | None, multimask: bool | None,
               **per_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts → (low-res logits [O, M, 4g, 4g], IoU [O, M]) through the model's SAM mask decoder, all objects of
    all images in one batch; ``per_image`` maps (e.g. SyncSAM's detail map) are repeated per object like the
    embedding and passed to the decoder under their names."""
    prompts, sparse, dense = sam_prompt_embeddings(model, embedding, points, boxes, mask_input)
    return model.mask_decoder(
        image_embeddings=prompts.per_object(embedding),
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=model.profile.multimask if multimask is None else multimask,
        **{name: prompts.per_object(value) for name, value in per_image.items()},
    )
