"""SAM's image encoder, prompt encoder and mask decoder, built from the official segment_anything modules.

Two small subclasses widen what the official modules accept without changing a weight or a key:
``SamPromptEncoder`` understands point labels 2/3 (box corners, SAM's ONNX convention) and ``SamMaskDecoder``
takes one image embedding per prompt (what MedSAM's and SAM-Med2D's forks do), so many prompts over many
images run as one batch.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, TwoWayTransformer
from torch import nn

from edge_medsam.errors import InputError
from edge_medsam.models.sam.adapter import AdaptedBlock
from edge_medsam.models.sam.arch import SamArch, check_image_size

ADAPTERS = ("med2d",)


class SamPromptEncoder(PromptEncoder):
    """SAM's prompt encoder; a point labelled 2 or 3 is a box's top-left or bottom-right corner.

    A box given as two corner points replaces the padding token, exactly as callers of SAM's ONNX decoder do,
    so ``points=[..., tl(2), br(3)]`` embeds the same tokens as ``points=[...], boxes=[tl, br]``.
    """

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        corners = (labels == 2) | (labels == 3)
        pad = pad and not bool(corners.any())
        embedding = super()._embed_points(points, labels, pad)
        corner_embedding = ((labels == 2).unsqueeze(-1) * self.point_embeddings[2].weight
                            + (labels == 3).unsqueeze(-1) * self.point_embeddings[3].weight)
        if pad:
            corner_embedding = F.pad(corner_embedding, (0, 0, 0, 1))
        return embedding + corner_embedding.to(embedding.dtype)


class SamMaskDecoder(MaskDecoder):
    """SAM's mask decoder; image embeddings may come one per prompt (already repeated) or one per call.

    With one embedding for N prompts it repeats it N times as the official decoder does; with N embeddings for
    N prompts it uses them as they are (MedSAM's rule), which lets B images x K prompts run in one batch.
    """

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(sparse_prompt_embeddings.size(0), -1, -1)
        tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)

        if image_embeddings.shape[0] == tokens.shape[0]:
            src = image_embeddings
        else:
            src = torch.repeat_interleave(image_embeddings, tokens.shape[0], dim=0)
        src = src + dense_prompt_embeddings
        pos_src = torch.repeat_interleave(image_pe, tokens.shape[0], dim=0)
        b, c, h, w = src.shape

        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : (1 + self.num_mask_tokens), :]

        src = src.transpose(1, 2).reshape(b, c, h, w)
        upscaled = self.output_upscaling(src)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
        return masks, self.iou_prediction_head(iou_token_out)


def build_image_encoder(arch: SamArch, image_size: int, adapter: str | None = None) -> ImageEncoderViT:
    """The official SAM ViT for ``image_size`` inputs, with SAM-Med2D adapters in every block if asked."""
    if adapter is not None and adapter not in ADAPTERS:
        raise InputError(f"unknown encoder adapter {adapter!r}", fix=f"use one of {', '.join(ADAPTERS)} or none")
    image_size = check_image_size(image_size, adapter=adapter)
    norm_layer = partial(nn.LayerNorm, eps=1e-6)
    encoder = ImageEncoderViT(
        img_size=image_size,
        patch_size=arch.patch_size,
        embed_dim=arch.embed_dim,
        depth=arch.depth,
        num_heads=arch.num_heads,
        mlp_ratio=arch.mlp_ratio,
        out_chans=arch.prompt_dim,
        qkv_bias=True,
        norm_layer=norm_layer,
        use_rel_pos=True,
        window_size=arch.window_size,
        global_attn_indexes=arch.global_attn_indexes,
    )
    if adapter == "med2d":
        grid = arch.grid(image_size)
        encoder.blocks = nn.ModuleList(
            AdaptedBlock(
                arch.embed_dim,
                arch.num_heads,
                mlp_ratio=arch.mlp_ratio,
                qkv_bias=True,
                norm_layer=norm_layer,
                use_rel_pos=True,
                window_size=0 if i in arch.global_attn_indexes else arch.window_size,
                input_size=(grid, grid),
            )
            for i in range(arch.depth)
        )
    return encoder


def build_prompt_encoder(
    embed_dim: int = 256, image_size: int = 1024, embedding_size: int | None = None, mask_in_chans: int = 16
) -> SamPromptEncoder:
    """SAM's prompt encoder for a ``image_size`` input frame and an ``embedding_size``² embedding (default /16)."""
    grid = embedding_size or image_size // 16
    return SamPromptEncoder(
        embed_dim=embed_dim,
        image_embedding_size=(grid, grid),
        input_image_size=(image_size, image_size),
        mask_in_chans=mask_in_chans,
    )


def build_mask_decoder(
    dim: int = 256, mlp_dim: int = 2048, num_heads: int = 8, iou_hidden_dim: int = 256, num_multimask_outputs: int = 3
) -> SamMaskDecoder:
    """SAM's two-way-transformer mask decoder (depth 2) with 3 multimask outputs and an IoU head."""
    return SamMaskDecoder(
        transformer_dim=dim,
        transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=mlp_dim, num_heads=num_heads),
        num_multimask_outputs=num_multimask_outputs,
        iou_head_depth=3,
        iou_head_hidden_dim=iou_hidden_dim,
    )
