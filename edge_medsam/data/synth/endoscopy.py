"""Endoscopy: a colonoscopy frame looking down the lumen, with haustral folds, submucosal vessels, polyps,
specular highlights and vignetting inside the scope's rounded field; the style shift is narrow-band imaging
(teal mucosa, brown vessels)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from edge_medsam.data.synth.noise import blur, colour, fractal_noise, smooth_noise, to_rgb8
from edge_medsam.data.synth.scene import Scene, SynthSample
from edge_medsam.data.synth.shapes import blob, grid, irregular_radii

ALWAYS = ("polyp",)
SOMETIMES = ()

_WHITE_LIGHT = {"mucosa": (0.86, 0.47, 0.38), "polyp": (0.9, 0.56, 0.46), "vessel": (0.62, 0.18, 0.16)}
_NARROW_BAND = {"mucosa": (0.55, 0.62, 0.55), "polyp": (0.62, 0.52, 0.4), "vessel": (0.38, 0.26, 0.16)}


def _free_spot(rng: np.random.Generator, s: float, lumen: tuple[float, float, float],
               radius: float) -> tuple[float, float]:
    """A polyp centre off the lumen and inside the scope's field (the last try if none of 30 fits)."""
    for _ in range(30):
        px, py = rng.uniform(0.15, 0.85, 2) * s
        off_lumen = np.hypot(px - lumen[0], py - lumen[1]) > lumen[2] * 1.2 + radius
        if off_lumen and np.hypot(px - s / 2, py - s / 2) < s * 0.45 - radius:
            break
    return px, py


def _anatomy(rng: np.random.Generator, size: int) -> tuple[Scene, tuple[float, float, float], list[np.ndarray]]:
    scene = Scene(size, background="mucosa")
    s = float(size)
    lumen = (s * rng.uniform(0.3, 0.7), s * rng.uniform(0.3, 0.7), s * rng.uniform(0.05, 0.1))
    folds = []
    radius = lumen[2] * rng.uniform(1.5, 2.0)
    while radius < s:
        folds.append(blob(lumen[0], lumen[1], radius, radius * rng.uniform(0.75, 1.0), rng.uniform(0, np.pi),
                          irregular_radii(rng, 0.1, 5)))
        radius *= rng.uniform(1.45, 1.8)
    scene.polygon(scene.region("lumen"), blob(*lumen, lumen[2] * rng.uniform(0.7, 1.0), rng.uniform(0, np.pi),
                                              irregular_radii(rng, 0.15, 4)))
    for index in range(int(rng.choice((1, 2, 3), p=(0.5, 0.3, 0.2)))):
        radius = s * (rng.uniform(0.08, 0.17) if index == 0 else rng.uniform(0.03, 0.06))
        px, py = _free_spot(rng, s, lumen, radius)
        scene.polygon(scene.region("polyp", "polyp", "lesion"),
                      blob(px, py, radius, radius * rng.uniform(0.75, 1.0), rng.uniform(0, np.pi),
                           irregular_radii(rng, 0.08, 4)))
    x, y = grid(size)
    field = rng.uniform(0.56, 0.62) * s
    scene.mask(scene.region("outside"), (x - s / 2) ** 2 + (y - s / 2) ** 2 > field * field)
    return scene, lumen, folds


def generate_endoscopy(geometry: np.random.Generator, appearance: np.random.Generator, size: int,
                       shifted: bool) -> SynthSample:
    """One colonoscopy frame, 8-bit RGB."""
    scene, lumen, folds = _anatomy(geometry, size)
    labels, objects = scene.finish()
    rng = appearance
    s = float(size)
    palette = _NARROW_BAND if shifted else _WHITE_LIGHT
    x, y = grid(size)
    # The scope's light falls off with depth: walls near the lumen are far away and dark.
    to_lumen = np.sqrt((x - np.float32(lumen[0])) ** 2 + (y - np.float32(lumen[1])) ** 2) / np.float32(s * 0.55)
    light = np.clip(to_lumen, 0.0, 1.3) ** np.float32(0.7)
    # Folds: count the fold rings around each pixel; blurring that staircase and subtracting it lights the side
    # of every fold that faces the scope and shades the side that faces the lumen.
    rings = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(rings)
    for level, fold in enumerate(reversed(folds), start=1):
        draw.polygon(fold.ravel().tolist(), fill=level)
    steps = np.asarray(rings, np.float32)
    relief = blur(steps, 0.025 * s) - steps
    light *= 1.0 + 0.9 * np.clip(relief, -0.6, 0.6)

    polyp = scene.tissue_mask("polyp").astype(np.float32)
    spread = 0.025 * s
    height = blur(blur(polyp, spread), 1.5)  # the second, small blur removes the first one's resampling blocks
    slope_y, slope_x = np.gradient(height)
    towards = rng.normal(0.0, 1.0, 2) * spread  # lit from a random side; slopes scaled to about +-0.5
    light *= 1.0 + 0.2 * height - (slope_x * np.float32(towards[0]) + slope_y * np.float32(towards[1]))
    ridge = np.abs(relief) > 0.25
    lumen_mask = scene.tissue_mask("lumen").astype(np.float32)
    light *= 1.0 - 0.9 * blur(lumen_mask, 0.03 * s)

    vessels = np.clip(1.0 - np.abs(fractal_noise(rng, size, 10, 3)) / 0.08, 0.0, 1.0) * (1.0 - polyp)
    mucosa = colour(palette["mucosa"]) * np.float32(rng.uniform(0.9, 1.08))
    image = mucosa + (0.6 * vessels) * (colour(palette["vessel"]) - mucosa)
    bump = blur(polyp, 0.004 * s) * (1.0 + 0.15 * smooth_noise(rng, size, 30))
    image += bump * (colour(palette["polyp"]) - colour(palette["mucosa"]))
    image *= light * (1.0 + 0.05 * smooth_noise(rng, size, 6))

    glints = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(glints)
    ridge_points = np.argwhere(ridge[::3, ::3] > 0) * 3
    polyp_points = np.argwhere(height[::3, ::3] > 0.8) * 3
    for points, count in ((ridge_points, rng.integers(6, 16)), (polyp_points, rng.integers(2, 6))):
        for py, px in points[rng.integers(0, max(1, len(points)), count)] if len(points) else []:
            r = rng.uniform(0.5, 2.5) * s / 256
            draw.ellipse([px - 2 * r, py - r, px + 2 * r, py + r], fill=255)
    image += blur(np.asarray(glints, np.float32) / np.float32(255.0), 0.6 * s / 256)
    vignette = 1.0 - 0.4 * (((x - s / 2) ** 2 + (y - s / 2) ** 2) / np.float32((0.6 * s) ** 2))
    image *= vignette * ~scene.tissue_mask("outside")
    image += np.float32(0.012) * rng.standard_normal((size, size), dtype=np.float32)
    return SynthSample(to_rgb8(image), labels, objects, False, "endoscopy")
