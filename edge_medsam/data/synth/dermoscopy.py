"""Dermoscopy: an irregular pigmented skin lesion (lighter rim, dark core, pigment network, sometimes a blue-white
veil) and small naevi on textured skin, with hair strands and the dark rim of the dermoscope; the style shift
is another skin type, lesion colouring, white balance and more hair."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from edge_medsam.data.synth.noise import blur, colour, fractal_noise, smooth_noise, to_rgb8, to_uint8
from edge_medsam.data.synth.scene import Scene, SynthSample
from edge_medsam.data.synth.shapes import blob, grid, irregular_radii, wandering_path

ALWAYS = ("lesion",)
SOMETIMES = ("naevus",)

# Linear RGB in [0, 1] per tissue; the skin itself is coloured by the renderer.
_COLOURS = {"skin": (0.0, 0.0, 0.0), "rim": (0.62, 0.42, 0.3), "core": (0.36, 0.2, 0.13), "veil": (0.42, 0.45, 0.56),
            "naevus": (0.5, 0.32, 0.22)}
_COLOURS_SHIFTED = {**_COLOURS, "rim": (0.7, 0.38, 0.36), "core": (0.45, 0.2, 0.2), "veil": (0.5, 0.5, 0.62),
                    "naevus": (0.55, 0.3, 0.25)}
_SKIN = ((0.9, 0.7, 0.62), (0.84, 0.62, 0.52))
_SKIN_SHIFTED = ((0.62, 0.42, 0.3), (0.72, 0.52, 0.4))


def _anatomy(rng: np.random.Generator, size: int) -> Scene:
    scene = Scene(size, background="skin")
    s = float(size)
    cx, cy = s * (0.5 + rng.uniform(-0.08, 0.08, 2))
    radius = s * rng.uniform(0.15, 0.25)
    aspect, angle = rng.uniform(0.7, 1.0), rng.uniform(0, np.pi)
    outline = irregular_radii(rng, rng.uniform(0.1, 0.18), 8, 128)
    lesion = scene.add_object("lesion", "lesion")
    scene.polygon(scene.add_region("rim", lesion), blob(cx, cy, radius, radius * aspect, angle, outline))
    shift = rng.uniform(-0.25, 0.25, 2) * radius
    core = radius * rng.uniform(0.35, 0.6)
    scene.polygon(scene.add_region("core", lesion), blob(cx + shift[0], cy + shift[1], core, core * aspect, angle,
                                                         irregular_radii(rng, 0.2, 6)))
    if rng.random() < 0.4:
        veil = radius * rng.uniform(0.2, 0.35)
        spot = rng.uniform(-0.35, 0.35, 2) * radius
        scene.polygon(scene.add_region("veil", lesion), blob(cx + spot[0], cy + spot[1], veil, veil * 0.8,
                                                             rng.uniform(0, np.pi), irregular_radii(rng, 0.2, 5)))
    for _ in range(rng.choice(3, p=(0.5, 0.3, 0.2))):
        theta = rng.uniform(0, 2 * np.pi)
        distance = radius * 1.5 + rng.uniform(0.0, 1.0) * max(0.0, s * 0.46 - radius * 1.5)
        small = s * rng.uniform(0.015, 0.04)
        scene.polygon(scene.region("naevus", "naevus", "lesion"),
                      blob(s / 2 + distance * np.cos(theta), s / 2 + distance * np.sin(theta), small,
                           small * rng.uniform(0.7, 1.0), rng.uniform(0, np.pi), irregular_radii(rng, 0.1, 3)))
    return scene


def _hair(rng: np.random.Generator, size: int, strands: int) -> Image.Image:
    """Opacity (8-bit mask) of dark hair strands crossing the image."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    s = float(size)
    for _ in range(strands):
        start = (rng.uniform(-0.1, 1.1) * s, rng.uniform(-0.1, 1.1) * s)
        path = wandering_path(rng, start, rng.uniform(0, 2 * np.pi), s * 0.02, int(rng.integers(20, 60)), 0.04,
                              rng.normal(0, 0.02))
        draw.line(path.ravel().tolist(), fill=int(rng.uniform(170, 240)), width=max(1, round(rng.uniform(1, 2.2) * s / 256)))
    return canvas.filter(ImageFilter.GaussianBlur(0.5 * s / 256))


def generate_dermoscopy(geometry: np.random.Generator, appearance: np.random.Generator, size: int,
                        shifted: bool) -> SynthSample:
    """One dermoscopic photograph, 8-bit RGB."""
    scene = _anatomy(geometry, size)
    labels, objects = scene.finish()
    rng = appearance
    s = float(size)
    tones = _SKIN_SHIFTED if shifted else _SKIN
    skin = colour(tones[rng.integers(len(tones))]) * np.float32(rng.uniform(0.92, 1.05))
    texture = fractal_noise(rng, size, 6, 3)
    creases = np.abs(smooth_noise(rng, size, 25, aspect=3.0))
    shade = 1.0 + 0.05 * texture - 0.04 * (creases < 0.12)
    image = skin * shade + smooth_noise(rng, size, 3) * colour((0.03, -0.03, -0.02))

    colours = blur(scene.lookup(_COLOURS_SHIFTED if shifted else _COLOURS), 0.012 * s)
    lesion = scene.tissue_mask("rim", "core", "veil", "naevus")
    alpha = blur(lesion.astype(np.float32), rng.uniform(0.6, 2.0) * s / 256)
    # Pigment network: the zero lines of fine smooth noise form a labyrinth of dark lines, present in patches.
    network = np.abs(smooth_noise(rng, size, rng.uniform(40, 55))) < 0.2
    patches = np.clip(smooth_noise(rng, size, 5) + 0.6, 0.0, 1.0)
    pigment = colours * (np.float32(rng.uniform(0.85, 1.1)) * (1.0 - 0.3 * network * patches * lesion))
    image += (pigment - image) * alpha

    x, y = grid(size)
    centre = s / 2 + rng.uniform(-0.03, 0.03, 2) * s
    rim = np.sqrt((x - np.float32(centre[0])) ** 2 + (y - np.float32(centre[1])) ** 2) / np.float32(s)
    scope = np.clip((np.float32(rng.uniform(0.64, 0.72)) - rim) / np.float32(0.02), 0.0, 1.0)
    image *= scope * (1.0 - 0.35 * rim * rim)
    # Hair lies on top of everything inside the scope's field; composited in 8 bits, where Pillow does it fast.
    hair = _hair(rng, size, int(rng.integers(10, 26) if shifted else rng.integers(0, 10)))
    hair = Image.fromarray(to_uint8(np.asarray(hair, np.float32) / np.float32(255.0) * scope))
    photo = Image.fromarray(to_rgb8(image))
    photo.paste((30, 20, 15), mask=hair)
    return SynthSample(np.array(photo), labels, objects, False, "dermoscopy")
