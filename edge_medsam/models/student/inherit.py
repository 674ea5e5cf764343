"""Start a student from its teacher: SAM's prompt encoder and mask decoder copied into the student's, and the
teacher's last embedding normalisation into the student's, so the student's embedding lives in the teacher's space.

This is the decoupled distillation of MobileSAM (the student encoder learns the teacher's embedding, the
decoder is the teacher's) carried into the student's QDMD layout: every modality's query tokens and last
hypernetwork layer start as the teacher's, the skip maps start at zero, and the self-prompt's "no prompt" is
SAM's "no mask" embedding, so before any training a box decoded by the student from a teacher embedding gives
the teacher's mask. The decoder then fine-tunes from there instead of from noise: on two CPU cores there is no
budget to learn what LiteMedSAM learnt from millions of medical images.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.models.student.model import EdgeStudent

# Student parameters that hold teacher weights after ``inherit_sam_decoder`` (name prefixes).
INHERITED_PREFIXES = (
    "prompt_encoder.pe_layer.", "prompt_encoder.label_embed.", "prompt_encoder.mask_downscaling.",
    "sppg.no_prompt", "decoder.transformer.", "decoder.iou_token", "decoder.mask_queries", "decoder.up1.",
    "decoder.norm1.", "decoder.up2.", "decoder.hyper_trunk.", "decoder.hyper_heads", "decoder.hyper_bias",
    "decoder.iou_head.", "encoder.out.1.",
)


def is_inherited(name: str) -> bool:
    """Whether a student parameter name is one that ``inherit_sam_decoder`` fills."""
    return name.startswith(INHERITED_PREFIXES)


def _check(student: EdgeStudent, teacher: nn.Module) -> None:
    config = student.config
    decoder = getattr(teacher, "mask_decoder", None)
    prompts = getattr(teacher, "prompt_encoder", None)
    if decoder is None or prompts is None:
        raise EdgeMedSAMError(f"teacher {getattr(teacher, 'name', type(teacher).__name__)} has no SAM prompt encoder "
                              "and mask decoder to inherit", fix="inherit from a SAM-family teacher (e.g. litemedsam)")
    transformer = decoder.transformer
    wanted = {"embed_dim": decoder.transformer_dim, "decoder_depth": transformer.depth,
              "decoder_heads": transformer.layers[0].self_attn.num_heads,
              "decoder_mlp_dim": transformer.layers[0].mlp.lin1.out_features}
    wrong = {key: value for key, value in wanted.items() if getattr(config, key) != value}
    iou_width = decoder.iou_prediction_head.layers[0].out_features
    if wrong or config.num_masks > decoder.num_mask_tokens or iou_width != config.embed_dim:
        raise EdgeMedSAMError(f"the student's decoder does not have the teacher's shape (teacher: {wanted}, "
                              f"at most {decoder.num_mask_tokens} masks)",
                              fix="use the 'lite' student preset, or set these student overrides")
    last = _last_norm(teacher)
    if last is None or last.weight.shape[0] != config.embed_dim:
        raise EdgeMedSAMError("the teacher's embedding does not end in a LayerNorm of the student's width",
                              fix="inherit from a SAM-family teacher such as litemedsam")


@torch.no_grad()
def inherit_sam_decoder(student: EdgeStudent, teacher: nn.Module) -> None:
    """Copy a SAM-family teacher's prompt encoder and mask decoder (and its embedding's last LayerNorm) into the
    student; refuses with one line when the shapes differ."""
    _check(student, teacher)
    source, target = teacher.prompt_encoder, student.prompt_encoder
    target.pe_layer.positional_encoding_gaussian_matrix.copy_(source.pe_layer.positional_encoding_gaussian_matrix)
    labels = [source.not_a_point_embed.weight[0], *(e.weight[0] for e in source.point_embeddings)]
    target.label_embed.weight.copy_(torch.stack(labels))
    target.mask_downscaling.load_state_dict(source.mask_downscaling.state_dict())
    student.sppg.no_prompt.copy_(source.no_mask_embed.weight.view(1, -1, 1, 1))

    sam, qdmd = teacher.mask_decoder, student.decoder
    k = qdmd.num_masks
    qdmd.transformer.load_state_dict(sam.transformer.state_dict())
    qdmd.iou_token.copy_(sam.iou_token.weight)
    qdmd.mask_queries.copy_(sam.mask_tokens.weight[:k].expand_as(qdmd.mask_queries))
    qdmd.up1.load_state_dict(sam.output_upscaling[0].state_dict())
    qdmd.norm1.load_state_dict(sam.output_upscaling[1].state_dict())
    qdmd.up2.load_state_dict(sam.output_upscaling[3].state_dict())
    for skip in (qdmd.skip1, qdmd.skip2):
        nn.init.zeros_(skip.weight)
        nn.init.zeros_(skip.bias)
    for i, mlp in enumerate(qdmd.hyper_trunk):
        hyper = sam.output_hypernetworks_mlps[i].layers
        mlp.layers[0].load_state_dict(hyper[0].state_dict())
        mlp.layers[1].load_state_dict(hyper[1].state_dict())
        qdmd.hyper_heads[:, i].copy_(hyper[2].weight.T)
        qdmd.hyper_bias[:, i].copy_(hyper[2].bias)
    iou = sam.iou_prediction_head.layers
    qdmd.iou_head.layers[0].load_state_dict(iou[0].state_dict())
    qdmd.iou_head.layers[1].load_state_dict(iou[1].state_dict())
    qdmd.iou_head.layers[2].weight.copy_(iou[2].weight[:k])
    qdmd.iou_head.layers[2].bias.copy_(iou[2].bias[:k])

    last, norm = _last_norm(teacher), student.encoder.out[1]
    norm.weight.copy_(last.weight)
    norm.bias.copy_(last.bias)


def _last_norm(teacher: nn.Module) -> nn.Module | None:
    neck = getattr(getattr(teacher, "image_encoder", None), "neck", None)
    last = neck[-1] if isinstance(neck, nn.Sequential) else None
    return last if getattr(last, "weight", None) is not None and last.weight.dim() == 1 else None


def embedding_scale(teacher: nn.Module) -> torch.Tensor | None:
    """Per-channel scale [D] of a teacher's embedding (its neck's last LayerNorm weight magnitudes), or None
    for a teacher without one (``inherit_sam_decoder`` refuses those).
    Distilling into the inherited teacher space, errors are measured in these units so that the channels the
    teacher scales down count as much as the others."""
    last = _last_norm(teacher)
    return None if last is None else last.weight.detach().abs().clamp(min=1e-3).clone()
