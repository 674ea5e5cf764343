"""X-ray: a posteroanterior chest radiograph from line integrals of attenuation (soft tissue, air-filled lungs,
heart, spine, ribs, clavicles, nodules) with Poisson photon counts; the style shift is a lower dose with
another detector response and edge-enhancing processing."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from edge_medsam.data.synth.noise import blur, fractal_noise, to_uint8
from edge_medsam.data.synth.scene import Scene, SynthSample
from edge_medsam.data.synth.shapes import blob, catmull_rom, irregular_radii, wandering_path

ALWAYS = ("lung_right", "lung_left", "heart")
SOMETIMES = ("nodule",)

# The patient's right lung (image left) from the apex clockwise, in fractions of the image; mirrored for the left.
_RIGHT_LUNG = np.array([[0.33, 0.11], [0.42, 0.17], [0.45, 0.3], [0.45, 0.47], [0.43, 0.62], [0.42, 0.72],
                        [0.32, 0.7], [0.2, 0.76], [0.12, 0.8], [0.1, 0.62], [0.11, 0.38], [0.18, 0.18]])
_BODY_RIGHT = np.array([[0.42, -0.02], [0.41, 0.06], [0.25, 0.09], [0.1, 0.13], [0.04, 0.22], [0.04, 0.6],
                        [0.05, 1.02]])


def _outline(rng: np.random.Generator, points: np.ndarray, size: int, mirror: bool, wobble: float) -> np.ndarray:
    pts = points + rng.normal(0.0, wobble, points.shape)
    if mirror:
        pts[:, 0] = 1.0 - pts[:, 0]
    return pts * size


def _bones(rng: np.random.Generator, size: int, lung_top: float) -> np.ndarray:
    """Projected bone thickness: posterior ribs, clavicles and the spine (float32, 0..1)."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    s = float(size)
    width = max(1, round(s * 0.018))
    spacing = rng.uniform(0.062, 0.072)
    for side in (-1, 1):
        for index in range(10):  # posterior ribs: from the spine outwards and down, curving at the wall
            y0 = lung_top + 0.02 + index * spacing
            xs = np.array([0.03, 0.16, 0.3, 0.38, 0.41])
            ys = y0 + np.array([0.0, -0.03, 0.0, 0.06, 0.12]) + 0.01 * index * np.array([0, 0, 0.5, 1, 1.5])
            pts = np.stack([0.5 + side * xs, ys], axis=1) * s
            draw.line(catmull_rom(pts, 6).ravel().tolist(), fill=110, width=width)
        clavicle = np.array([[0.04, 0.16], [0.16, 0.13], [0.3, 0.12], [0.38, 0.09]]) + rng.normal(0, 0.006, (4, 2))
        pts = np.stack([0.5 + side * clavicle[:, 0], clavicle[:, 1]], axis=1) * s
        draw.line(catmull_rom(pts, 6).ravel().tolist(), fill=255, width=round(width * 1.4), joint="curve")
    for index in range(22):  # vertebral bodies down the middle, mostly hidden by the mediastinum
        top = (index * 0.047 - 0.02) * s
        draw.rectangle([0.47 * s, top, 0.53 * s, top + 0.038 * s], fill=90)
    canvas = canvas.filter(ImageFilter.GaussianBlur(0.8 * s / 256))
    return np.asarray(canvas, np.float32) / np.float32(255.0)


def _markings(rng: np.random.Generator, size: int) -> np.ndarray:
    """Lung markings: vessels fanning out from both hila, thinning towards the periphery (float32, 0..1)."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    s = float(size)
    for side in (-1, 1):
        hilum = (s * (0.5 + side * rng.uniform(0.06, 0.09)), s * rng.uniform(0.42, 0.5))
        for heading in rng.uniform(-1.6, 1.6, 16):
            direction = heading if side > 0 else np.pi - heading
            path = wandering_path(rng, hilum, direction, s * 0.012, int(rng.integers(10, 24)), 0.15)
            for part, width in zip(np.array_split(path, 3), (2.5, 1.6, 1.0), strict=True):
                draw.line(part.ravel().tolist(), fill=255, width=max(1, round(width * s / 256)))
    canvas = canvas.filter(ImageFilter.GaussianBlur(0.7 * s / 256))
    return np.asarray(canvas, np.float32) / np.float32(255.0)


def _anatomy(rng: np.random.Generator, size: int) -> tuple[Scene, np.ndarray]:
    scene = Scene(size, background="air")
    body = _outline(rng, _BODY_RIGHT, size, False, 0.006)
    mirrored = body[::-1] * [-1.0, 1.0] + [float(size), 0.0]
    trunk = np.concatenate([body, mirrored])
    scene.polygon(scene.region("body"), catmull_rom(trunk, 6))
    scale = rng.uniform(0.94, 1.04)
    centre = np.array([0.5, 0.45])
    lungs = []
    for mirror, name in ((False, "lung_right"), (True, "lung_left")):
        pts = _outline(rng, (_RIGHT_LUNG - centre) * scale + centre, size, mirror, 0.008)
        outline = catmull_rom(pts, 8, closed=True)
        scene.polygon(scene.region("lung", name), outline)
        lungs.append(outline)
    s = float(size)
    heart = blob(s * rng.uniform(0.52, 0.57), s * rng.uniform(0.6, 0.65), s * rng.uniform(0.13, 0.17),
                 s * rng.uniform(0.11, 0.14), rng.uniform(-0.45, -0.2), irregular_radii(rng, 0.04, 3))
    scene.polygon(scene.region("heart", "heart"), heart)
    in_lung = scene.tissue_mask("lung")
    for _ in range(rng.choice(3, p=(0.3, 0.45, 0.25))):
        ys, xs = np.nonzero(in_lung[::4, ::4])
        if len(xs) == 0:
            break
        pick = rng.integers(len(xs))
        radius = s * rng.uniform(0.01, 0.028)
        scene.polygon(scene.region("nodule", "nodule", "lesion"),
                      blob(xs[pick] * 4 + 2, ys[pick] * 4 + 2, radius, radius * rng.uniform(0.8, 1.0), 0.0,
                           irregular_radii(rng, 0.1, 4)))
    lung_top = float(min(outline[:, 1].min() for outline in lungs)) / s
    return scene, _bones(rng, size, lung_top)


def generate_xray(geometry: np.random.Generator, appearance: np.random.Generator, size: int,
                  shifted: bool) -> SynthSample:
    """One chest radiograph, 8-bit grey (bright = attenuating)."""
    scene, bones = _anatomy(geometry, size)
    markings = _markings(geometry, size)
    labels, objects = scene.finish()
    rng = appearance
    s = float(size)
    body = scene.tissue_mask("body", "lung", "heart", "nodule").astype(np.float32)
    lung = scene.tissue_mask("lung", "nodule").astype(np.float32)
    mediastinum = np.zeros((size, size), np.float32)
    mediastinum[:, int(0.42 * s):int(0.58 * s)] = 1.0
    heart = scene.tissue_mask("heart").astype(np.float32)
    nodule = scene.tissue_mask("nodule").astype(np.float32)
    # Line integrals of attenuation: thickness grows smoothly inwards from the skin; lungs replace tissue by air.
    # The smooth parts share one wide blur, the sharp lung edge and the nodule one narrow blur.
    smooth = blur(2.3 * body + 0.5 * mediastinum * body + 0.12 * heart - 0.56 * lung, 0.04 * s)
    sharp = blur(rng.uniform(0.12, 0.3) * nodule - 0.69 * lung, 0.006 * s)
    path = (smooth + sharp + rng.uniform(0.35, 0.6) * bones
            + lung * (0.05 * fractal_noise(rng, size, 12, 3) + 0.18 * markings))
    dose = rng.uniform(600, 1200) if shifted else rng.uniform(2500, 5000)
    counts = rng.poisson(np.float32(dose) * np.exp(-np.maximum(path, 0.0)))
    density = np.maximum(np.log(np.float32(dose) / np.maximum(counts, 1).astype(np.float32)) / np.float32(3.0), 0.0)
    if shifted:  # vendor processing: unsharp masking and a flatter curve
        density = np.maximum(density + 0.8 * (density - blur(density, 0.02 * s)), 0.0)
        image = density ** np.float32(rng.uniform(0.6, 0.8))
    else:
        image = density ** np.float32(rng.uniform(0.9, 1.15))
    return SynthSample(to_uint8(image), labels, objects, False, "xray")
