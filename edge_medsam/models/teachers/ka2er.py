"""KA²ER teacher (Knowledge Adaptive Amalgamation of ExpeRts, arXiv 2410.21085), re-implemented in 2D.

Per-task nnU-Net experts (MONAI DynUNet) and a SwinUNETR target model (MONAI, 2D) encode every image; at
strides 4, 8 and 16 an adaptive amalgamation layer projects the target's and all experts' decoder features to
one width and merges them with hierarchical attention (target self-attention → attention over the experts at
each location → attention over the scales). SAM's prompt encoder (plus boxes and clicks drawn as maps, the
package's spatial prompts) and SAM's mask decoder turn the amalgamated embedding and the prompts into masks.
The experts train first, each on its task; ``encode`` never back-propagates into them, and
``freeze_for_training`` leaves them frozen while the rest learns to amalgamate.

``encode`` returns the embedding [B, prompt_dim, S/e, S/e] (e = ``embed_stride``, one of the amalgamated
strides) and, as ``multiscale``, the per-scale amalgamated maps [B, dim, S/s, S/s] for s = 4, 8, 16; ``decode``
needs only the embedding. SAM's decoder upsamples 4x, so low-res logits are 4S/e a side (S/4 at e = 16, as in
SAM; S/2 at the default e = 8).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.nets import DynUNet, SwinUNETR
from segment_anything.modeling.common import LayerNorm2d, MLPBlock
from torch import nn

from edge_medsam.config_check import check_keys
from edge_medsam.errors import InputError
from edge_medsam.modalities import get_modality
from edge_medsam.models.prompt_maps import SpatialPromptEncoder
from edge_medsam.models.sam.components import build_mask_decoder, build_prompt_encoder
from edge_medsam.models.teachers.base import Points, Teacher, TeacherFeatures, TeacherProfile
from edge_medsam.models.teachers.sam_prompts import sam_decode
from edge_medsam.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig

KIND = "ka2er_teacher"
SCALES = (4, 8, 16)  # strides whose features are amalgamated; the embedding grid is one of them
# SwinUNETR decoder outputs by stride: decoder3 (2f channels), decoder4 (4f), decoder5 (8f) for feature size f.
_TARGET_WIDTH = {4: 2, 8: 4, 16: 8}
_SWIN_STRIDE = 32  # SwinUNETR: patch 2, then four 2x merges
_TASK_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass
class Ka2erConfig:
    """Architecture of a KA²ER teacher (the recipe's ``teacher.options`` plus ``image_size``).

    ``tasks``: expert name → the modalities its task covers (one nnU-Net expert each). ``expert_filters``:
    DynUNet widths per level (nnU-Net 2D: 32 … 512; at least 6 levels so the decoder reaches stride 16).
    ``target_*``: the SwinUNETR. ``dim``/``heads``: the amalgamation layer; ``reduce_to``: the target
    self-attention's keys are pooled to at most ``reduce_to``² tokens. ``embed_stride``: the embedding grid (4, 8
    or 16 pixels a token). ``prompt_dim``: the embedding, prompt and decoder width; ``decoder_*``: SAM's decoder.
    ``spatial_prompts``: also give boxes and clicks to the decoder as dense maps (``edge_medsam.models.prompt_maps``);
    a decoder trained from scratch (KA²ER has no released weights) localises them far sooner than through SAM's
    positional encoding alone.
    """

    tasks: dict[str, list[str]]
    image_size: int = 256
    expert_filters: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512, 512, 512])
    target_feature_size: int = 48
    target_depths: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    target_heads: list[int] = field(default_factory=lambda: [3, 6, 12, 24])
    target_window: int = 7
    dim: int = 256
    heads: int = 8
    reduce_to: int = 16
    embed_stride: int = 8
    prompt_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_hidden_dim: int = 256
    mask_in_chans: int = 16
    spatial_prompts: bool = True

    def __post_init__(self) -> None:
        self.tasks = _check_tasks(self.tasks)
        self.expert_filters = [int(f) for f in self.expert_filters]
        self.target_depths = [int(d) for d in self.target_depths]
        self.target_heads = [int(h) for h in self.target_heads]
        levels = len(self.expert_filters)
        if levels < 6:
            raise InputError(f"{levels} expert levels cannot reach stride {SCALES[-1]} in the decoder",
                             fix="give expert_filters at least 6 widths, e.g. [32, 64, 128, 256, 512, 512]")
        step = max(_SWIN_STRIDE, 2 ** (levels - 1))
        if self.image_size < 2 * step or self.image_size % step:
            raise InputError(f"input size {self.image_size} does not fit the experts' {levels} levels and "
                             f"SwinUNETR (it must be a multiple of {step}, at least {2 * step})",
                             fix=f"use a multiple of {step} such as 256, or fewer expert levels")
        if self.target_feature_size % 12:
            raise InputError(f"SwinUNETR feature size {self.target_feature_size} is not a multiple of 12",
                             fix="use 12, 24 or 48")
        widths = [self.target_feature_size * 2**i for i in range(4)]
        if len(self.target_depths) != 4 or len(self.target_heads) != 4 or any(
                w % h for w, h in zip(widths, self.target_heads, strict=True)):
            raise InputError(f"SwinUNETR needs 4 stage depths and 4 head counts dividing its widths {widths}, "
                             f"not {self.target_depths} and {self.target_heads}",
                             fix="use e.g. target_depths [2, 2, 2, 2] and target_heads [3, 6, 12, 24]")
        if self.embed_stride not in SCALES:
            raise InputError(f"embedding stride {self.embed_stride} is not one of the amalgamated strides {SCALES}",
                             fix="use embed_stride 4, 8 or 16")
        if self.dim % self.heads:
            raise InputError(f"amalgamation width {self.dim} is not divisible by {self.heads} heads",
                             fix="pick dim as a multiple of heads")
        if self.prompt_dim % (2 * self.decoder_heads) or self.mask_in_chans % 4:
            # SAM's decoder cross-attends at half width; its mask-prompt convs narrow to a quarter.
            raise InputError(f"prompt width {self.prompt_dim} is not divisible by 2 x {self.decoder_heads} decoder "
                             f"heads, or mask_in_chans {self.mask_in_chans} by 4",
                             fix="use e.g. prompt_dim 256, decoder_heads 8, mask_in_chans 16")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ka2erConfig:
        """Build from a recipe mapping, rejecting unknown keys with the list of valid ones."""
        check_keys(data, {f.name for f in fields(cls)}, "KA²ER options")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (the model spec)."""
        return asdict(self)


def _check_tasks(tasks: Any) -> dict[str, list[str]]:
    if not isinstance(tasks, dict) or not tasks:
        raise InputError("KA²ER needs at least one expert task",
                         fix="give tasks as {name: [modalities]}, e.g. {radiology: [ct, mr], optical: [fundus]}")
    checked = {}
    for name, modalities in tasks.items():
        if not isinstance(name, str) or not _TASK_NAME.match(name):
            raise InputError(f"expert task name {name!r} is not lower-case letters, digits and _",
                             fix="rename the task, e.g. radiology")
        if isinstance(modalities, str) or not modalities:
            raise InputError(f"expert task {name!r} lists no modalities", fix="give a list such as [ct, mr]")
        checked[name] = list(dict.fromkeys(get_modality(m).name for m in modalities))
    return checked


def ka2er_profile(image_size: int) -> TeacherProfile:
    """How a KA²ER teacher sees its inputs: longest side to ``image_size``, ImageNet mean/std, SAM prompts."""
    return TeacherProfile(
        name="ka2er",
        preprocess=PreprocessConfig(image_size, IMAGENET_MEAN, IMAGENET_STD, resize="longest_side"),
        trainable=("target.*", "amalgamation.*", "prompt_encoder.*", "spatial_prompts.*", "mask_decoder.*"),
    )


class NnUNetExpert(nn.Module):
    """One task's nnU-Net-style 2D segmenter (MONAI DynUNet: 3x3 convs, instance norm, leaky ReLU, stride 2 per
    level, deep supervision); background/foreground logits, and its decoder features by stride."""

    def __init__(self, filters: list[int], in_channels: int = 3, classes: int = 2):
        super().__init__()
        levels = len(filters)
        self.net = DynUNet(
            spatial_dims=2, in_channels=in_channels, out_channels=classes, kernel_size=[3] * levels,
            strides=[1] + [2] * (levels - 1), upsample_kernel_size=[2] * (levels - 1), filters=filters,
            deep_supervision=True, deep_supr_num=levels - 3,  # nnU-Net leaves the two coarsest outputs unsupervised
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [B, classes, S, S]; in training [B, 1 + deep_supr_num, classes, S, S] (deep supervision)."""
        return self.net(images)

    def features(self, images: torch.Tensor) -> dict[int, torch.Tensor]:
        """Decoder feature maps at the strides in ``SCALES`` (the U-Net walked level by level)."""
        net = self.net
        skips = [net.input_block(images)]
        for down in net.downsamples:
            skips.append(down(skips[-1]))
        x = net.bottleneck(skips[-1])
        out = {}
        for up, skip in zip(net.upsamples, reversed(skips), strict=True):
            x = up(x, skip)
            stride = images.shape[-1] // x.shape[-1]
            if stride in SCALES:
                out[stride] = x
        return out


class SwinTarget(nn.Module):
    """The target model: MONAI SwinUNETR (2D) down to the decoder maps at strides 4, 8 and 16.

    Its full- and half-resolution branches and output head feed nothing the amalgamation uses, so they are
    removed (no unused parameters under DDP, no full-resolution convolutions).
    """

    def __init__(self, feature_size: int, depths: list[int], heads: list[int], window: int):
        super().__init__()
        net = SwinUNETR(in_channels=3, out_channels=2, feature_size=feature_size, depths=depths, num_heads=heads,
                        window_size=window, spatial_dims=2)
        del net.encoder1, net.encoder2, net.decoder2, net.decoder1, net.out
        self.net = net
        self.widths = {stride: factor * feature_size for stride, factor in _TARGET_WIDTH.items()}

    def forward(self, images: torch.Tensor) -> dict[int, torch.Tensor]:
        """Decoder maps {4: [B, 2f, S/4, S/4], 8: [B, 4f, S/8, S/8], 16: [B, 8f, S/16, S/16]}."""
        net = self.net
        hidden = net.swinViT(images, net.normalize)
        dec3 = net.decoder5(net.encoder10(hidden[4]), hidden[3])
        dec2 = net.decoder4(dec3, net.encoder4(hidden[2]))
        dec1 = net.decoder3(dec2, net.encoder3(hidden[1]))
        return {4: dec1, 8: dec2, 16: dec3}


def _tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


class ScaleAmalgamation(nn.Module):
    """One scale of the amalgamation layer: joint projection of target and expert features to ``dim``, target
    self-attention (keys pooled to at most ``reduce_to``² tokens), then at every location attention from the
    target token over itself and all experts' tokens (each tagged with a learned source embedding), then an MLP."""

    def __init__(self, target_channels: int, expert_channels: int, experts: int, dim: int, heads: int,
                 reduce_to: int):
        super().__init__()
        self.reduce_to = reduce_to
        self.target_proj = nn.Conv2d(target_channels, dim, 1)
        self.expert_proj = nn.ModuleList(nn.Conv2d(expert_channels, dim, 1) for _ in range(experts))
        self.source_embed = nn.Parameter(torch.zeros(experts + 1, dim))
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_query = nn.LayerNorm(dim)
        self.norm_sources = nn.LayerNorm(dim)
        self.expert_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, 4 * dim)

    def forward(self, target: torch.Tensor, experts: list[torch.Tensor]) -> torch.Tensor:
        """Target [B, Ct, h, w] + experts K x [B, Ce, h, w] → amalgamated [B, dim, h, w]."""
        b, _, h, w = target.shape
        projected = self.target_proj(target)
        t = _tokens(projected)
        query = self.norm_self(t)
        pooled = F.adaptive_avg_pool2d(query.transpose(1, 2).reshape(b, -1, h, w),
                                       (min(h, self.reduce_to), min(w, self.reduce_to)))
        keys = _tokens(pooled)
        t = t + self.self_attn(query, keys, keys, need_weights=False)[0]
        sources = torch.stack([t] + [_tokens(proj(e)) for proj, e in zip(self.expert_proj, experts, strict=True)],
                              dim=2)  # [B, hw, 1 + K, dim]
        sources = self.norm_sources(sources + self.source_embed).flatten(0, 1)
        query = self.norm_query(t).flatten(0, 1).unsqueeze(1)
        t = t + self.expert_attn(query, sources, sources, need_weights=False)[0].reshape(b, h * w, -1)
        t = t + self.mlp(self.norm_mlp(t))
        return t.transpose(1, 2).reshape(b, -1, h, w)


class Amalgamation(nn.Module):
    """The adaptive amalgamation layer: one ``ScaleAmalgamation`` per stride, then attention over the scales at
    every embedding location (the token of the embedding's own stride queries all scales, each resized to its
    grid: finer ones area-pooled, coarser ones bilinearly upsampled) and SAM's neck (1x1 conv, LayerNorm2d,
    3x3 conv, LayerNorm2d) onto the prompt width."""

    def __init__(self, target_widths: dict[int, int], expert_widths: dict[int, int], experts: int, dim: int,
                 heads: int, reduce_to: int, embed_stride: int, out_dim: int):
        super().__init__()
        self.embed_index = SCALES.index(embed_stride)
        self.scales = nn.ModuleDict({
            str(s): ScaleAmalgamation(target_widths[s], expert_widths[s], experts, dim, heads, reduce_to)
            for s in SCALES})
        self.scale_embed = nn.Parameter(torch.zeros(len(SCALES), dim))
        self.norm_query = nn.LayerNorm(dim)
        self.norm_scales = nn.LayerNorm(dim)
        self.scale_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.neck = nn.Sequential(nn.Conv2d(dim, out_dim, 1, bias=False), LayerNorm2d(out_dim),
                                  nn.Conv2d(out_dim, out_dim, 3, padding=1, bias=False), LayerNorm2d(out_dim))

    def forward(self, target: dict[int, torch.Tensor], experts: list[dict[int, torch.Tensor]]
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-stride target and expert maps → (embedding [B, out_dim, S/e, S/e], per-scale amalgamated maps)."""
        merged = [self.scales[str(s)](target[s], [e[s] for e in experts]) for s in SCALES]
        own = merged[self.embed_index]
        b, _, h, w = own.shape
        stacked = torch.stack([_tokens(_resize(m, (h, w))) for m in merged], dim=2)
        stacked = self.norm_scales(stacked + self.scale_embed).flatten(0, 1)  # [B*hw, scales, dim]
        t = _tokens(own)
        query = self.norm_query(t).flatten(0, 1).unsqueeze(1)
        t = t + self.scale_attn(query, stacked, stacked, need_weights=False)[0].reshape(b, h * w, -1)
        return self.neck(t.transpose(1, 2).reshape(b, -1, h, w)), merged


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if x.shape[-2:] == size:
        return x
    if x.shape[-1] > size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Ka2erTeacher(Teacher):
    """Frozen-able per-task experts + SwinUNETR target → amalgamated embedding → SAM prompt encoder and decoder."""

    def __init__(self, config: Ka2erConfig):
        super().__init__(ka2er_profile(config.image_size))
        self.config = config
        filters = config.expert_filters
        self.experts = nn.ModuleDict({name: NnUNetExpert(filters) for name in config.tasks})
        self.target = SwinTarget(config.target_feature_size, config.target_depths, config.target_heads,
                                 config.target_window)
        # DynUNet's decoder output at stride 2**j has filters[j] channels.
        expert_widths = {s: filters[s.bit_length() - 1] for s in SCALES}
        self.amalgamation = Amalgamation(self.target.widths, expert_widths, len(config.tasks), config.dim,
                                         config.heads, config.reduce_to, config.embed_stride, config.prompt_dim)
        self.prompt_encoder = build_prompt_encoder(config.prompt_dim, config.image_size, self.grid,
                                                   config.mask_in_chans)
        self.spatial_prompts = (SpatialPromptEncoder(config.prompt_dim, config.image_size, self.grid)
                                if config.spatial_prompts else None)
        self.mask_decoder = build_mask_decoder(config.prompt_dim, config.decoder_mlp_dim, config.decoder_heads,
                                               config.iou_hidden_dim)

    @property
    def grid(self) -> int:
        """Tokens per side of the embedding (S / embed_stride)."""
        return self.config.image_size // self.config.embed_stride

    @property
    def low_res_size(self) -> int:
        """Side of the low-res mask logits (and of mask prompts): 4 x grid."""
        return 4 * self.grid

    def model_spec(self) -> dict[str, Any]:
        """The spec that rebuilds this teacher (experts included) with ``build_from_spec``."""
        return {"kind": KIND, "config": self.config.to_dict()}

    def train(self, mode: bool = True) -> Ka2erTeacher:
        """Train mode for what trains; frozen experts stay in eval mode (their normalisation is knowledge)."""
        super().train(mode)
        if not any(p.requires_grad for p in self.experts.parameters()):
            self.experts.eval()
        return self

    def expert_features(self, images: torch.Tensor) -> list[dict[int, torch.Tensor]]:
        """Every expert's decoder maps by stride; no gradient (experts learn only in their own stage)."""
        with torch.no_grad():
            return [expert.features(images) for expert in self.experts.values()]

    def encode(self, images: torch.Tensor) -> TeacherFeatures:
        """Prepared images [B, 3, S, S] → amalgamated embedding and the per-scale amalgamated maps."""
        size = self.config.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise InputError(f"teacher input of shape {tuple(images.shape)} is not [B, 3, {size}, {size}]",
                             fix="prepare images with teacher.prepare (resize, normalise, pad to the model size)")
        embedding, merged = self.amalgamation(self.target(images), self.expert_features(images))
        return TeacherFeatures(embedding, merged)

    def decode(self, features: TeacherFeatures, points: Points | None = None, boxes: torch.Tensor | None = None,
               mask_input: torch.Tensor | None = None, multimask: bool | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts (model-frame pixels; labels -1 pad, 0 negative, 1 positive, 2/3 box corners) → logits, IoU."""
        return sam_decode(self, features.embedding, points, boxes, mask_input, multimask)


def build_ka2er(tasks: dict[str, list[str]], image_size: int = 256, **options: Any) -> Ka2erTeacher:
    """A randomly initialised KA²ER teacher with one expert per task (``options``: other Ka2erConfig fields)."""
    return Ka2erTeacher(Ka2erConfig.from_dict({"tasks": tasks, "image_size": image_size, **options}))


def build_from_spec(spec: dict[str, Any]) -> Ka2erTeacher:
    """A freshly initialised KA²ER teacher for a ``model_spec()`` (the registry entry of models/files.py)."""
    return Ka2erTeacher(Ka2erConfig.from_dict(spec["config"]))
