"""PET: FDG uptake (SUV) through the abdomen phantom CT uses, with hot lesions, a blurry point-spread and
count noise; the style shift is a sharper, noisier scanner with another display range."""

from __future__ import annotations

import numpy as np

from edge_medsam.data.synth.abdomen import build_phantom, paint_slice
from edge_medsam.data.synth.noise import blur, to_uint8
from edge_medsam.data.synth.scene import SynthSample

ALWAYS = ("liver", "lesion")
SOMETIMES = ("spleen", "kidney_right", "kidney_left", "lymph_node")

_LABELLED = frozenset(ALWAYS + SOMETIMES)
_SUV = {"air": 0.0, "table": 0.0, "fat": 0.35, "visceral_fat": 0.5, "muscle": 0.8, "bowel": 1.7, "gas": 0.05,
        "liver": 2.3, "stomach": 1.9, "spleen": 1.9, "kidney": 3.2, "renal_sinus": 7.0, "node": 5.0, "cortical": 0.5,
        "cancellous": 1.5, "csf": 0.3, "aorta": 1.8, "ivc": 1.7, "lesion": 6.0}


def generate_pet(geometry: np.random.Generator, appearance: np.random.Generator, size: int,
                 shifted: bool) -> SynthSample:
    """One axial PET slice through the liver, 8-bit grey (brighter = more uptake)."""
    phantom = build_phantom(geometry)
    scene = paint_slice(phantom, phantom.focus_z, size, _LABELLED)
    labels, objects = scene.finish()
    rng = appearance
    # Lesion avidity varies from barely above liver to very hot.
    count = len(scene.regions)
    avid = np.array([r.tissue in ("lesion", "node") for r in scene.regions])
    uptake = np.array([_SUV[r.tissue] > 0.1 for r in scene.regions])
    jitter = np.where(avid, rng.uniform(-2.8, 6.0, count), rng.normal(0.0, 0.15, count) * uptake).astype(np.float32)
    suv = np.maximum(scene.lookup(_SUV, jitter), 0.0)
    scale = size / 256
    # Bicubic resampling in the blur may undershoot a little below zero: counts cannot.
    suv = np.maximum(blur(suv, (rng.uniform(1.2, 1.8) if shifted else rng.uniform(2.2, 3.0)) * scale), 0.0)
    counts_per_suv = rng.uniform(6, 12) if shifted else rng.uniform(25, 45)
    suv = rng.poisson(suv * np.float32(counts_per_suv)).astype(np.float32) / np.float32(counts_per_suv)
    suv = blur(suv, 1.0 * scale)
    display_max = rng.uniform(5.0, 7.0) if shifted else rng.uniform(8.0, 11.0)
    return SynthSample(to_uint8(suv / np.float32(display_max)), labels, objects, False, "pet")
