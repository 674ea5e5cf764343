"""OCT: a macular B-scan with the foveal pit, the retinal layers' reflectivity profile, the retinal pigment
epithelium, intraretinal fluid cysts and sometimes subretinal fluid, under speckle; the style shift is another
device (coarser speckle, lower signal, another contrast curve)."""

from __future__ import annotations

import numpy as np

from edge_medsam.data.synth.noise import blur, smooth_noise, speckle, to_uint8
from edge_medsam.data.synth.scene import Scene, SynthSample
from edge_medsam.data.synth.shapes import blob, grid

ALWAYS = ("retina", "rpe", "fluid")
SOMETIMES = ("subretinal_fluid",)

# Reflectivity against relative depth between the inner limiting membrane (0) and the RPE (1):
# nerve fibre, ganglion cell, inner plexiform, inner nuclear, outer plexiform, outer nuclear layers, the external
# limiting membrane and the photoreceptor ellipsoid zone.
_DEPTHS = (0.0, 0.1, 0.13, 0.24, 0.27, 0.36, 0.4, 0.48, 0.52, 0.58, 0.62, 0.84, 0.86, 0.88, 0.91, 0.94, 0.97, 1.0)
_REFLECTIVITY = (0.85, 0.75, 0.42, 0.4, 0.6, 0.58, 0.28, 0.28, 0.6, 0.55, 0.16, 0.16, 0.45, 0.2, 0.85, 0.8, 0.3, 0.35)


def _boundaries(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Inner limiting membrane and RPE depth (pixels) for every column, and the RPE thickness."""
    s = float(size)
    u = (np.arange(size, dtype=np.float32) + 0.5) / np.float32(s)
    bowl = rng.uniform(0.1, 0.3) * (u - 0.5) ** 2 + rng.uniform(-0.06, 0.06) * (u - 0.5)
    thickness = rng.uniform(0.14, 0.2)
    fovea, width = rng.uniform(0.4, 0.6), rng.uniform(0.06, 0.1)
    pit = rng.uniform(0.45, 0.65) * thickness * np.exp(-(((u - fovea) / width) ** 2))
    wave = 0.006 * smooth_noise(rng, size, 4)[size // 2]
    top = rng.uniform(0.28, 0.38)
    ilm = (top + bowl + pit + wave) * s
    rpe = (top + thickness + bowl) * s
    return ilm.astype(np.float32), rpe.astype(np.float32), rng.uniform(0.018, 0.026) * s


def _anatomy(rng: np.random.Generator, size: int) -> tuple[Scene, np.ndarray, np.ndarray]:
    scene = Scene(size, background="vitreous")
    ilm, rpe, band = _boundaries(rng, size)
    x, y = grid(size)
    scene.mask(scene.region("choroid"), y >= rpe)
    scene.mask(scene.region("retina", "retina", "structure"), (y >= ilm) & (y < rpe))
    scene.mask(scene.region("rpe", "rpe", "structure"), (y >= rpe) & (y < rpe + band))
    s = float(size)
    if rng.random() < 0.3:
        centre, half = rng.uniform(0.3, 0.7) * s, rng.uniform(0.08, 0.16) * s
        lift = rng.uniform(0.02, 0.05) * s * np.clip(1.0 - ((x - centre) / half) ** 2, 0.0, None)
        scene.mask(scene.region("subretinal", "subretinal_fluid", "lesion"), (y >= rpe - lift) & (y < rpe) & (lift > 1))
    for _ in range(rng.integers(1, 5)):
        cx = rng.uniform(0.2, 0.8) * s
        column = int(np.clip(cx, 0, size - 1))
        local = float(rpe[column] - ilm[column])
        depth = ilm[column] + local * rng.uniform(0.45, 0.7)
        half_height = local * rng.uniform(0.08, 0.16)
        scene.polygon(scene.region("fluid", "fluid", "lesion"),
                      blob(cx, depth, half_height * rng.uniform(1.2, 2.5), half_height, rng.normal(0, 0.1)))
    return scene, ilm, rpe


def generate_oct(geometry: np.random.Generator, appearance: np.random.Generator, size: int,
                 shifted: bool) -> SynthSample:
    """One OCT B-scan, 8-bit grey."""
    scene, ilm, rpe = _anatomy(geometry, size)
    labels, objects = scene.finish()
    rng = appearance
    s = float(size)
    _, y = grid(size)
    depth = np.clip((y - ilm) / (rpe - ilm), 0.0, 1.0)
    layers = np.interp(depth, _DEPTHS, _REFLECTIVITY).astype(np.float32)
    below = (y - rpe) / np.float32(s)
    choroid = np.clip(0.4 + 0.2 * smooth_noise(rng, size, 14, aspect=2.0), 0.05, None) * np.exp(
        -np.maximum(below, 0.0) / np.float32(0.12))
    base = scene.lookup({"vitreous": 0.004, "choroid": 0.0, "retina": 0.0, "rpe": 1.0, "subretinal": 0.03,
                         "fluid": 0.02})
    reflect = base + scene.tissue_mask("retina") * layers + scene.tissue_mask("choroid") * choroid
    reflect = blur(reflect, (0.6 * s / 256, 1.0 * s / 256))
    grain = rng.uniform(1.4, 1.9) if shifted else rng.uniform(0.8, 1.1)
    signal = reflect * speckle(rng, size, grain * s / 256, aspect=2.0, looks=1)
    gain = rng.uniform(12, 20) if shifted else rng.uniform(30, 50)
    image = np.log1p(np.float32(gain) * signal) / np.float32(np.log1p(gain * 1.3))
    if shifted:
        image = image ** np.float32(rng.uniform(1.3, 1.6))
    image = image + np.float32(0.02) * rng.standard_normal((size, size), dtype=np.float32)
    return SynthSample(to_uint8(image), labels, objects, False, "oct")
