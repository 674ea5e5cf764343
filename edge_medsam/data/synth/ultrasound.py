"""Ultrasound: a sector (fan) B-mode image of a gland with a hypoechoic nodule, anechoic cyst and vessel and a
bright calcification, with speckle, depth attenuation, posterior enhancement and acoustic shadowing; the style
shift is another scanner (speckle grain, gain, dynamic range, tissue contrast)."""

from __future__ import annotations

import numpy as np

from edge_medsam.data.synth.noise import blur, speckle, to_uint8
from edge_medsam.data.synth.scene import Scene, SynthSample
from edge_medsam.data.synth.shapes import blob, grid, irregular_radii

ALWAYS = ("gland", "nodule", "calcification")
SOMETIMES = ("cyst", "vessel")

# Echogenicity (backscatter amplitude) per tissue.
_ECHO = {"outside": 0.0, "tissue": 0.3, "muscle": 0.16, "fascia": 1.2, "gland": 0.62, "nodule": 0.2, "cyst": 0.01,
         "vessel": 0.01, "calcification": 3.0}
_ECHO_SHIFTED = {**_ECHO, "tissue": 0.4, "muscle": 0.25, "gland": 0.55, "nodule": 0.3}
_ANGLE_BINS = 256


class _Fan:
    """Sector geometry: apex above the image centre, opening half-angle, near and far radii (pixels)."""

    def __init__(self, rng: np.random.Generator, size: int):
        s = float(size)
        self.apex = (s / 2, -s * rng.uniform(0.02, 0.1))
        self.half_angle = rng.uniform(0.55, 0.75)
        self.near = s * rng.uniform(0.1, 0.16) - self.apex[1]
        self.far = s * rng.uniform(0.92, 0.99) - self.apex[1]

    def polar(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Radius and angle (0 = straight down) of every pixel."""
        x, y = grid(size)
        dx, dy = x - np.float32(self.apex[0]), y - np.float32(self.apex[1])
        return np.sqrt(dx * dx + dy * dy), np.arctan2(dx, dy)

    def point(self, depth: float, angle: float) -> tuple[float, float]:
        """Pixel position at relative depth (0 near, 1 far) and relative angle (-1..1 across the fan)."""
        radius = self.near + depth * (self.far - self.near)
        theta = angle * self.half_angle
        return self.apex[0] + radius * np.sin(theta), self.apex[1] + radius * np.cos(theta)


def _anatomy(rng: np.random.Generator, size: int) -> tuple[Scene, _Fan]:
    scene = Scene(size, background="tissue")
    fan = _Fan(rng, size)
    span = fan.far - fan.near
    radius_map, angle_map = fan.polar(size)
    depth = (radius_map - fan.near) / span
    top, bottom = rng.uniform(0.03, 0.06), rng.uniform(0.12, 0.18)
    scene.mask(scene.region("muscle"), (depth > top) & (depth < bottom))
    fascia = scene.region("fascia")
    for level in (top, bottom):
        scene.mask(fascia, np.abs(depth - level) < 0.006 + 0.3 / size)
    gx, gy = fan.point(rng.uniform(0.38, 0.5), rng.uniform(-0.25, 0.25))
    grx, gry = span * rng.uniform(0.3, 0.42), span * rng.uniform(0.2, 0.28)
    gangle = rng.normal(0, 0.15)
    scene.polygon(scene.region("gland", "gland"), blob(gx, gy, grx, gry, gangle, irregular_radii(rng, 0.05, 4)))
    if rng.random() < 0.6:
        vx, vy = fan.point(rng.uniform(0.45, 0.75), rng.choice((-0.75, 0.75)))
        radius = span * rng.uniform(0.04, 0.07)
        scene.polygon(scene.region("vessel", "vessel", "structure"), blob(vx, vy, radius, radius * 0.9))
    offset = rng.uniform(-0.45, 0.45, 2)
    nx, ny = gx + offset[0] * grx, gy + offset[1] * gry
    radius = span * rng.uniform(0.06, 0.12)
    scene.polygon(scene.region("nodule", "nodule", "lesion"),
                  blob(nx, ny, radius, radius * rng.uniform(0.6, 0.9), rng.uniform(0, np.pi),
                       irregular_radii(rng, 0.15, 6)))
    if rng.random() < 0.6:
        cx, cy = fan.point(rng.uniform(0.15, 0.6), rng.uniform(-0.7, 0.7))
        radius = span * rng.uniform(0.025, 0.06)
        scene.polygon(scene.region("cyst", "cyst", "lesion"), blob(cx, cy, radius, radius * rng.uniform(0.75, 1.0)))
    # The calcification sits on the other side of the gland, so its shadow does not hide the nodule.
    side = -np.sign(offset[0]) or 1.0
    radius = span * rng.uniform(0.012, 0.025)
    scene.polygon(scene.region("calcification", "calcification", "lesion"),
                  blob(gx + side * grx * rng.uniform(0.55, 0.75), gy + gry * rng.uniform(-0.3, 0.2), radius * 1.3,
                       radius, rng.uniform(-0.3, 0.3), irregular_radii(rng, 0.1, 3)))
    outside = (radius_map < fan.near) | (radius_map > fan.far) | (np.abs(angle_map) > fan.half_angle)
    scene.mask(scene.region("outside"), outside)
    return scene, fan


def _behind(mask: np.ndarray, radius: np.ndarray, angle: np.ndarray, fan: _Fan, deepest: bool) -> np.ndarray:
    """Pixels further along their beam than the nearest (``deepest``: farthest) pixel of ``mask`` on that beam."""
    bins = np.clip(((angle / fan.half_angle + 1.0) * 0.5 * _ANGLE_BINS).astype(np.int32), 0, _ANGLE_BINS - 1)
    edge = np.full(_ANGLE_BINS, np.inf, np.float32)
    if mask.any():
        if deepest:
            reach = np.full(_ANGLE_BINS, -np.inf, np.float32)
            np.maximum.at(reach, bins[mask], radius[mask])
            edge = np.where(np.isfinite(reach), reach, np.inf).astype(np.float32)
        else:
            np.minimum.at(edge, bins[mask], radius[mask])
    return (radius > edge[bins]).astype(np.float32)


def generate_ultrasound(geometry: np.random.Generator, appearance: np.random.Generator, size: int,
                        shifted: bool) -> SynthSample:
    """One sector-probe B-mode image, 8-bit grey."""
    scene, fan = _anatomy(geometry, size)
    labels, objects = scene.finish()
    rng = appearance
    s = float(size)
    radius, angle = fan.polar(size)
    radius = np.broadcast_to(radius, (size, size))
    angle = np.broadcast_to(angle, (size, size))
    jitter = rng.normal(0.0, 0.04, len(scene.regions)).astype(np.float32)
    jitter[[i for i, r in enumerate(scene.regions) if r.tissue == "nodule"]] = rng.uniform(-0.05, 0.2)
    echo = scene.lookup(_ECHO_SHIFTED if shifted else _ECHO, jitter)
    echo = blur(echo, 1.2 * s / 256)
    # Shadow behind strong reflectors, brighter tissue behind fluid (less attenuation on the way).
    shadow = blur(_behind(scene.tissue_mask("calcification"), radius, angle, fan, False), 1.5 * s / 256)
    enhance = blur(_behind(scene.tissue_mask("cyst", "vessel"), radius, angle, fan, True), 2.0 * s / 256)
    echo *= (1.0 - np.float32(rng.uniform(0.75, 0.9)) * shadow) * (1.0 + np.float32(rng.uniform(0.3, 0.5)) * enhance)
    grain = rng.uniform(1.8, 2.4) if shifted else rng.uniform(1.0, 1.4)
    texture = speckle(rng, size, grain * s / 256, aspect=rng.uniform(1.8, 2.6))
    depth = (radius - np.float32(fan.near)) / np.float32(fan.far - fan.near)
    gain = np.exp(-np.float32(rng.uniform(0.6, 1.2)) * depth) * np.float32(rng.uniform(0.8, 1.1))
    amplitude = echo * texture * gain
    dynamic_range = rng.uniform(30, 38) if shifted else rng.uniform(38, 48)  # dB shown between black and white
    white = np.float32(20.0 * np.log10(rng.uniform(2.5, 4.0)))
    decibels = np.float32(20.0) * np.log10(np.maximum(amplitude, 1e-4))
    image = (np.float32(1.0) + (decibels - white) / np.float32(dynamic_range)) * ~scene.tissue_mask("outside")
    return SynthSample(to_uint8(image), labels, objects, False, "ultrasound")
