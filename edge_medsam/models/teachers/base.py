"""The interface every teacher offers to training and distillation: profile, encode, decode, prompt batching.

Shapes (B images, K objects per image, O = B*K objects, N points per object, S model input size):

- ``encode(images [B, 3, S, S])`` takes images already prepared with ``prepare`` (the teacher's own
  resize, normalisation and channel order) and returns ``TeacherFeatures``.
- ``decode(features, points, boxes, mask_input, multimask)`` takes prompts in model-frame pixels, one object per
  image (``[B, ...]``) or K per image (``[B, K, ...]``), and returns ``(low_res_logits [O, M, h, w], iou [O, M])``
  with objects image-major (object k of image b is row ``b * K + k``) and M = 3 (multimask) or 1.
- ``mask_input`` is always the teacher's own previous low-res *logits*; the profile turns them into what the
  teacher was trained with (SAM: logits, SAM-Med2D: sigmoid probabilities).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_medsam.data.torch_preprocess import to_model_input_torch
from edge_medsam.errors import InputError
from edge_medsam.preprocess import Geometry, PreprocessConfig

MASK_PROMPTS = ("logits", "probabilities")
CHANNEL_ORDERS = ("RGB", "BGR")
Points = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TeacherProfile:
    """How a teacher was trained to see its inputs, and which of its parameters fine-tuning updates.

    ``mask_prompt``: what its prompt encoder expects for a mask prompt ("logits" or "probabilities").
    ``multimask``: its decoding default (SAM-Med2D: 3 masks ranked by IoU; MedSAM: 1 mask).
    ``prompt_types``: the prompts it was trained with (what to simulate for it).
    ``channel_order``: the order its weights saw colour channels in ("BGR" for SAM-Med2D's cv2 pipeline).
    ``trainable``: fnmatch patterns of parameter names that ``Teacher.freeze_for_training`` leaves trainable.
    """

    name: str
    preprocess: PreprocessConfig
    mask_prompt: str = "logits"
    multimask: bool = True
    prompt_types: tuple[str, ...] = ("point", "box", "mask")
    channel_order: str = "RGB"
    trainable: tuple[str, ...] = ("prompt_encoder.*", "mask_decoder.*", "spatial_prompts.*")

    def __post_init__(self) -> None:
        if self.mask_prompt not in MASK_PROMPTS:
            raise InputError(f"unknown mask-prompt kind {self.mask_prompt!r}", fix=f"use one of {MASK_PROMPTS}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise InputError(f"unknown channel order {self.channel_order!r}", fix=f"use one of {CHANNEL_ORDERS}")

    def at_size(self, size: int) -> TeacherProfile:
        """The same profile for a model input of ``size`` pixels."""
        return replace(self, preprocess=replace(self.preprocess, size=int(size)))

    def mask_prompt_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Turn previous low-res logits into this teacher's mask-prompt input."""
        return logits.sigmoid() if self.mask_prompt == "probabilities" else logits

    def prepare(self, image: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, Geometry]:
        """A [0, 1] RGB image ((H, W, 3) array, (3, H, W) or (B, 3, H, W) tensor) → model input and geometry."""
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3:
                raise InputError(f"image of shape {image.shape} is not (H, W, 3)",
                                 fix="normalise it with edge_medsam.modalities.normalise_intensity")
            image = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
        if self.channel_order == "BGR":
            image = image.flip(-3)
        return to_model_input_torch(image, self.preprocess)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for run configs and bundle lineage)."""
        return {"name": self.name, "preprocess": self.preprocess.to_dict(), "mask_prompt": self.mask_prompt,
                "multimask": self.multimask, "prompt_types": list(self.prompt_types),
                "channel_order": self.channel_order, "trainable": list(self.trainable)}


@dataclass
class TeacherFeatures:
    """What ``Teacher.encode`` returns: the prompt-decoder embedding and intermediate maps for distillation."""

    embedding: torch.Tensor
    multiscale: list[torch.Tensor] = field(default_factory=list)

    def detach(self) -> TeacherFeatures:
        """The same features cut from the autograd graph (SAM-Med2D's decoder-only interactive steps)."""
        return TeacherFeatures(self.embedding.detach(), [m.detach() for m in self.multiscale])

    def select(self, index: torch.Tensor, multiscale: bool = True) -> TeacherFeatures:
        """The rows ``index`` of every map (one row per object); multiscale maps only when ``multiscale``."""
        return TeacherFeatures(self.embedding.index_select(0, index),
                               [m.index_select(0, index) for m in self.multiscale] if multiscale else [])


def _objects_per_image(name: str, shape: torch.Size, num_images: int, single_dims: int) -> int:
    if len(shape) == single_dims and shape[0] == num_images:
        return 1
    if len(shape) == single_dims + 1 and shape[0] == num_images:
        return int(shape[1])
    raise InputError(f"{name} of shape {tuple(shape)} do not fit {num_images} image(s)",
                     fix=f"give {name} as [B, ...] (one object per image) or [B, K, ...] (K objects per image)")


@dataclass
class PromptBatch:
    """Prompts of B images flattened to one row per object, image-major (object k of image b is row b*K + k)."""

    num_images: int
    per_image: int
    points: Points | None = None
    boxes: torch.Tensor | None = None
    masks: torch.Tensor | None = None

    @property
    def num_objects(self) -> int:
        """B * K."""
        return self.num_images * self.per_image

    @classmethod
    def from_prompts(cls, num_images: int, points: Points | None = None, boxes: torch.Tensor | None = None,
                     mask_input: torch.Tensor | None = None) -> PromptBatch:
        """Check and flatten points ([B,N,2]+[B,N] or [B,K,N,2]+[B,K,N]), boxes ([B,4] or [B,K,4]) and masks.

        Masks may be [B, K, 1, h, w] or already flat [B*K, 1, h, w].
        """
        counts: dict[str, int] = {}
        if points is not None:
            coords, labels = points
            counts["points"] = _objects_per_image("point coords", coords.shape, num_images, 3)
            if coords.shape[-1] != 2 or tuple(labels.shape) != tuple(coords.shape[:-1]):
                raise InputError(f"point coords {tuple(coords.shape)} and labels {tuple(labels.shape)} do not match",
                                 fix="give coords [..., N, 2] in model-frame x, y pixels and labels [..., N]")
            points = (coords.reshape(-1, coords.shape[-2], 2), labels.reshape(-1, labels.shape[-1]))
        if boxes is not None:
            counts["boxes"] = _objects_per_image("boxes", boxes.shape, num_images, 2)
            if boxes.shape[-1] != 4:
                raise InputError(f"boxes of shape {tuple(boxes.shape)} are not x0, y0, x1, y1",
                                 fix="give boxes as [B, 4] or [B, K, 4] in model-frame pixels")
            boxes = boxes.reshape(-1, 4)
        if mask_input is not None:
            if mask_input.dim() == 5:
                counts["masks"] = _objects_per_image("mask prompts", mask_input.shape, num_images, 4)
                mask_input = mask_input.flatten(0, 1)
            elif mask_input.dim() == 4 and mask_input.shape[1] == 1 and mask_input.shape[0] % num_images == 0:
                counts["masks"] = mask_input.shape[0] // num_images
            else:
                raise InputError(f"mask prompts of shape {tuple(mask_input.shape)} do not fit {num_images} image(s)",
                                 fix="give previous low-res logits as [B*K, 1, h, w] or [B, K, 1, h, w]")
        if len(set(counts.values())) > 1:
            raise InputError(f"prompts disagree on the number of objects per image: {counts}",
                             fix="give every prompt type the same K objects per image")
        per_image = next(iter(counts.values()), 1)
        return cls(num_images, per_image, points, boxes, mask_input)

    def per_object(self, tensor: torch.Tensor) -> torch.Tensor:
        """Repeat a per-image tensor [B, ...] to one row per object [B*K, ...]."""
        return tensor if self.per_image == 1 else tensor.repeat_interleave(self.per_image, dim=0)


def best_mask(low_res_logits: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep each object's mask with the highest predicted IoU: ([O, 1, h, w], [O, 1])."""
    best = iou.argmax(dim=1)
    rows = torch.arange(iou.shape[0], device=iou.device)
    return low_res_logits[rows, best].unsqueeze(1), iou[rows, best].unsqueeze(1)


class Teacher(nn.Module, ABC):
    """A full-size segmentation teacher: prepare → encode (once per image) → decode (once per prompt set).

    ``decodes_multiscale``: whether ``decode`` reads ``features.multiscale`` (then training and distillation keep
    those maps next to the embedding; otherwise they are dropped to save memory).
    """

    decodes_multiscale: bool = False

    def __init__(self, profile: TeacherProfile):
        super().__init__()
        self.profile = profile

    @abstractmethod
    def encode(self, images: torch.Tensor) -> TeacherFeatures:
        """Prepared images [B, 3, S, S] → embedding and multiscale features."""

    @abstractmethod
    def decode(self, features: TeacherFeatures, points: Points | None = None, boxes: torch.Tensor | None = None,
               mask_input: torch.Tensor | None = None, multimask: bool | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts → (low-res mask logits [O, M, h, w], predicted IoU [O, M]); multimask None = profile default."""

    def forward(self, images: torch.Tensor, points: Points | None = None, boxes: torch.Tensor | None = None,
                mask_input: torch.Tensor | None = None, multimask: bool | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """encode + decode."""
        return self.decode(self.encode(images), points=points, boxes=boxes, mask_input=mask_input,
                           multimask=multimask)

    @property
    def device(self) -> torch.device:
        """Where the teacher's weights are."""
        return next(self.parameters()).device

    def prepare(self, image: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, Geometry]:
        """A [0, 1] RGB image → this teacher's model input (on its device) and the geometry to map prompts."""
        model_input, geometry = self.profile.prepare(image)
        return model_input.to(self.device), geometry

    def freeze_for_training(self) -> list[str]:
        """Leave only the profile's trainable parameters with requires_grad; returns their names."""
        names = []
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(any(fnmatchcase(name, pattern) for pattern in self.profile.trainable))
            if parameter.requires_grad:
                names.append(name)
        return names

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters an optimizer should update (those with requires_grad)."""
        return [parameter for parameter in self.parameters() if parameter.requires_grad]
