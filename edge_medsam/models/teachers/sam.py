"""SAM-family teachers (SAM ViT-B/L/H, MedSAM, SAM-Med2D) on the official segment_anything modules."""

from __future__ import annotations

from typing import Any

import torch

from edge_medsam.errors import InputError
from edge_medsam.models.prompt_maps import SpatialPromptEncoder
from edge_medsam.models.sam.arch import SamArch, check_image_size, get_arch
from edge_medsam.models.sam.components import build_image_encoder, build_mask_decoder, build_prompt_encoder
from edge_medsam.models.teachers.base import Points, Teacher, TeacherFeatures, TeacherProfile
from edge_medsam.models.teachers.profiles import SAM, SAM_MED2D, get_profile
from edge_medsam.models.teachers.sam_prompts import sam_decode


class SamTeacher(Teacher):
    """A SAM-family model whose state dict has the official layout (``image_encoder.*``, ``prompt_encoder.*``,
    ``mask_decoder.*``; SAM-Med2D adds ``image_encoder.blocks.N.Adapter.*``).

    ``encode`` returns the neck embedding [B, 256, S/16, S/16] and, as ``multiscale``, the outputs of the
    global-attention blocks (ViT-B: 2, 5, 8, 11) as [B, C, S/16, S/16] maps. Low-res logits are S/4 x S/4.

    ``spatial_prompts`` adds prompt maps (``edge_medsam.models.prompt_maps``) to the dense prompt: for teachers
    trained from scratch on a small budget; official checkpoints do not have them.
    """

    def __init__(self, arch: SamArch | str, image_size: int, adapter: str | None = None,
                 profile: TeacherProfile | str | None = None, spatial_prompts: bool = False):
        arch = get_arch(arch)
        image_size = check_image_size(image_size, adapter=adapter)
        chosen = get_profile(profile) if profile is not None else (SAM_MED2D if adapter else SAM)
        super().__init__(chosen.at_size(image_size))
        self.arch = arch
        self.image_size = image_size
        self.adapter = adapter
        self.image_encoder = build_image_encoder(arch, image_size, adapter)
        self.prompt_encoder = build_prompt_encoder(arch.prompt_dim, image_size, mask_in_chans=arch.mask_in_chans)
        self.mask_decoder = build_mask_decoder(arch.prompt_dim, arch.decoder_mlp_dim, arch.decoder_heads,
                                               arch.iou_hidden_dim)
        grid = arch.grid(image_size)
        self.spatial_prompts = SpatialPromptEncoder(arch.prompt_dim, image_size, grid) if spatial_prompts else None

    @property
    def low_res_size(self) -> int:
        """Side of the low-res mask logits (and of mask prompts): S / 4."""
        return 4 * self.arch.grid(self.image_size)

    def model_spec(self) -> dict[str, Any]:
        """The spec that rebuilds this teacher with ``build_from_spec`` (weights come from the model file)."""
        return {"kind": "sam_teacher", **self.config()}

    def config(self) -> dict[str, Any]:
        """The arguments that rebuild this teacher with ``build_sam(**config)``."""
        config = {"arch": self.arch.name, "image_size": self.image_size, "adapter": self.adapter,
                  "profile": self.profile.name}
        if self.spatial_prompts is not None:
            config["spatial_prompts"] = True
        return config

    def encode(self, images: torch.Tensor) -> TeacherFeatures:
        """Prepared images [B, 3, S, S] → neck embedding and global-block feature maps."""
        expected = (3, self.image_size, self.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise InputError(f"teacher input of shape {tuple(images.shape)} is not [B, {', '.join(map(str, expected))}]",
                             fix="prepare images with teacher.prepare (resize, normalise, pad to the model size)")
        encoder = self.image_encoder
        x = encoder.patch_embed(images) + encoder.pos_embed
        multiscale = []
        for index, block in enumerate(encoder.blocks):
            x = block(x)
            if index in self.arch.global_attn_indexes:
                multiscale.append(x.permute(0, 3, 1, 2))
        return TeacherFeatures(encoder.neck(x.permute(0, 3, 1, 2)), multiscale)

    def decode(self, features: TeacherFeatures, points: Points | None = None, boxes: torch.Tensor | None = None,
               mask_input: torch.Tensor | None = None, multimask: bool | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts (model-frame pixels; labels -1 pad, 0 negative, 1 positive, 2/3 box corners) → logits, IoU.

        All objects of all images run through the decoder as one batch; each image embedding is repeated for
        its K objects.
        """
        return sam_decode(self, features.embedding, points, boxes, mask_input, multimask)


def build_sam(arch: str = "vit_b", image_size: int = 1024, adapter: str | None = None,
              profile: TeacherProfile | str | None = None, spatial_prompts: bool = False) -> SamTeacher:
    """A randomly initialised SAM-family teacher (``adapter="med2d"`` for SAM-Med2D) with the official layout
    (plus prompt maps when ``spatial_prompts``)."""
    return SamTeacher(arch, image_size, adapter, profile, spatial_prompts)


def build_from_spec(spec: dict[str, Any]) -> SamTeacher:
    """A freshly initialised SAM-family teacher for a ``model_spec()`` (the ``sam_teacher`` kind of models.files)."""
    return build_sam(**{k: v for k, v in spec.items() if k != "kind"})
