"""Mammography: a mediolateral-oblique view with the pectoral muscle, fibroglandular tissue and Cooper's
ligaments, a (sometimes spiculated) mass and sometimes a cluster of microcalcifications; the style shift is
another vendor's processing and a denser breast."""

from __future__ import annotations

import numpy as np

from edge_medsam.data.synth.noise import blur, fractal_noise, to_uint8
from edge_medsam.data.synth.scene import Scene, SynthSample
from edge_medsam.data.synth.shapes import blob, irregular_radii, spiculated_radii

ALWAYS = ("breast", "pectoral_muscle", "mass")
SOMETIMES = ("calcification",)


def _anatomy(rng: np.random.Generator, size: int) -> tuple[Scene, bool]:
    scene = Scene(size, background="air")
    s = float(size)
    flip = bool(rng.random() < 0.5)  # left or right breast: the chest wall on either side

    def place(points: np.ndarray) -> np.ndarray:
        return np.stack([s - points[:, 0], points[:, 1]], axis=1) if flip else points

    top, bottom = -0.02 * s, rng.uniform(0.88, 1.0) * s
    reach, axilla = rng.uniform(0.6, 0.8) * s, rng.uniform(0.3, 0.45) * s
    t = np.linspace(0.0, 1.0, 64)
    width = np.maximum(axilla * (1.0 - t) ** 1.5, reach * np.sin(np.pi * t) ** rng.uniform(0.45, 0.7))
    outline = np.concatenate([[[-1.0, top]], np.stack([width, top + t * (bottom - top)], axis=1), [[-1.0, bottom]]])
    scene.polygon(scene.region("breast", "breast", "organ"), place(outline))
    muscle_top, muscle_length = rng.uniform(0.18, 0.32) * s, rng.uniform(0.35, 0.6) * s
    edge = np.linspace(0.0, 1.0, 24)
    bulge = rng.uniform(0.0, 0.12) * s * np.sin(np.pi * edge)
    hypotenuse = np.stack([muscle_top * (1 - edge) + bulge * 0.7, top + edge * (muscle_length - top) + bulge * 0.7], 1)
    scene.polygon(scene.region("muscle", "pectoral_muscle", "structure"),
                  place(np.concatenate([[[-1.0, top]], hypotenuse, [[-1.0, muscle_length]]])))

    def inside(margin: float) -> tuple[float, float]:
        """A point well inside the glandular part of the breast (below the muscle, away from the skin)."""
        y = rng.uniform(max(muscle_length * 0.8, 0.3 * s), bottom - 0.15 * s)
        tt = (y - top) / (bottom - top)
        local = max(axilla * (1.0 - tt) ** 1.5, reach * np.sin(np.pi * tt) ** 0.6)
        return rng.uniform(0.2, 0.75) * max(local - margin, 0.1 * s), y

    radius = rng.uniform(0.03, 0.065) * s
    spiculated = rng.random() < 0.5
    radii = spiculated_radii(rng, int(rng.integers(8, 16)), 0.8) if spiculated else irregular_radii(rng, 0.08, 4)
    cx, cy = inside(radius * 1.8)
    scene.polygon(scene.region("mass", "mass", "lesion"),
                  place(blob(cx, cy, radius, radius * rng.uniform(0.75, 1.0), rng.uniform(0, np.pi), radii)))
    if rng.random() < 0.4:
        calcification = scene.add_object("calcification", "lesion")
        region = scene.add_region("calcification", calcification)
        cx, cy = inside(0.05 * s)
        for dx, dy in rng.normal(0.0, 0.02 * s, (int(rng.integers(4, 11)), 2)):
            dot = max(1.3, 0.005 * s)
            scene.polygon(region, place(blob(cx + dx, cy + dy, dot, dot * rng.uniform(0.7, 1.0))))
    return scene, flip


def generate_mammography(geometry: np.random.Generator, appearance: np.random.Generator, size: int,
                         shifted: bool) -> SynthSample:
    """One mammogram, 8-bit grey (bright = dense)."""
    scene, flip = _anatomy(geometry, size)
    labels, objects = scene.finish()
    rng = appearance
    s = float(size)
    breast = (scene.region_map() > 0).astype(np.float32)
    thickness = blur(breast, 0.04 * s)
    glandular = fractal_noise(rng, size, 5, 4) + np.float32(rng.uniform(0.3, 0.8) if shifted else rng.uniform(-0.4, 0.2))
    dense = 1.0 / (1.0 + np.exp(-2.5 * glandular)) * blur(breast, 0.1 * s)
    strands = np.clip(1.0 - np.abs(fractal_noise(rng, size, 10, 3, aspect=3.0)) / 0.1, 0.0, 1.0)
    if flip:
        dense, strands = dense[:, ::-1], strands[:, ::-1]
    mass = rng.uniform(0.12, 0.25)  # a mass is only somewhat denser than glandular tissue
    tissue = scene.lookup({"air": 0.0, "breast": 0.0, "muscle": 0.6, "mass": mass, "calcification": 1.4})
    tissue = blur(tissue, 0.8 * s / 256)
    attenuation = thickness * (0.35 + 0.4 * dense + 0.05 * strands * breast + tissue)
    image = 1.0 - np.exp(-np.float32(rng.uniform(1.3, 1.7)) * np.maximum(attenuation, 0.0))
    image = image ** np.float32(rng.uniform(1.4, 1.8) if shifted else rng.uniform(0.9, 1.1))
    image = image + np.float32(0.015) * rng.standard_normal((size, size), dtype=np.float32)
    return SynthSample(to_uint8(image), labels, objects, False, "mammography")
