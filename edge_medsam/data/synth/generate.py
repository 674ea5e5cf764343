"""Entry points: one sample of a modality, or one CT volume, from a seed; geometry and appearance drawn apart."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_medsam.data.synth import (
    ct,
    dermoscopy,
    endoscopy,
    fundus,
    mammography,
    microscopy,
    mr,
    oct_scan,
    pet,
    ultrasound,
    xray,
)
from edge_medsam.data.synth.abdomen import build_phantom
from edge_medsam.data.synth.scene import SynthSample
from edge_medsam.errors import InputError
from edge_medsam.modalities import get_modality

MIN_SIZE, MAX_SIZE = 32, 4096
MAX_SLICES = 1024

Seed = int | np.random.SeedSequence | np.random.Generator

# Child streams of a sample's seed: anatomy, normal appearance, shifted appearance.
_GEOMETRY, _APPEARANCE, _SHIFTED_APPEARANCE = 0, 1, 2


@dataclass(frozen=True)
class SynthModality:
    """A modality the corpus can draw: its generator and the object classes its samples hold."""

    name: str
    generate: Callable[[np.random.Generator, np.random.Generator, int, bool], SynthSample]
    always: tuple[str, ...]  # present in every sample (at sizes >= 128)
    sometimes: tuple[str, ...]


SYNTH_MODALITIES: dict[str, SynthModality] = {
    "ct": SynthModality("ct", ct.generate_ct, ct.ALWAYS, ct.SOMETIMES),
    "mr": SynthModality("mr", mr.generate_mr, mr.ALWAYS, mr.SOMETIMES),
    "pet": SynthModality("pet", pet.generate_pet, pet.ALWAYS, pet.SOMETIMES),
    "xray": SynthModality("xray", xray.generate_xray, xray.ALWAYS, xray.SOMETIMES),
    "ultrasound": SynthModality("ultrasound", ultrasound.generate_ultrasound, ultrasound.ALWAYS, ultrasound.SOMETIMES),
    "dermoscopy": SynthModality("dermoscopy", dermoscopy.generate_dermoscopy, dermoscopy.ALWAYS, dermoscopy.SOMETIMES),
    "endoscopy": SynthModality("endoscopy", endoscopy.generate_endoscopy, endoscopy.ALWAYS, endoscopy.SOMETIMES),
    "fundus": SynthModality("fundus", fundus.generate_fundus, fundus.ALWAYS, fundus.SOMETIMES),
    "microscopy": SynthModality("microscopy", microscopy.generate_microscopy, microscopy.ALWAYS, microscopy.SOMETIMES),
    "oct": SynthModality("oct", oct_scan.generate_oct, oct_scan.ALWAYS, oct_scan.SOMETIMES),
    "mammography": SynthModality("mammography", mammography.generate_mammography, mammography.ALWAYS,
                                 mammography.SOMETIMES),
}


def seed_sequence(seed: Seed) -> np.random.SeedSequence:
    """A SeedSequence from an int, a SeedSequence (used as is) or a Generator (which draws the entropy)."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, np.random.Generator):
        return np.random.SeedSequence(seed.integers(0, 2**63, size=2).tolist())
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.SeedSequence(int(seed))
    raise InputError(f"seed {seed!r} is not a non-negative integer, SeedSequence or numpy Generator",
                     fix="pass e.g. seed=0")


def streams(seed: Seed, style_shift: bool) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent (geometry, appearance) generators: the shifted style changes only the appearance stream."""
    seq = seed_sequence(seed)

    def child(index: int) -> np.random.Generator:
        # An explicit spawn key instead of seq.spawn(): the same seed gives the same streams on every call.
        return np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, index)))

    return child(_GEOMETRY), child(_SHIFTED_APPEARANCE if style_shift else _APPEARANCE)


def check_size(size: int) -> int:
    """The image side as an int; InputError unless it is an integer in MIN_SIZE..MAX_SIZE."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise InputError(f"synthetic image size {size!r} is not an integer in {MIN_SIZE}..{MAX_SIZE}",
                         fix="use e.g. 256")
    return int(size)


def synth_modality(modality: str | int) -> SynthModality:
    """The generator entry for a modality name, alias or index; InputError if the corpus cannot draw it."""
    name = get_modality(modality).name
    if name not in SYNTH_MODALITIES:
        raise InputError(f"the synthetic corpus has no generator for modality {name!r}",
                         fix=f"use one of {', '.join(SYNTH_MODALITIES)}")
    return SYNTH_MODALITIES[name]


def generate_sample(modality: str | int, seed_or_rng: Seed, size: int = 256, style_shift: bool = False) -> SynthSample:
    """Draw one synthetic image of ``modality`` with its exact label map (same seed: same sample)."""
    entry = synth_modality(modality)
    geometry, appearance = streams(seed_or_rng, style_shift)
    return entry.generate(geometry, appearance, check_size(size), bool(style_shift))


def check_slices(slices: int) -> int:
    """The slice count of a volume as an int; InputError unless it is an integer in 1..MAX_SLICES."""
    if isinstance(slices, bool) or not isinstance(slices, (int, np.integer)) or not 1 <= slices <= MAX_SLICES:
        raise InputError(f"slice count {slices!r} is not an integer in 1..{MAX_SLICES}", fix="use e.g. 32")
    return int(slices)


def generate_volume(seed_or_rng: Seed, size: int = 128, slices: int = 32, style_shift: bool = False) -> ct.SynthVolume:
    """Draw one CT volume (int16 HU, labels consistent across slices, RAS+ affine) of ``size`` x ``size`` x ``slices``."""
    geometry, appearance = streams(seed_or_rng, style_shift)
    return ct.render_volume(build_phantom(geometry), check_slices(slices), check_size(size), appearance,
                            bool(style_shift))
