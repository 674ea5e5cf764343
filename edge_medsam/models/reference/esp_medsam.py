"""The ESP-MedSAM released configuration (xq141839/ESP-MedSAM ``model.py``), rebuilt on timm's TinyViT and SAM parts.

- Image encoder: MobileSAM's TinyViT at 1024 whose 10 attention blocks (stages 1-3) carry a modality controller
  (the release's ``med`` parameters): a parallel MLP expert (``x = x + mlp(x) + expert(x)``: LayerNorm, Linear d→4d,
  GELU, Linear 4d→d) and one learnable key/value token per head, appended to the keys and values, with one scalar
  attention-logit bias. ``controllers=1`` is one released checkpoint (the modality is chosen by the file);
  ``controllers=modalities`` holds every modality's controller, picked inside the graph by the modality index
  (the paper's semi-parameter-sharing encoder).
- SPPG: a patch map (2x2 stride-2 conv, LayerNorm2d, GELU, 1x1 conv) on the embedding, thresholded at 0.5 without
  gradient, upsampled x2 and turned into a dense prompt (1x1 conv, LayerNorm2d, GELU) added to the embedding.
- QDMD: ``modalities + 1`` learned query tokens in SAM's two-way transformer; the first ``modalities`` share one
  hypernetwork MLP and the modality index picks its mask.

Two additions make it a promptable teacher with the package's interface: point/box tokens from SAM's prompt
encoder join the queries (the release concatenates the queries with an always-empty sparse prompt), a previous
mask's embedding is added to the self-prompt, and the spare last query (computed but never decoded in the
release) feeds SAM's IoU head. The release's unused 1000-class TinyViT head is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from segment_anything.modeling import TwoWayTransformer
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.mask_decoder import MLP
from timm.layers import trunc_normal_
from timm.models.tiny_vit import TinyVitBlock
from torch import nn

from edge_medsam.errors import InputError
from edge_medsam.models.reference.base import check_images, reference_spec
from edge_medsam.models.reference.tinyvit import TinyVitSamConfig, build_tinyvit_trunk, sam_neck
from edge_medsam.models.sam.components import build_prompt_encoder
from edge_medsam.models.teachers.base import Points, Teacher, TeacherFeatures, TeacherProfile
from edge_medsam.models.teachers.sam_prompts import sam_prompt_embeddings

MLP_RATIO = 4.0


@dataclass(frozen=True)
class EspMedSamConfig:
    """ESP-MedSAM (defaults: the released configuration at 1024, six modalities, one controller set)."""

    image_size: int = 1024
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    modalities: int = 6  # mask slots (and queries - 1) of the decoder
    controllers: int = 1  # modality-controller sets in the encoder: 1 or ``modalities``
    modality: int = 0  # the slot encode/decode use through the Teacher interface
    prompt_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_hidden_dim: int = 256

    def __post_init__(self) -> None:
        if self.controllers not in (1, self.modalities):
            raise InputError(f"{self.controllers} controller sets for {self.modalities} modalities",
                             fix=f"use controllers=1 (one released checkpoint) or controllers={self.modalities}")
        if not 0 <= self.modality < self.modalities:
            raise InputError(f"modality {self.modality} is not one of the {self.modalities} slots",
                             fix=f"use 0..{self.modalities - 1}")
        self.trunk_config()  # validates the TinyViT settings

    @property
    def grid(self) -> int:
        """Side of the image embedding (S / 16)."""
        return self.image_size // 16

    def trunk_config(self) -> TinyVitSamConfig:
        """The MobileSAM-layout TinyViT under the controllers."""
        return TinyVitSamConfig(image_size=self.image_size, embed_dims=self.embed_dims, depths=self.depths,
                                num_heads=self.num_heads, window_sizes=self.window_sizes, prompt_dim=self.prompt_dim)


class ModalityController(nn.Module):
    """One attention block's per-modality parameters, stacked over controller sets and gathered by index."""

    def __init__(self, dim: int, num_heads: int, controllers: int):
        super().__init__()
        hidden = int(dim * MLP_RATIO)
        self.norm_weight = nn.Parameter(torch.ones(controllers, dim))
        self.norm_bias = nn.Parameter(torch.zeros(controllers, dim))
        self.fc1_weight = nn.Parameter(trunc_normal_(torch.empty(controllers, dim, hidden), std=0.02))
        self.fc1_bias = nn.Parameter(torch.zeros(controllers, hidden))
        self.fc2_weight = nn.Parameter(trunc_normal_(torch.empty(controllers, hidden, dim), std=0.02))
        self.fc2_bias = nn.Parameter(torch.zeros(controllers, dim))
        # One token per head serves as both key and value; one scalar logit bias per block for it.
        self.kv_token = nn.Parameter(trunc_normal_(torch.empty(controllers, num_heads, 1, dim // num_heads), std=0.02))
        self.kv_bias = nn.Parameter(torch.zeros(controllers, 1))

    def expert(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The MLP expert of each row's controller: x [B, L, C], index [B] → [B, L, C]."""
        h = F.layer_norm(x, x.shape[-1:])
        h = h * self.norm_weight.index_select(0, index)[:, None] + self.norm_bias.index_select(0, index)[:, None]
        h = torch.baddbmm(self.fc1_bias.index_select(0, index)[:, None], h, self.fc1_weight.index_select(0, index))
        return torch.baddbmm(self.fc2_bias.index_select(0, index)[:, None], F.gelu(h),
                             self.fc2_weight.index_select(0, index))


class ModalityBlock(TinyVitBlock):
    """timm's TinyViT block with a modality controller; forward takes the controller index of every image."""

    def __init__(self, dim: int, num_heads: int, window_size: int, controllers: int):
        super().__init__(dim, num_heads, window_size=window_size, mlp_ratio=MLP_RATIO)
        self.med = ModalityController(dim, num_heads, controllers)

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        batch, height, width, channels = x.shape
        size = self.window_size
        pad_b, pad_r = (size - height % size) % size, (size - width % size) % size
        windows = F.pad(x, (0, 0, 0, pad_r, 0, pad_b)) if pad_b or pad_r else x
        rows, cols = (height + pad_b) // size, (width + pad_r) // size
        windows = windows.view(batch, rows, size, cols, size, channels).transpose(2, 3)
        windows = self._attend(windows.reshape(-1, size * size, channels), index.repeat_interleave(rows * cols))
        windows = windows.view(batch, rows, cols, size, size, channels).transpose(2, 3)
        x = x + windows.reshape(batch, rows * size, cols * size, channels)[:, :height, :width]
        tokens = self.local_conv(x.permute(0, 3, 1, 2)).reshape(batch, channels, -1).transpose(1, 2)
        tokens = tokens + self.mlp(tokens) + self.med.expert(tokens, index)
        return tokens.reshape(batch, height, width, channels)

    def _attend(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """timm's window attention with the controller's key/value token and its logit bias appended."""
        attn = self.attn
        count, length, _ = x.shape
        q, k, v = attn.qkv(attn.norm(x)).view(count, length, attn.num_heads, -1).split(
            [attn.key_dim, attn.key_dim, attn.val_dim], dim=3)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        token = self.med.kv_token.index_select(0, index)
        k, v = torch.cat([k, token], dim=2), torch.cat([v, token], dim=2)
        bias = attn.attention_biases[:, attn.attention_bias_idxs].unsqueeze(0).expand(count, -1, -1, -1)
        token_bias = self.med.kv_bias.index_select(0, index)[:, :, None, None].expand(count, attn.num_heads, length, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=torch.cat([bias, token_bias], dim=-1))
        return attn.proj(out.transpose(1, 2).reshape(count, length, attn.out_dim))


class EspImageEncoder(nn.Module):
    """Images [B, 3, S, S] + controller index [B] → embedding [B, prompt_dim, S/16, S/16]."""

    def __init__(self, config: EspMedSamConfig):
        super().__init__()
        self.trunk = build_tinyvit_trunk(config.trunk_config())
        for i, stage in enumerate(self.trunk.stages):
            if i:  # stage 0 is convolutional; every attention block gets a controller
                stage.blocks = nn.ModuleList(
                    ModalityBlock(config.embed_dims[i], config.num_heads[i], config.window_sizes[i], config.controllers)
                    for _ in range(config.depths[i]))
        self.trunk.init_weights(needs_reset=False)  # timm's TinyViT initialisation for the new blocks' Linear layers
        self.neck = sam_neck(config.embed_dims[-1], config.prompt_dim)

    def forward(self, images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        x = self.trunk.stages[0](self.trunk.patch_embed(images))
        for stage in self.trunk.stages[1:]:
            x = stage.downsample(x).permute(0, 2, 3, 1)
            for block in stage.blocks:
                x = block(x, index)
            x = x.permute(0, 3, 1, 2)
        return self.neck(x)


class QueryMaskDecoder(nn.Module):
    """QDMD: learned queries + prompt tokens through SAM's two-way transformer; one mask per modality slot."""

    def __init__(self, dim: int, mlp_dim: int, num_heads: int, modalities: int, iou_hidden_dim: int):
        super().__init__()
        self.modalities = modalities
        self.mask_query = nn.Embedding(modalities + 1, dim)
        self.transformer = TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=mlp_dim, num_heads=num_heads)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2), LayerNorm2d(dim // 4), nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2), nn.GELU())
        self.output_hypernetwork = MLP(dim, dim, dim // 8, 3)
        self.iou_prediction_head = MLP(dim, iou_hidden_dim, 1, 3)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                dense: torch.Tensor, modality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-object embeddings/dense prompts [O, C, g, g], PE [1, C, g, g], tokens [O, P, C], slots [O] →
        (mask logits [O, 1, 4g, 4g], IoU [O, 1])."""
        objects, channels, height, width = image_embeddings.shape
        queries = self.mask_query.weight.unsqueeze(0).expand(objects, -1, -1)
        hs, src = self.transformer(image_embeddings + dense, image_pe.expand(objects, -1, -1, -1),
                                   torch.cat([queries, sparse], dim=1))
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(objects, channels, height, width))
        hyper = self.output_hypernetwork(hs[:, : self.modalities])
        masks = (hyper @ upscaled.flatten(2)).reshape(objects, self.modalities, *upscaled.shape[-2:])
        chosen = masks.gather(1, modality.view(-1, 1, 1, 1).expand(-1, 1, *masks.shape[-2:]))
        return chosen, self.iou_prediction_head(hs[:, self.modalities])


class EspMedSam(Teacher):
    """ESP-MedSAM: modality-controlled TinyViT, SPPG self-prompt, QDMD decoder (one mask per object, M = 1).

    ``encode``/``decode`` use ``config.modality``; ``encode_with`` and ``decode_objects`` take it per image/object
    (the export graphs use those).
    """

    def __init__(self, name: str, config: EspMedSamConfig, profile: TeacherProfile):
        super().__init__(profile.at_size(config.image_size))
        self.name = name
        self.config = config
        self.image_size = config.image_size
        self.low_res_size = 4 * config.grid
        dim, hidden = config.prompt_dim, config.prompt_dim // 4
        self.image_encoder = EspImageEncoder(config)
        self.prompt_encoder = build_prompt_encoder(dim, config.image_size, embedding_size=config.grid)
        self.mask_decoder = QueryMaskDecoder(dim, config.decoder_mlp_dim, config.decoder_heads, config.modalities,
                                             config.iou_hidden_dim)
        self.patch_decoder = nn.Sequential(nn.Conv2d(dim, hidden, kernel_size=2, stride=2), LayerNorm2d(hidden),
                                           nn.GELU(), nn.Conv2d(hidden, 1, kernel_size=1))
        self.dense_prompter = nn.Sequential(nn.Conv2d(1, dim, kernel_size=1), LayerNorm2d(dim), nn.GELU())

    def model_spec(self) -> dict[str, Any]:
        """The spec that rebuilds this model with ``edge_medsam.models.reference.build_from_spec``."""
        return reference_spec(self.name, self.config)

    def _default_modality(self, count: int) -> torch.Tensor:
        return torch.full((count,), self.config.modality, dtype=torch.int64, device=self.device)

    def encode_with(self, images: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        """Prepared images [B, 3, S, S] + modality slots [B] → embedding [B, C, g, g]."""
        check_images(images, self.image_size)
        index = modality if self.config.controllers > 1 else torch.zeros_like(modality)
        return self.image_encoder(images, index)

    def encode(self, images: torch.Tensor) -> TeacherFeatures:
        """Prepared images [B, 3, S, S] → embedding, with the configured modality."""
        return TeacherFeatures(self.encode_with(images, self._default_modality(images.shape[0])))

    def self_prompt(self, embedding: torch.Tensor) -> torch.Tensor:
        """SPPG: embedding [B, C, g, g] → dense prompt [B, C, g, g] from the hard-thresholded patch map."""
        patches = self.patch_decoder(embedding).detach().sigmoid()
        foreground = F.interpolate((patches >= 0.5).to(embedding.dtype), scale_factor=2.0, mode="nearest")
        return self.dense_prompter(foreground)

    def decode_objects(self, embeddings: torch.Tensor, dense: torch.Tensor, modality: torch.Tensor,
                       sparse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-object embeddings and dense prompts [O, C, g, g], slots [O], prompt tokens [O, P, C] → logits, IoU."""
        return self.mask_decoder(embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense, modality)

    def decode(self, features: TeacherFeatures, points: Points | None = None, boxes: torch.Tensor | None = None,
               mask_input: torch.Tensor | None = None, multimask: bool | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Self-prompt plus optional points/boxes/previous mask → (logits [O, 1, 4g, 4g], IoU [O, 1]).

        Without any prompt each image gets its self-prompted mask (the released behaviour). There is one mask
        per modality slot, so ``multimask`` has no effect.
        """
        embedding = features.embedding
        prompts, sparse, mask_dense = sam_prompt_embeddings(self, embedding, points, boxes, mask_input)
        dense = prompts.per_object(self.self_prompt(embedding))
        if prompts.masks is not None:  # the release ignores the prompt encoder's dense output; a mask refines here
            dense = dense + mask_dense
        modality = prompts.per_object(self._default_modality(embedding.shape[0]))
        return self.decode_objects(prompts.per_object(embedding), dense, modality, sparse)
