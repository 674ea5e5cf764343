"""The 3D SAM adapter teacher (3DSAM-adapter, Gong et al., Medical Image Analysis 2024): SAM made volumetric
while reusing its 2D weights, prompted by 3D points, trained on random crops of NIfTI volumes.

Volumes (3D use): ``normalise_volume`` turns [0, 1] intensities [B, 1, D, H, W] (CT windowed as the 2D pipeline
does) into the model input [B, 3, D, H, W]; ``segment(volume, coords, labels)`` gives voxel logits
[B, 1, D, H, W] for points in voxel (x, y, z); whole volumes go through
``edge_medsam.models.teachers.sam3d_inference.segment_volume`` (MONAI sliding windows of ``crop_size``).

2D images (the common Teacher interface, so the 2D student can distil from it): an image [B, 3, S, S] becomes a
thin volume of ``thin_tokens`` token slices (``thin_tokens * t`` equal slices, t = 16 / upsample voxels per
token). ``encode`` returns as ``embedding`` the middle token slice of every decoder level, concatenated along
channels ([B, levels * prompt_dim, S/t, S/t]); ``decode`` repeats that embedding along depth, so it works from the
cached embedding alone. A 2D point (x, y) becomes the 3D point (x, y, middle slice); a box (or corner points
labelled 2/3) becomes the 3D box from the first to the last slice, as the object of a stack of equal slices
spans all of them. The output is the middle slice of the voxel logits, at S x S, with one mask per object and,
since the paper has no IoU head, a confidence (mean foreground probability inside the mask) as its score.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from edge_medsam.config_check import check_keys
from edge_medsam.errors import EdgeMedSAMError, InputError
from edge_medsam.models.sam.arch import get_arch
from edge_medsam.models.teachers.base import Points, PromptBatch, Teacher, TeacherFeatures, TeacherProfile
from edge_medsam.models.teachers.loader import load_teacher
from edge_medsam.models.teachers.sam import SamTeacher
from edge_medsam.models.teachers.sam3d_decoder import BOX_HIGH, BOX_LOW, MultiLevelHead, PointPromptEncoder, click_anchors
from edge_medsam.models.teachers.sam3d_encoder import ImageEncoder3D
from edge_medsam.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig

KIND = "sam3d_teacher"
# The paper's trainable set: everything new plus SAM's LayerNorms; SAM's patch embedding, positional table,
# attention (qkv, proj, height/width relative positions) and MLPs stay frozen.
TRAINABLE = ("encoder.slice_embed.*", "encoder.depth_embed", "encoder.blocks.*.adapter.*", "encoder.blocks.*.norm1.*",
             "encoder.blocks.*.norm2.*", "encoder.blocks.*.attn.rel_pos_d", "encoder.blocks.*.attn.lr",
             "encoder.necks.*", "prompt_encoder.*", "decoder.*")
SAM_BLOCK_KEYS = ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                  "attn.proj.bias", "attn.rel_pos_h", "attn.rel_pos_w", "norm2.weight", "norm2.bias",
                  "mlp.lin1.weight", "mlp.lin1.bias", "mlp.lin2.weight", "mlp.lin2.bias")
SAM_NECK_KEYS = ("neck.0.weight", "neck.1.weight", "neck.1.bias", "neck.2.weight", "neck.3.weight", "neck.3.bias")


@dataclass(frozen=True)
class Sam3DConfig:
    """Architecture of a 3D SAM adapter (the paper's values by default; the model file stores it).

    ``crop_size``: (D, H, W) voxels of a training crop and of a sliding window. ``upsample``: voxel → SAM pixel
    factor before the 16-px patch embedding (a token covers 16 / upsample voxels per side). ``window``: cubic
    attention window in tokens. ``feature_blocks``: blocks feeding the decoder levels (default: SAM's
    global-attention blocks, i.e. 3/6/9/12 of ViT-B as in the paper). ``sam_image_size``: input size of the SAM
    weights that fill the frozen parts. ``head_width``: channels of the decoder (default prompt_dim / 2).
    ``image_size``: side of the 2D frame of the Teacher interface (default crop H). ``thin_tokens``: token
    slices of the thin volume a 2D image becomes.
    """

    arch: str = "vit_b"
    crop_size: tuple[int, int, int] = (128, 128, 128)
    upsample: int = 4
    window: int = 8
    shift_windows: bool = True
    adapter_ratio: float = 0.5
    feature_blocks: tuple[int, ...] | None = None
    sam_image_size: int = 1024
    global_queries: int = 10
    prompt_depth: int = 2
    head_width: int | None = None
    image_size: int | None = None
    thin_tokens: int = 3

    def __post_init__(self) -> None:
        arch = get_arch(self.arch)
        object.__setattr__(self, "crop_size", tuple(int(v) for v in self.crop_size))
        if self.feature_blocks is not None:
            object.__setattr__(self, "feature_blocks", tuple(sorted({int(v) for v in self.feature_blocks})))
        if self.upsample < 1 or arch.patch_size % self.upsample:
            raise InputError(f"upsample {self.upsample} does not divide the {arch.patch_size}-px patch",
                             fix="use 1, 2, 4, 8 or 16 (the paper: 4)")
        token = self.token_size
        if len(self.crop_size) != 3 or any(v < token or v % token for v in self.crop_size):
            raise InputError(f"crop size {self.crop_size} is not three multiples of the {token}-voxel token",
                             fix=f"give (D, H, W) multiples of {token}, e.g. (128, 128, 128)")
        if not self.levels or any(not 0 <= b < arch.depth for b in self.levels):
            raise InputError(f"feature blocks {self.feature_blocks} are not blocks of {arch.name} (0..{arch.depth - 1})",
                             fix="give block indices of the encoder, or leave them unset")
        if self.window < 1 or self.thin_tokens < 1 or self.global_queries < 1 or self.prompt_depth < 1:
            raise InputError("window, thin_tokens, global_queries and prompt_depth must be positive",
                             fix="use the defaults (8, 3, 10, 2)")
        if self.frame % 16 or self.frame < 16:
            raise InputError(f"2D frame {self.frame} is not a positive multiple of 16", fix="set image_size, e.g. 128")

    @property
    def token_size(self) -> int:
        """Voxels per token side."""
        return get_arch(self.arch).patch_size // self.upsample

    @property
    def levels(self) -> tuple[int, ...]:
        """Blocks whose outputs become decoder levels."""
        return self.feature_blocks if self.feature_blocks is not None else get_arch(self.arch).global_attn_indexes

    @property
    def frame(self) -> int:
        """Side of the 2D model frame."""
        return int(self.image_size or self.crop_size[1])

    @property
    def thin_slices(self) -> int:
        """Slices of the thin volume a 2D image becomes."""
        return self.thin_tokens * self.token_size

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        data = asdict(self)
        data["crop_size"] = list(self.crop_size)
        data["feature_blocks"] = None if self.feature_blocks is None else list(self.feature_blocks)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sam3DConfig:
        """Build from a mapping (a recipe's teacher options, a model file's spec), rejecting unknown keys."""
        check_keys(data, {f.name for f in fields(cls)}, "3D SAM adapter settings")
        return cls(**data)


def sam3d_profile(config: Sam3DConfig) -> TeacherProfile:
    """How the 3D adapter sees 2D images: SAM's mean/std on [0, 1] grey-as-RGB, longest side to the frame."""
    return TeacherProfile(name="sam3d", preprocess=PreprocessConfig(config.frame, IMAGENET_MEAN, IMAGENET_STD),
                          multimask=False, prompt_types=("point", "box"), trainable=TRAINABLE)


def mask_confidence(logits: torch.Tensor) -> torch.Tensor:
    """[O, 1, ...] logits → [O, 1] mean foreground probability inside the predicted mask (0 for an empty mask)."""
    probability = logits.float().sigmoid().flatten(1)
    inside = probability > 0.5
    return ((probability * inside).sum(1) / inside.sum(1).clamp_min(1))[:, None]


class Sam3DTeacher(Teacher):
    """SAM's ViT made volumetric (frozen 2D weights + depth parts + adapters), 3D point prompts, multi-level head."""

    def __init__(self, config: Sam3DConfig):
        super().__init__(sam3d_profile(config))
        arch = get_arch(config.arch)
        self.config = config
        self.arch = arch
        self.encoder = ImageEncoder3D(
            arch, sam_image_size=config.sam_image_size, upsample=config.upsample,
            depth_tokens=config.crop_size[0] // config.token_size, window=config.window,
            shift_windows=config.shift_windows, adapter_ratio=config.adapter_ratio, feature_blocks=config.levels,
            out_dim=arch.prompt_dim)
        self.prompt_encoder = PointPromptEncoder(arch.prompt_dim, config.prompt_depth, arch.decoder_heads,
                                                 arch.decoder_mlp_dim, config.global_queries)
        self.decoder = MultiLevelHead(len(config.levels), arch.prompt_dim, config.head_width or arch.prompt_dim // 2)

    def model_spec(self) -> dict[str, Any]:
        """The spec that rebuilds this model (``edge_medsam.models.files``)."""
        return {"kind": KIND, "config": self.config.to_dict()}

    # ------------------------------------------------------------------------------------------------ volumes

    def normalise_volume(self, unit: torch.Tensor) -> torch.Tensor:
        """[0, 1] intensities [B, D, H, W] or [B, 1, D, H, W] → model input [B, 3, D, H, W] (SAM's mean/std)."""
        volume = unit.unsqueeze(1) if unit.dim() == 4 else unit
        if volume.dim() != 5 or volume.shape[1] != 1:
            raise InputError(f"volume of shape {tuple(unit.shape)} is not [B, D, H, W] or [B, 1, D, H, W]",
                             fix="give one intensity channel in [0, 1]")
        preprocess = self.profile.preprocess
        mean = volume.new_tensor(preprocess.mean).view(1, 3, 1, 1, 1)
        std = volume.new_tensor(preprocess.std).view(1, 3, 1, 1, 1)
        return (volume.float() - mean) / std

    def encode_volume(self, volume: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Model input [B, 3, D, H, W] → (decoder levels [B, C, D/t, H/t, W/t], tapped block tokens)."""
        token = self.config.token_size
        if volume.dim() != 5 or volume.shape[1] != 3 or any(s < token or s % token for s in volume.shape[2:]):
            raise InputError(f"volume input of shape {tuple(volume.shape)} is not [B, 3, D, H, W] with sides that are "
                             f"multiples of {token}", fix="crop or pad the volume (normalise it with normalise_volume)")
        return self.encoder(volume)

    def decode_volume(self, levels: list[torch.Tensor], coords: torch.Tensor, labels: torch.Tensor,
                      size: tuple[int, int, int]) -> torch.Tensor:
        """One object per row: levels [O, C, d, h, w], points [O, N, 3] + labels [O, N] → logits [O, 1, *size]."""
        coords = coords.to(levels[-1].dtype)
        prompted = self.prompt_encoder(levels[-1], coords, labels, size)
        anchors, weights = click_anchors(coords, labels)
        return self.decoder([*levels[:-1], prompted], anchors, weights, size)

    def segment(self, volume: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Model input [B, 3, D, H, W] and one object's points per volume (voxel x, y, z) → logits [B, 1, D, H, W]."""
        if coords.dim() != 3 or coords.shape[-1] != 3 or tuple(labels.shape) != tuple(coords.shape[:2]) \
                or coords.shape[0] != volume.shape[0]:
            raise InputError(f"points {tuple(coords.shape)} / labels {tuple(labels.shape)} do not fit "
                             f"{volume.shape[0]} volume(s)", fix="give coords [B, N, 3] (x, y, z voxels) and labels [B, N]")
        levels, _ = self.encode_volume(volume)
        return self.decode_volume(levels, coords, labels, tuple(volume.shape[2:]))

    # ------------------------------------------------------------------------------------------------ 2D images

    def encode(self, images: torch.Tensor) -> TeacherFeatures:
        """Prepared images [B, 3, S, S] as thin volumes → middle token slice of every level, concatenated."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"teacher input of shape {tuple(images.shape)} is not [B, 3, S, S]",
                             fix="prepare images with teacher.prepare")
        volume = images[:, :, None].expand(-1, -1, self.config.thin_slices, -1, -1)
        levels, tapped = self.encode_volume(volume)
        middle = self.config.thin_tokens // 2
        embedding = torch.cat([level[:, :, middle] for level in levels], dim=1)
        return TeacherFeatures(embedding, [tokens[:, middle].permute(0, 3, 1, 2) for tokens in tapped])

    def _thin_prompts(self, prompts: PromptBatch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """2D points (labels -1/0/1, box corners 2/3) and boxes → 3D points in the thin volume."""
        last = float(self.config.thin_slices - 1)
        coords, labels = [], []
        if prompts.points is not None:
            xy, point_labels = prompts.points
            z = torch.full_like(xy[..., :1], last / 2)
            z = torch.where((point_labels == BOX_LOW)[..., None], 0.0, z)
            z = torch.where((point_labels == BOX_HIGH)[..., None], last, z)
            coords.append(torch.cat([xy.float(), z.float()], dim=-1))
            labels.append(point_labels.long())
        if prompts.boxes is not None:
            boxes = prompts.boxes.float()
            low = torch.stack([boxes[:, 0], boxes[:, 1], torch.zeros_like(boxes[:, 0])], dim=-1)
            high = torch.stack([boxes[:, 2], boxes[:, 3], torch.full_like(boxes[:, 0], last)], dim=-1)
            coords.append(torch.stack([low, high], dim=1))
            labels.append(torch.tensor([BOX_LOW, BOX_HIGH], device=boxes.device).expand(boxes.shape[0], 2))
        if not coords:
            raise InputError("the 3D SAM adapter needs point or box prompts", fix="give points or boxes")
        return torch.cat(coords, dim=1).to(device), torch.cat(labels, dim=1).to(device)

    def decode(self, features: TeacherFeatures, points: Points | None = None, boxes: torch.Tensor | None = None,
               mask_input: torch.Tensor | None = None, multimask: bool | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts in the 2D frame → (middle-slice logits [O, 1, S, S], confidence [O, 1]); one mask per object."""
        if mask_input is not None:
            raise InputError("the 3D SAM adapter takes no mask prompts", fix="give points or boxes")
        embedding = features.embedding
        dim, levels = self.arch.prompt_dim, len(self.config.levels)
        if embedding.dim() != 4 or embedding.shape[1] != dim * levels:
            raise InputError(f"embedding of shape {tuple(embedding.shape)} is not [B, {dim * levels}, h, w]",
                             fix="decode what this teacher's encode returned")
        prompts = PromptBatch.from_prompts(embedding.shape[0], points, boxes)
        coords, labels = self._thin_prompts(prompts, embedding.device)
        thin = prompts.per_object(embedding)[:, :, None].expand(-1, -1, self.config.thin_tokens, -1, -1)
        token = self.config.token_size
        size = (self.config.thin_slices, embedding.shape[-2] * token, embedding.shape[-1] * token)
        logits = self.decode_volume(list(thin.split(dim, dim=1)), coords, labels, size)
        logits = logits[:, :, self.config.thin_slices // 2]
        return logits, mask_confidence(logits)


def load_sam_weights(model: Sam3DTeacher, source: SamTeacher | Mapping[str, torch.Tensor] | str | os.PathLike[str]
                     ) -> list[str]:
    """Fill the 2D parts of the 3D encoder from SAM-family weights; returns the encoder keys that were copied.

    ``source``: a SamTeacher, its (image-encoder or whole-model) state dict, or an official checkpoint file. The
    depth relative-position tables start as the mean of the height and width ones (as in the paper), and the
    necks as SAM's 2D neck inflated to 3D (its 3x3 kernel on the middle depth slice).
    """
    if isinstance(source, (str, os.PathLike)):
        source = load_teacher(source, image_size=model.config.sam_image_size)
    if isinstance(source, SamTeacher):
        state = source.image_encoder.state_dict()
    else:
        state = {key.removeprefix("image_encoder."): value for key, value in source.items()}
    encoder = model.encoder
    own = encoder.state_dict()
    names = ["patch_embed.proj.weight", "patch_embed.proj.bias", "pos_embed",
             *(f"blocks.{i}.{key}" for i in range(len(encoder.blocks)) for key in SAM_BLOCK_KEYS)]
    misfit = [name for name in names if name not in state or tuple(state[name].shape) != tuple(own[name].shape)]
    if misfit:
        found = tuple(state[misfit[0]].shape) if misfit[0] in state else "missing"
        raise EdgeMedSAMError(f"SAM weights do not fit this {model.arch.name} 3D adapter: {misfit[0]} is {found}, "
                              f"expected {tuple(own[misfit[0]].shape)}",
                              fix="give weights of the same ViT size and build with sam_image_size = their input size")
    with torch.no_grad():
        for name in names:
            encoder.get_parameter(name).copy_(state[name])
        for block in encoder.blocks:
            block.attn.rel_pos_d.copy_((block.attn.rel_pos_h + block.attn.rel_pos_w) / 2)
        if all(key in state for key in SAM_NECK_KEYS):
            for neck in encoder.necks:
                neck[0].weight.copy_(state["neck.0.weight"][..., None])
                neck[2].weight.zero_()
                neck[2].weight[:, :, 1].copy_(state["neck.2.weight"])
                for index in (1, 3):
                    neck[index].weight.copy_(state[f"neck.{index}.weight"])
                    neck[index].bias.copy_(state[f"neck.{index}.bias"])
            names += [f"necks.{i}.{key.removeprefix('neck.')}" for i in range(len(encoder.necks)) for key in SAM_NECK_KEYS]
    return names


def build_sam3d(arch: str = "vit_b", *, checkpoint: str | os.PathLike[str] | None = None, **options: Any
                ) -> Sam3DTeacher:
    """A 3D SAM adapter (options: Sam3DConfig fields), its 2D parts from a SAM checkpoint when one is given."""
    model = Sam3DTeacher(Sam3DConfig.from_dict({"arch": arch, **options}))
    if checkpoint is not None:
        load_sam_weights(model, checkpoint)
    return model


def build_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """A freshly initialised 3D SAM adapter for a model file's spec."""
    if spec.get("kind") != KIND or not isinstance(spec.get("config"), Mapping):
        raise EdgeMedSAMError(f"spec {dict(spec)} does not describe a {KIND}", fix="save the model with save_model")
    return Sam3DTeacher(Sam3DConfig.from_dict(spec["config"]))
