"""Student configuration: trunk, widths, input size and the number of modality slots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from edge_medsam.config_check import check_fields, check_keys
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.modalities import MODALITIES
from edge_medsam.runtime.manifest import LEGACY_PROMPTED_WEIGHT

EMBEDDING_STRIDES = (8, 16)


@dataclass(frozen=True)
class StudentConfig:
    """Architecture of the edge student; stored in checkpoints and bundle manifests.

    ``modality_slots`` may exceed the registry so new modalities can be added later without a new trunk.
    ``embedding_stride``: input pixels per embedding cell, 16 or 8. At 8 the embedding is 32 x 32 at 256 input,
    the grid on which a SAM decoder inherited from a teacher keeps most of its accuracy (see ``inherit``).
    ``prompted_self_prompt_weight``: the self-prompt's weight when decoding user-prompted objects (boxes, points).
    One decoder does two tasks that look alike to it: "segment the object at this click" and "correct the whole
    automatic foreground with this click"; the weight tells them apart (correcting the automatic mask uses 1).
    """

    trunk: str = "efficientvit_b0"
    image_size: int = 256
    embed_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    decoder_mlp_dim: int = 512
    num_masks: int = 3
    adapter_rank: int = 8
    modality_slots: int = len(MODALITIES)
    skip_dim: int = 32
    prompted_self_prompt_weight: float = 0.0
    embedding_stride: int = 16

    def __post_init__(self) -> None:
        if self.embedding_stride not in EMBEDDING_STRIDES:
            raise EdgeMedSAMError(f"embedding stride {self.embedding_stride} is not supported",
                                  fix=f"use one of {EMBEDDING_STRIDES}")
        if self.image_size % 32:
            raise EdgeMedSAMError(f"student input size {self.image_size} is not a multiple of 32",
                                  fix="use a multiple of 32 (the trunk's deepest stride)")

    @property
    def grid(self) -> int:
        """Side g of the image embedding (masks come at 4g)."""
        return self.image_size // self.embedding_stride

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        """Build from a stored config (checkpoint, manifest), rejecting unknown keys. One stored before
        ``prompted_self_prompt_weight`` existed was trained with the self-prompt on prompted objects (weight 1)."""
        check_keys(data, {f.name for f in fields(cls)}, "student settings")
        return cls(**{"prompted_self_prompt_weight": LEGACY_PROMPTED_WEIGHT, **data})


PRESETS: dict[str, StudentConfig] = {
    # Shipped demo and CPU quickstart: a few MB, tens of milliseconds on two cores.
    "tiny": StudentConfig(),
    # The CPU student distilled from LiteMedSAM: its embedding lives in the teacher's space (256 channels) on a
    # 32 x 32 grid, and its prompt encoder and decoder start as the teacher's (same widths, depth and heads).
    "lite": StudentConfig(embed_dim=256, decoder_heads=8, decoder_mlp_dim=2048, num_masks=4, embedding_stride=8),
    # The full student trained on GPU: a wider trunk, and LiteMedSAM's decoder shape so it inherits it too.
    "base": StudentConfig(trunk="efficientvit_b1", embed_dim=256, decoder_heads=8, decoder_mlp_dim=2048, num_masks=4,
                          adapter_rank=16, embedding_stride=8),
    # Higher-resolution variant for small structures (64 x 64 embedding, LiteMedSAM's own grid).
    "base512": StudentConfig(trunk="efficientvit_b1", image_size=512, embed_dim=256, decoder_heads=8,
                             decoder_mlp_dim=2048, num_masks=4, adapter_rank=16, embedding_stride=8),
}


def student_preset(name: str) -> StudentConfig:
    """A named configuration ("tiny", "lite", "base", "base512")."""
    if name not in PRESETS:
        raise EdgeMedSAMError(f"unknown student preset {name!r}", fix=f"use one of {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_config(name: str, overrides: Mapping[str, Any], where: str = "student settings") -> StudentConfig:
    """The preset ``name`` with ``overrides`` applied (a recipe's student section): an unknown key names the nearest
    field, a value of the wrong type is refused."""
    check_fields(StudentConfig, overrides, where)
    return replace(student_preset(name), **overrides)
