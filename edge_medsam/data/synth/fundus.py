"""Fundus: a colour photograph of the retina in its circular field, with the optic disc and cup, a branching
arterial and venous tree arching around the macula, and sometimes exudates and haemorrhages; the style shift
is another camera (paler, greener, flatter lighting)."""

from __future__ import annotations

import numpy as np

from edge_medsam.data.synth.noise import blur, fractal_noise, to_rgb8
from edge_medsam.data.synth.scene import Scene, SynthSample
from edge_medsam.data.synth.shapes import blob, grid, irregular_radii, wandering_path

ALWAYS = ("optic_disc", "optic_cup", "vessels")
SOMETIMES = ("exudate", "hemorrhage")

_COLOURS = {"retina": (0.8, 0.36, 0.16), "vein": (0.48, 0.1, 0.06), "artery": (0.66, 0.2, 0.1),
            "disc": (0.93, 0.66, 0.4), "cup": (0.98, 0.84, 0.62), "exudate": (0.95, 0.85, 0.4),
            "hemorrhage": (0.42, 0.06, 0.04), "outside": (0.0, 0.0, 0.0)}
_COLOURS_SHIFTED = {**_COLOURS, "retina": (0.66, 0.46, 0.22), "vein": (0.42, 0.2, 0.1), "artery": (0.56, 0.28, 0.14),
                    "disc": (0.9, 0.85, 0.6), "cup": (0.97, 0.95, 0.8), "hemorrhage": (0.38, 0.14, 0.06)}


def _vessel(scene: Scene, region: int, rng: np.random.Generator, start: tuple[float, float], heading: float,
            width: float, steps: int, drift: float, size: int, depth: int = 0) -> None:
    """One vessel and, recursively, its branches: a tapering random walk from ``start``."""
    path = wandering_path(rng, start, heading, size * 0.012, steps, 0.05, drift)
    for part, taper in zip(np.array_split(path, 3), (1.0, 0.8, 0.6), strict=True):
        scene.line(region, part, max(1.0, width * taper))
    if depth >= 3 or width < 1.2:
        return
    for at in rng.choice(np.arange(3, steps), size=min(steps - 3, int(rng.integers(1, 4))), replace=False):
        turn = rng.choice((-1.0, 1.0)) * rng.uniform(0.45, 0.9)
        direction = np.arctan2(*(path[at] - path[at - 1])[::-1]) + turn
        _vessel(scene, region, rng, tuple(path[at]), direction, width * 0.62, max(4, int(steps * 0.55)),
                -drift * 0.5, size, depth + 1)


def _anatomy(rng: np.random.Generator, size: int) -> tuple[Scene, tuple[float, float], float, tuple[float, float]]:
    scene = Scene(size, background="retina")
    s = float(size)
    field = s * rng.uniform(0.46, 0.49)
    side = rng.choice((-1.0, 1.0))  # which eye: the disc lies nasal, the macula temporal
    disc = (s / 2 + side * s * rng.uniform(0.2, 0.25), s / 2 + s * rng.uniform(-0.04, 0.04))
    fovea = (s / 2 - side * s * rng.uniform(0.02, 0.06), disc[1] + s * rng.uniform(0.0, 0.04))
    vessels = scene.add_object("vessels", "structure")
    veins, arteries = scene.add_region("vein", vessels), scene.add_region("artery", vessels)
    for region, width in ((veins, s * 0.012), (arteries, s * 0.009)):
        for vertical in (-1.0, 1.0):  # temporal arcades curve around the macula, nasal ones run straight out
            spread = rng.uniform(0.15, 0.35)
            _vessel(scene, region, rng, disc, np.arctan2(vertical, -side * spread), width, int(rng.integers(38, 50)),
                    side * vertical * rng.uniform(0.035, 0.055), size)
            _vessel(scene, region, rng, disc, np.arctan2(vertical, side * rng.uniform(0.4, 1.0)), width * 0.8,
                    int(rng.integers(18, 28)), 0.0, size)
    rd = s * rng.uniform(0.055, 0.075)
    scene.polygon(scene.region("disc", "optic_disc", "structure"),
                  blob(*disc, rd, rd * rng.uniform(1.0, 1.15), rng.normal(0, 0.1), irregular_radii(rng, 0.03, 3)))
    cup = rd * rng.uniform(0.3, 0.6)
    scene.polygon(scene.region("cup", "optic_cup", "structure"),
                  blob(disc[0] + rng.normal(0, 0.05) * rd, disc[1], cup, cup * rng.uniform(1.0, 1.2), 0.0,
                       irregular_radii(rng, 0.05, 3)))
    if rng.random() < 0.5:
        for _ in range(rng.integers(1, 9)):
            r = s * rng.uniform(0.004, 0.012)
            centre = np.array(fovea) + rng.normal(0, 0.1, 2) * s
            scene.polygon(scene.region("exudate", "exudate", "lesion"),
                          blob(*centre, r, r * rng.uniform(0.6, 1.0), rng.uniform(0, np.pi), irregular_radii(rng, 0.15, 3)))
    if rng.random() < 0.4:
        for _ in range(rng.integers(1, 5)):
            r = s * rng.uniform(0.008, 0.02)
            centre = np.array(fovea) + rng.normal(0, 0.15, 2) * s
            scene.polygon(scene.region("hemorrhage", "hemorrhage", "lesion"),
                          blob(*centre, r, r * rng.uniform(0.6, 1.0), rng.uniform(0, np.pi), irregular_radii(rng, 0.2, 4)))
    x, y = grid(size)
    scene.mask(scene.region("outside"), (x - s / 2) ** 2 + (y - s / 2) ** 2 > field * field)
    return scene, disc, field, fovea


def generate_fundus(geometry: np.random.Generator, appearance: np.random.Generator, size: int,
                    shifted: bool) -> SynthSample:
    """One fundus photograph, 8-bit RGB."""
    scene, disc, field, fovea = _anatomy(geometry, size)
    labels, objects = scene.finish()
    rng = appearance
    s = float(size)
    colours = scene.lookup(_COLOURS_SHIFTED if shifted else _COLOURS)
    colours = blur(colours, 0.6 * s / 256)
    x, y = grid(size)
    rim = ((x - s / 2) ** 2 + (y - s / 2) ** 2) / np.float32(field * field)
    falloff = rng.uniform(0.2, 0.3) if shifted else rng.uniform(0.4, 0.55)
    light = (1.0 - np.float32(falloff) * rim) * (1.0 + 0.04 * fractal_noise(rng, size, 5, 3))
    macula = np.exp(-((x - np.float32(fovea[0])) ** 2 + (y - np.float32(fovea[1])) ** 2) / np.float32(2 * (0.06 * s) ** 2))
    light *= 1.0 - np.float32(rng.uniform(0.25, 0.4)) * macula
    glow = np.exp(-((x - np.float32(disc[0])) ** 2 + (y - np.float32(disc[1])) ** 2) / np.float32(2 * (0.07 * s) ** 2))
    image = colours * ((light + 0.12 * glow) * ~scene.tissue_mask("outside"))
    image += np.float32(0.01) * rng.standard_normal((size, size), dtype=np.float32)
    return SynthSample(to_rgb8(image), labels, objects, False, "fundus")
