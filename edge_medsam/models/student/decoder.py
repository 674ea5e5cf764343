"""QDMD, the query-decoupled modality decoder: SAM's mask decoder with per-modality mask query tokens and
per-modality last hypernetwork layers (gathered by the modality index), a shared quality (IoU) head, and skip
maps added to SAM's two upsamplings. Laid out as SAM's, so a SAM decoder of the same widths loads into it
(``edge_medsam.models.student.inherit``): with zero skips it computes what that decoder computes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.mask_decoder import MLP
from segment_anything.modeling.transformer import TwoWayTransformer
from torch import nn

from edge_medsam.models.student.config import StudentConfig


class ModalityDecoder(nn.Module):
    """Image embedding + prompts + modality → ``num_masks`` mask logits at stride 4 and their predicted IoU."""

    def __init__(self, config: StudentConfig):
        super().__init__()
        d, k, slots = config.embed_dim, config.num_masks, config.modality_slots
        up1, up2 = d // 4, d // 8
        self.num_masks = k
        self.transformer = TwoWayTransformer(depth=config.decoder_depth, embedding_dim=d,
                                             num_heads=config.decoder_heads, mlp_dim=config.decoder_mlp_dim)
        self.iou_token = nn.Parameter(torch.randn(1, d) * 0.02)
        self.mask_queries = nn.Parameter(torch.randn(slots, k, d) * 0.02)  # per-modality query tokens
        self.up1 = nn.ConvTranspose2d(d, up1, 2, stride=2)
        self.skip1 = nn.Conv2d(config.skip_dim, up1, 1)
        self.norm1 = LayerNorm2d(up1)
        self.up2 = nn.ConvTranspose2d(up1, up2, 2, stride=2)
        self.skip2 = nn.Conv2d(config.skip_dim, up2, 1)
        self.act = nn.GELU()
        # SAM's per-mask-token hypernetwork MLP (d → d → d → up2), its last layer per modality.
        self.hyper_trunk = nn.ModuleList(MLP(d, d, d, 2) for _ in range(k))
        self.hyper_heads = nn.Parameter(torch.randn(slots, k, d, up2) * d**-0.5)  # per-modality output heads
        self.hyper_bias = nn.Parameter(torch.zeros(slots, k, up2))
        self.iou_head = MLP(d, d, k, 3)

    def forward(self, embedding: torch.Tensor, skip8: torch.Tensor, skip4: torch.Tensor, dense: torch.Tensor,
                dense_pe: torch.Tensor, sparse: torch.Tensor, modality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All per-image tensors have the objects' batch size N (expand before calling); returns
        (mask logits [N, K, 4g, 4g], iou [N, K])."""
        n = sparse.shape[0]
        queries = self.mask_queries[modality]  # [N, K, D]
        tokens = torch.cat([self.iou_token.unsqueeze(0).expand(n, -1, -1), queries, sparse], dim=1)
        src = embedding + dense
        b, c, h, w = src.shape
        hs, src = self.transformer(src, dense_pe.expand(n, -1, -1, -1), tokens)
        src = src.transpose(1, 2).reshape(b, c, h, w)
        x = self.act(self.norm1(self.up1(src) + self.skip1(skip8)))
        x = self.act(self.up2(x) + self.skip2(skip4))
        mask_tokens = torch.stack([F.relu(mlp(hs[:, 1 + i, :])) for i, mlp in enumerate(self.hyper_trunk)], dim=1)
        hyper = torch.einsum("nkd,nkdc->nkc", mask_tokens, self.hyper_heads[modality]) + self.hyper_bias[modality]
        _, cu, hu, wu = x.shape
        masks = torch.bmm(hyper, x.reshape(n, cu, hu * wu)).reshape(n, self.num_masks, hu, wu)
        return masks, self.iou_head(hs[:, 0, :])
