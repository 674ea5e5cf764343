"""Microscopy: an H&E-stained tissue section with many touching nuclei, each its own instance label, in fibrous
pink stroma with empty lumina; colours come from Beer-Lambert stain mixing. The style shift is an
immunohistochemistry slide: haematoxylin counterstain with brown DAB-positive nuclei on pale stroma."""

from __future__ import annotations

import numpy as np

from edge_medsam.data.synth.noise import blur, colour, fractal_noise, smooth_noise, to_rgb8
from edge_medsam.data.synth.scene import Scene, SynthSample
from edge_medsam.data.synth.shapes import blobs, grid, irregular_radii

ALWAYS = ("nucleus",)
SOMETIMES = ()

# Optical density per unit stain for R, G, B (Ruifrok & Johnston's vectors).
_HAEMATOXYLIN = colour((0.65, 0.70, 0.29))
_EOSIN = colour((0.07, 0.99, 0.11))
_DAB = colour((0.27, 0.57, 0.78))
_NUCLEUS_POINTS = 20


def _anatomy(rng: np.random.Generator, size: int) -> Scene:
    scene = Scene(size, background="stroma")
    s = float(size)
    x, y = grid(size)
    lumina = np.zeros((size, size), bool)
    for _ in range(rng.integers(0, 3)):
        cx, cy, r = rng.uniform(0.15, 0.85) * s, rng.uniform(0.15, 0.85) * s, rng.uniform(0.06, 0.14) * s
        lumina |= ((x - cx) / r) ** 2 + ((y - cy) / (r * rng.uniform(0.5, 1.0))) ** 2 < 1.0
    scene.mask(scene.region("lumen"), lumina)
    # Nuclei on a jittered grid, kept where a smooth "cellularity" field is high: dense, touching clusters.
    radius = s * rng.uniform(0.024, 0.034)
    spacing = 2.0 * radius * rng.uniform(0.8, 0.95)
    centres = np.stack(np.meshgrid(np.arange(-radius, s + radius, spacing), np.arange(-radius, s + radius, spacing)),
                       axis=-1).reshape(-1, 2)
    centres = centres + rng.normal(0.0, 0.25 * spacing, centres.shape)
    density = smooth_noise(rng, size, 4)
    index = np.clip(centres.astype(int), 0, size - 1)
    keep = density[index[:, 1], index[:, 0]] + rng.normal(0.0, 0.5, len(centres)) > rng.uniform(-0.1, 0.5)
    keep &= ~lumina[index[:, 1], index[:, 0]]
    centres = centres[keep][rng.permutation(int(keep.sum()))]
    count = len(centres)
    rx = radius * rng.uniform(0.75, 1.1, count)
    outlines = blobs(centres, rx, rx * rng.uniform(0.55, 0.95, count), rng.uniform(0, np.pi, count),
                     irregular_radii(rng, 0.06, 3, _NUCLEUS_POINTS, count))
    for outline in outlines:
        scene.polygon(scene.region("nucleus", "nucleus", "instance"), outline)
    return scene


def generate_microscopy(geometry: np.random.Generator, appearance: np.random.Generator, size: int,
                        shifted: bool) -> SynthSample:
    """One stained tissue tile, 8-bit RGB; every nucleus is its own label."""
    scene = _anatomy(geometry, size)
    labels, objects = scene.finish()
    rng = appearance
    s = float(size)
    count = len(scene.regions)
    is_nucleus = np.array([r.tissue == "nucleus" for r in scene.regions])
    nucleus = scene.tissue_mask("nucleus")
    lumen = scene.tissue_mask("lumen").astype(np.float32)
    chromatin = 1.0 + 0.25 * smooth_noise(rng, size, s / 5)
    hematoxylin = scene.lookup({"stroma": 0.06, "lumen": 0.0, "nucleus": 0.0},
                               np.where(is_nucleus, rng.uniform(0.7, 1.3, count), 0.0).astype(np.float32))
    hematoxylin = blur(hematoxylin * np.where(nucleus, chromatin, 1.0), 0.7 * s / 256)
    fibres = fractal_noise(rng, size, 8, 3, aspect=rng.uniform(3, 6))
    cytoplasm = blur(nucleus.astype(np.float32), 0.02 * s)
    eosin = (0.2 + 0.07 * fibres + 0.15 * cytoplasm) * (1.0 - blur(lumen, 0.005 * s))
    if shifted:
        positive = np.where(is_nucleus & (rng.random(count) < rng.uniform(0.2, 0.6)), rng.uniform(0.6, 1.2, count), 0.0)
        dab = blur(scene.lookup({"stroma": 0.0, "lumen": 0.0, "nucleus": 0.0}, positive.astype(np.float32)), 0.7)
        density = 0.45 * hematoxylin * _HAEMATOXYLIN + 0.15 * eosin * _EOSIN + dab * _DAB
    else:
        stain = rng.uniform(0.85, 1.2, 2).astype(np.float32)
        density = stain[0] * hematoxylin * _HAEMATOXYLIN + stain[1] * eosin * _EOSIN
    density = np.maximum(density, 0.0) * np.float32(rng.uniform(0.9, 1.1))
    image = np.exp(-density * np.float32(np.log(10.0))) * np.float32(rng.uniform(0.93, 1.0))
    image += np.float32(0.012) * rng.standard_normal((size, size), dtype=np.float32)
    return SynthSample(to_rgb8(image), labels, objects, False, "microscopy")
