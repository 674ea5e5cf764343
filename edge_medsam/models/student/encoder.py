"""Semi-shared image encoder: a shared timm trunk, modality recognition on early features, and per-modality
FiLM / low-rank parameters on the later stages and the neck, all selected in-graph by a modality index."""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from timm.models._features import FeatureDictNet
from torch import nn

from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.models.student.conditioning import ModalityFiLM, ModalityLowRank
from edge_medsam.models.student.config import StudentConfig

AUTO_MODALITY = -1


@dataclass
class EncoderOutput:
    """Everything the decoder and the self-prompt need from one image (all batch-first tensors)."""

    embedding: torch.Tensor  # [B, D, g, g], g = S / embedding_stride
    skip8: torch.Tensor  # [B, skip, 2g, 2g] (stride 8 of a stride-16 embedding, stride 4 of a stride-8 one)
    skip4: torch.Tensor  # [B, skip, 4g, 4g] (stride 4, or stride 2 from the image itself)
    modality_logits: torch.Tensor  # [B, slots]
    modality: torch.Tensor  # [B] int64, the index used (given, or recognised where the input was -1)


class SemiSharedEncoder(nn.Module):
    """Shared trunk (stride 4/8/16/32 stages) + per-modality parameters from the stride-16 stage on.

    The stride-8, -16 and -32 features are fused on the embedding grid (stride 16, or 8 for a finer grid); the
    decoder's two upsamplings get skip maps at 2g and 4g (at stride 8 the finer one is a convolution of the image).
    """

    def __init__(self, config: StudentConfig, pretrained: bool = False):
        super().__init__()
        trunk = timm.create_model(config.trunk, pretrained=pretrained, features_only=True, out_indices=(0, 1, 2, 3))
        if not isinstance(trunk, FeatureDictNet):
            raise EdgeMedSAMError(f"timm model {config.trunk!r} does not expose its stages one by one",
                                  fix="choose a trunk such as efficientvit_b0/b1, repvit_m0_9, fastvit_t8, resnet18")
        reductions = trunk.feature_info.reduction()
        if list(reductions) != [4, 8, 16, 32]:
            raise EdgeMedSAMError(f"trunk {config.trunk!r} has strides {reductions}, not 4/8/16/32",
                                  fix="choose a four-stage hierarchical trunk (efficientvit_b*, repvit, fastvit)")
        self.trunk = trunk
        self.stage_of = dict(trunk.return_layers)  # module name → feature index "0".."3"
        c4, c8, c16, c32 = trunk.feature_info.channels()
        d, slots = config.embed_dim, config.modality_slots
        self.film16 = ModalityFiLM(slots, c16)
        self.film32 = ModalityFiLM(slots, c32)
        self.modality_head = nn.Sequential(
            nn.Conv2d(c8, 64, 3, stride=2, padding=1), nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(64, slots))
        self.grid_stride = config.embedding_stride
        fine = self.grid_stride == 8
        self.proj8 = nn.Conv2d(c8, d, 1) if fine else nn.Conv2d(c8, d, 3, stride=2, padding=1)
        self.proj16 = nn.Conv2d(c16, d, 1)
        self.proj32 = nn.Conv2d(c32, d, 1)
        self.fuse = nn.Sequential(nn.Conv2d(d, d, 3, padding=1, bias=False), LayerNorm2d(d))
        self.adapter = ModalityLowRank(slots, d, config.adapter_rank)
        self.out = nn.Sequential(nn.Conv2d(d, d, 1, bias=False), LayerNorm2d(d))
        self.skip8 = nn.Conv2d(c4 if fine else c8, config.skip_dim, 1)
        self.skip4 = nn.Conv2d(3, config.skip_dim, 3, stride=2, padding=1) if fine else nn.Conv2d(c4, config.skip_dim, 1)

    def forward(self, image: torch.Tensor, modality: torch.Tensor) -> EncoderOutput:
        feats: dict[str, torch.Tensor] = {}
        resolved = modality
        logits = None
        x = image
        for name, module in self.trunk.items():
            x = module(x)
            stage = self.stage_of.get(name)
            if stage is None:
                continue
            if stage == "1":
                logits = self.modality_head(x)
                # -1 asks the graph to use its own recognition; any other value is the caller's choice.
                resolved = torch.where(modality >= 0, modality, logits.argmax(dim=1))
            elif stage == "2":
                x = self.film16(x, resolved)
            elif stage == "3":
                x = self.film32(x, resolved)
            feats[stage] = x
        s4, s8, s16, s32 = feats["0"], feats["1"], feats["2"], feats["3"]
        grid = (s8 if self.grid_stride == 8 else s16).shape[-2:]
        fused = self.proj8(s8) + _resized(self.proj16(s16), grid) + _resized(self.proj32(s32), grid)
        embedding = self.out(self.adapter(self.fuse(fused), resolved))
        assert logits is not None
        if self.grid_stride == 8:
            return EncoderOutput(embedding, self.skip8(s4), self.skip4(image), logits, resolved)
        return EncoderOutput(embedding, self.skip8(s8), self.skip4(s4), logits, resolved)


def _resized(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    return x if x.shape[-2:] == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
