"""The reference configurations by name: default config, input profile and builder of each; overrides; specs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

from edge_medsam.config_check import check_keys
from edge_medsam.errors import InputError
from edge_medsam.models.reference.base import KIND, SamDecoderReference
from edge_medsam.models.reference.efficientvit import EfficientVitSamConfig, EfficientVitSamEncoder
from edge_medsam.models.reference.esp_medsam import EspMedSam, EspMedSamConfig
from edge_medsam.models.reference.sam_vit import ReferenceSam, SamVitConfig
from edge_medsam.models.reference.tinyvit import TinyVitSamConfig, TinyVitSamEncoder
from edge_medsam.models.teachers.base import Teacher, TeacherProfile
from edge_medsam.models.teachers.profiles import MEDSAM, SAM
from edge_medsam.preprocess import IMAGENET_MEAN, PreprocessConfig

# Built from random weights, the references train end to end (their releases fine-tune the whole pipeline too);
# sam_vit_b keeps MedSAM's profile (image encoder + decoder) unless the recipe says train_all.
EVERYTHING = ("*",)

# LiteMedSAM: longest side to 256, min-max [0, 1] without mean/std, zero pad; box prompts, one mask.
LITEMEDSAM = TeacherProfile(
    name="litemedsam",
    preprocess=PreprocessConfig(256, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), resize="longest_side"),
    multimask=False, prompt_types=("box",), trainable=EVERYTHING,
)
MOBILESAM = TeacherProfile(name="mobilesam", preprocess=SAM.preprocess, trainable=EVERYTHING)
# EfficientViT-SAM: SAM's longest-side resize, mean/std and corner padding at 512.
EFFICIENTVIT_SAM = TeacherProfile(name="efficientvit_sam", preprocess=PreprocessConfig(512, resize="longest_side"),
                                  trainable=EVERYTHING)
# ESP-MedSAM: images pre-resized to 1024 x 1024; its loader divides by the mean instead of the std (kept as released).
# Its patch map learns only from its own loss against pooled ground truth, which the interactive recipe lacks (the
# mask loss cannot reach it through the detached threshold), so that recipe leaves it out.
ESP_MEDSAM = TeacherProfile(
    name="esp_medsam",
    preprocess=PreprocessConfig(1024, IMAGENET_MEAN, IMAGENET_MEAN, resize="stretch"),
    multimask=False, trainable=("image_encoder.*", "prompt_encoder.*", "mask_decoder.*", "dense_prompter.*"),
)


@dataclass(frozen=True)
class ReferenceEntry:
    """One reference: its default (native) configuration, input profile, builder and what it is."""

    config: Any
    profile: TeacherProfile
    build: Callable[[str, Any, TeacherProfile], Teacher]
    about: str


def _tinyvit(name: str, config: TinyVitSamConfig, profile: TeacherProfile) -> Teacher:
    return SamDecoderReference(name, config, profile, TinyVitSamEncoder(config), config.grid)


def _efficientvit(name: str, config: EfficientVitSamConfig, profile: TeacherProfile) -> Teacher:
    return SamDecoderReference(name, config, profile, EfficientVitSamEncoder(config), config.grid)


REFERENCES: dict[str, ReferenceEntry] = {
    "sam_vit_b": ReferenceEntry(SamVitConfig(), MEDSAM, ReferenceSam, "SAM ViT-B at 1024 (MedSAM's architecture)"),
    "litemedsam": ReferenceEntry(TinyVitSamConfig(image_size=256, patch_embed="pointwise"), LITEMEDSAM, _tinyvit,
                                 "LiteMedSAM: TinyViT-5M with 1x1 patch embedding at 256"),
    "mobilesam": ReferenceEntry(TinyVitSamConfig(), MOBILESAM, _tinyvit, "MobileSAM: TinyViT-5M at 1024"),
    "efficientvit_sam_l0": ReferenceEntry(EfficientVitSamConfig(), EFFICIENTVIT_SAM, _efficientvit,
                                          "EfficientViT-SAM-L0 at 512"),
    "esp_medsam": ReferenceEntry(EspMedSamConfig(), ESP_MEDSAM, EspMedSam,
                                 "ESP-MedSAM released configuration: TinyViT 1024 + modality MLPs + 7 queries"),
}
REFERENCE_NAMES: tuple[str, ...] = tuple(REFERENCES)


def reference_key(name: str) -> str:
    """The registered name for ``name`` (case and "-"/"_" do not matter)."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in REFERENCES:
        raise InputError(f"unknown reference model {name!r}", fix=f"use one of {', '.join(REFERENCE_NAMES)}")
    return key


def reference_config(name: str, **overrides: Any) -> Any:
    """The native configuration of ``name`` with ``overrides`` (e.g. image_size, widths) applied."""
    default = REFERENCES[reference_key(name)].config
    known = {f.name: f for f in fields(default)}
    check_keys(overrides, known, f"settings of reference {name!r}")
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in overrides.items()}
    return replace(default, **values)


def build_reference(name: str, **overrides: Any) -> Teacher:
    """A randomly initialised reference model in eval mode (native size unless ``overrides`` say otherwise)."""
    key = reference_key(name)
    entry = REFERENCES[key]
    return entry.build(key, reference_config(key, **overrides), entry.profile).eval()


def build_from_spec(spec: dict[str, Any]) -> Teacher:
    """A freshly initialised reference model for a ``model_spec()`` (kind "reference")."""
    if spec.get("kind") != KIND or "name" not in spec:
        raise InputError(f"not a reference-model spec: {spec}", fix="save the model with edge_medsam.models.files")
    return build_reference(spec["name"], **{k: v for k, v in spec.items() if k not in ("kind", "name")})
