"""SyncSAM teacher (arXiv 2408.09886: SAM-UNet v1, "Synchronized Encoding" v2+): a frozen SAM ViT synchronized
with a trainable timm CNN, and SAM's decoder with one more learnable token over multi-scale detail maps.

Encoder: before each global-attention block the matching CNN stage (the deepest stages, one per global block, in
order) is resampled to the token grid by strided convs / transposed convs and added to the ViT tokens through a
zero-initialised 1x1 projection, so an untrained SyncSAM embeds images exactly as the SAM it was built from.
Detail map (S/4): transposed-conv bridges from the global-block outputs (all but the last), from the neck
embedding and a 1x1 projection of the CNN's stride-4 stage, summed. Decoder: SAM's tokens plus a ``med_token``
whose hypernetwork output is dotted with the detail map fused with SAM's upscaled features; that fine mask is
added to each of SAM's masks (HQ-SAM's combined output), so SAM's multimask outputs and IoU head stay in use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from segment_anything.modeling import TwoWayTransformer
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.mask_decoder import MLP
from torch import nn

from edge_medsam.errors import InputError
from edge_medsam.models.prompt_maps import SpatialPromptEncoder
from edge_medsam.models.sam.arch import SamArch, check_image_size, get_arch
from edge_medsam.models.sam.components import SamMaskDecoder, build_image_encoder, build_prompt_encoder
from edge_medsam.models.teachers.base import Points, Teacher, TeacherFeatures, TeacherProfile
from edge_medsam.models.teachers.sam_prompts import sam_decode
from edge_medsam.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig

KIND = "syncsam_teacher"
TOKEN_STRIDE = 16  # SAM's patch size: the token grid is S/16
DETAIL_SCALE = 4  # the detail map and the low-res logits are S/4: four times the token grid
SAM_PARTS = ("image_encoder.", "prompt_encoder.", "mask_decoder.")

# SyncSAM's code trains at 256 with SAM's longest-side resize, padding and mean/std; the ViT (with its neck) is
# frozen, everything else trains.
SYNCSAM = TeacherProfile(
    name="syncsam",
    preprocess=PreprocessConfig(256, IMAGENET_MEAN, IMAGENET_STD, resize="longest_side"),
    trainable=("cnn.*", "sync.*", "stage_bridges.*", "neck_bridge.*", "cnn_bridge.*", "prompt_encoder.*",
               "mask_decoder.*", "spatial_prompts.*"),
)


class SyncProjection(nn.Module):
    """One CNN stage → ViT tokens: stride-2 convs (or 2x transposed convs) to the token grid, then a zero-init 1x1."""

    def __init__(self, in_channels: int, dim: int, reduction: int):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        while reduction < TOKEN_STRIDE:
            out = min(2 * channels, dim)
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), LayerNorm2d(out), nn.GELU()]
            channels, reduction = out, reduction * 2
        while reduction > TOKEN_STRIDE:
            out = max(channels // 2, 1)
            layers += [nn.ConvTranspose2d(channels, out, 2, stride=2), LayerNorm2d(out), nn.GELU()]
            channels, reduction = out, reduction // 2
        self.resample = nn.Sequential(*layers)
        self.project = nn.Conv2d(channels, dim, 1)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, stage: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        tokens = self.project(self.resample(stage))
        if tuple(tokens.shape[-2:]) != grid:  # inputs that are not a multiple of the CNN's stride round differently
            tokens = F.interpolate(tokens, size=grid, mode="bilinear", align_corners=False)
        return tokens.permute(0, 2, 3, 1)


def detail_bridge(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    """Token-grid map → 4x larger detail map (SAM's output_upscaling shape: two 2x transposed convs)."""
    return nn.Sequential(nn.ConvTranspose2d(in_channels, hidden, 2, stride=2), LayerNorm2d(hidden), nn.GELU(),
                         nn.ConvTranspose2d(hidden, out_channels, 2, stride=2))


class SyncMaskDecoder(SamMaskDecoder):
    """SAM's mask decoder plus SyncSAM's ``med_token``: its mask reads a detail map fused with SAM's upscaled
    features, and is added to every SAM mask. ``hf_mlp``'s last layer starts at zero (no fine mask yet)."""

    def __init__(self, dim: int, mlp_dim: int, num_heads: int, iou_hidden_dim: int):
        super().__init__(transformer_dim=dim, num_multimask_outputs=3, iou_head_depth=3,
                         iou_head_hidden_dim=iou_hidden_dim,
                         transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=mlp_dim, num_heads=num_heads))
        detail = dim // 8
        self.med_token = nn.Embedding(1, dim)
        self.hf_mlp = MLP(dim, dim, detail, 3)
        self.embedding_maskfeature = nn.Sequential(nn.Conv2d(detail, 2 * detail, 3, padding=1), LayerNorm2d(2 * detail),
                                                   nn.GELU(), nn.Conv2d(2 * detail, detail, 3, padding=1))
        nn.init.zeros_(self.hf_mlp.layers[-1].weight)
        nn.init.zeros_(self.hf_mlp.layers[-1].bias)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse_prompt_embeddings: torch.Tensor,
                dense_prompt_embeddings: torch.Tensor, multimask_output: bool, detail: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-object embeddings, detail maps and prompts → masks [O, 3 or 1, 4h, 4w] and IoU [O, 3 or 1]."""
        masks, iou = self.predict_detailed(image_embeddings, image_pe, sparse_prompt_embeddings,
                                           dense_prompt_embeddings, detail)
        chosen = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, chosen], iou[:, chosen]

    def predict_detailed(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                         dense: torch.Tensor, detail: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All four SAM masks with the med-token mask added, and SAM's four IoU predictions."""
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight, self.med_token.weight], dim=0)
        tokens = torch.cat((output_tokens.unsqueeze(0).expand(sparse.size(0), -1, -1), sparse), dim=1)
        src = image_embeddings + dense
        pos_src = torch.repeat_interleave(image_pe, tokens.shape[0], dim=0)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
        med_token_out = hs[:, 1 + self.num_mask_tokens, :]

        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper_in = torch.stack([mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
                               dim=1)
        fine = self.embedding_maskfeature(upscaled) + detail
        b, c, h, w = upscaled.shape
        sam_masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
        med_mask = (self.hf_mlp(med_token_out).unsqueeze(1) @ fine.reshape(b, c, h * w)).reshape(b, 1, h, w)
        return sam_masks + med_mask, self.iou_prediction_head(iou_token_out)


def _build_cnn(name: str, kwargs: Mapping[str, Any], weights: str | None) -> nn.Module:
    options: dict[str, Any] = {"features_only": True, **kwargs}
    if weights is not None:
        options["pretrained"] = True
        if weights != "timm":
            if not Path(weights).is_file():
                raise InputError("CNN weight file not found", path=weights,
                                 fix="give a timm state dict of the CNN, 'timm' to download ImageNet weights, or null")
            options["pretrained_cfg_overlay"] = {"file": str(weights)}
    try:
        return timm.create_model(name, **options)
    except (RuntimeError, TypeError, ValueError, FileNotFoundError) as err:
        raise InputError(f"cannot build the CNN branch {name!r} ({str(err).splitlines()[0][:160]})",
                         fix="use a timm CNN with features_only support (resnet34, resnet50, resnet10t) and kwargs it "
                             "accepts; cnn_weights is null, 'timm' or a local timm weight file") from err


class SyncSamTeacher(Teacher):
    """SyncSAM: SAM (``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*`` in SAM's layout, so SAM weights
    load into it) + a timm CNN (``cnn.*``), sync projections (``sync.*``) and detail bridges.

    ``encode`` returns the neck embedding [B, D, S/16, S/16] and, as ``multiscale``, the one detail map
    [B, D/8, S/4, S/4] the decoder fuses. ``decode`` falls back to a detail map from the embedding alone when
    ``multiscale`` is empty. Low-res logits are S/4 x S/4. ``spatial_prompts`` adds prompt maps
    (``edge_medsam.models.prompt_maps``) to the dense prompt, as for SamTeacher: for tiny teachers trained from
    scratch, which do not learn SAM's box geometry in a CPU budget; not part of SyncSAM.
    """

    decodes_multiscale = True  # TeacherView keeps the detail map next to the cached embedding

    def __init__(self, arch: SamArch | str, image_size: int, cnn: str = "resnet50",
                 cnn_kwargs: Mapping[str, Any] | None = None, cnn_weights: str | None = None,
                 spatial_prompts: bool = False):
        arch = get_arch(arch)
        image_size = check_image_size(image_size, adapter=None)
        super().__init__(SYNCSAM.at_size(image_size))
        self.arch, self.image_size = arch, image_size
        self.cnn_name, self.cnn_kwargs = cnn, dict(cnn_kwargs or {})
        dim, detail = arch.prompt_dim, arch.prompt_dim // 8
        self.image_encoder = build_image_encoder(arch, image_size)
        self.prompt_encoder = build_prompt_encoder(dim, image_size, mask_in_chans=arch.mask_in_chans)
        self.mask_decoder = SyncMaskDecoder(dim, arch.decoder_mlp_dim, arch.decoder_heads, arch.iou_hidden_dim)

        self.cnn = _build_cnn(cnn, self.cnn_kwargs, cnn_weights)
        info = self.cnn.feature_info
        stages = [i for i, reduction in enumerate(info.reduction()) if reduction >= 4]  # past a stride-2 stem
        synced = len(arch.global_attn_indexes)
        if len(stages) < synced:
            raise InputError(f"CNN {cnn!r} has {len(stages)} stages of stride >= 4, {arch.name} needs {synced}",
                             fix="use a deeper CNN (resnet34, resnet50)")
        self.sync_stages = stages[-synced:]
        self.detail_stage = stages[0]
        self.sync = nn.ModuleList(SyncProjection(info.channels()[i], arch.embed_dim, info.reduction()[i])
                                  for i in self.sync_stages)
        self.stage_bridges = nn.ModuleList(detail_bridge(arch.embed_dim, dim, detail)
                                           for _ in arch.global_attn_indexes[:-1])
        self.neck_bridge = detail_bridge(dim, dim // 4, detail)
        self.cnn_bridge = nn.Conv2d(info.channels()[self.detail_stage], detail, 1)
        self.spatial_prompts = (SpatialPromptEncoder(dim, image_size, arch.grid(image_size)) if spatial_prompts
                                else None)

    @property
    def low_res_size(self) -> int:
        """Side of the low-res mask logits (and of mask prompts): S / 4."""
        return DETAIL_SCALE * self.arch.grid(self.image_size)

    def model_spec(self) -> dict[str, Any]:
        """The spec that rebuilds this teacher with ``build_from_spec`` (weights come from the model file)."""
        return {"kind": KIND, "arch": self.arch.name, "image_size": self.image_size, "cnn": self.cnn_name,
                "cnn_kwargs": dict(self.cnn_kwargs), "spatial_prompts": self.spatial_prompts is not None}

    def load_sam_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Take every SAM part from a SAM-layout state dict (same arch and input size); the SyncSAM parts stay."""
        own = self.state_dict()
        sam_keys = {key for key in own if key.startswith(SAM_PARTS)} - set(self._new_decoder_keys())
        missing = sorted(sam_keys - set(state))
        unexpected = sorted(set(state) - sam_keys)
        if missing or unexpected:
            listed = ", ".join((missing + unexpected)[:4])
            raise InputError(f"the SAM weights do not fit a {self.arch.name} SyncSAM at {self.image_size} px "
                             f"({len(missing)} missing, {len(unexpected)} unexpected keys: {listed} ...)",
                             fix="start SyncSAM from an official SAM checkpoint of the same encoder size "
                                 "(SAM-Med2D adapters have no place in SyncSAM)")
        self.load_state_dict({**own, **state}, strict=True)

    def _new_decoder_keys(self) -> list[str]:
        return [f"mask_decoder.{name}" for name in self.mask_decoder.state_dict()
                if name.startswith(("med_token.", "hf_mlp.", "embedding_maskfeature."))]

    def encode(self, images: torch.Tensor) -> TeacherFeatures:
        """Prepared images [B, 3, S, S] → neck embedding and the fused detail map."""
        expected = (3, self.image_size, self.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise InputError(f"teacher input of shape {tuple(images.shape)} is not [B, {', '.join(map(str, expected))}]",
                             fix="prepare images with teacher.prepare (resize, normalise, pad to the model size)")
        maps = self.cnn(images)
        encoder = self.image_encoder
        x = encoder.patch_embed(images) + encoder.pos_embed
        grid = tuple(x.shape[1:3])
        global_outputs = []
        for index, block in enumerate(encoder.blocks):
            if index in self.arch.global_attn_indexes:
                k = len(global_outputs)
                x = x + self.sync[k](maps[self.sync_stages[k]], grid)
                x = block(x)
                global_outputs.append(x.permute(0, 3, 1, 2))
            else:
                x = block(x)
        embedding = encoder.neck(x.permute(0, 3, 1, 2))
        detail = self.neck_bridge(embedding)
        for bridge, stage in zip(self.stage_bridges, global_outputs[:-1], strict=True):
            detail = detail + bridge(stage)
        finest = self.cnn_bridge(maps[self.detail_stage])
        if finest.shape[-2:] != detail.shape[-2:]:
            finest = F.interpolate(finest, size=detail.shape[-2:], mode="bilinear", align_corners=False)
        return TeacherFeatures(embedding, [detail + finest])

    def decode(self, features: TeacherFeatures, points: Points | None = None, boxes: torch.Tensor | None = None,
               mask_input: torch.Tensor | None = None, multimask: bool | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts (model-frame pixels; labels -1 pad, 0 negative, 1 positive, 2/3 box corners) → logits, IoU."""
        embedding = features.embedding
        detail = features.multiscale[-1] if features.multiscale else self.neck_bridge(embedding)
        return sam_decode(self, embedding, points, boxes, mask_input, multimask, detail=detail)


def build_syncsam(arch: str = "vit_b", image_size: int = 256, cnn: str = "resnet50",
                  cnn_kwargs: Mapping[str, Any] | None = None, cnn_weights: str | None = None,
                  spatial_prompts: bool = False) -> SyncSamTeacher:
    """A SyncSAM teacher with random SAM weights; ``cnn_weights`` None (random), "timm" (download) or a file.

    ``cnn_kwargs`` go to ``timm.create_model`` (e.g. ``channels`` and ``stem_width`` for a narrow test ResNet).
    """
    return SyncSamTeacher(arch, image_size, cnn, cnn_kwargs, cnn_weights, spatial_prompts)


def build_from_spec(spec: Mapping[str, Any]) -> SyncSamTeacher:
    """A freshly initialised SyncSAM for a ``model_spec()`` (the ``syncsam_teacher`` kind of models.files)."""
    return build_syncsam(spec["arch"], spec["image_size"], spec["cnn"], spec.get("cnn_kwargs"),
                         spatial_prompts=spec.get("spatial_prompts", False))
