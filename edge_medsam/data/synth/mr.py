"""MR: axial brain slices with a tumour, its oedema and small white-matter lesions; T2-weighted (style shift:
T1-weighted after contrast), a smooth multiplicative bias field and Rician noise."""

from __future__ import annotations

import numpy as np

from edge_medsam.data.synth.noise import blur, rician, smooth_noise, to_uint8
from edge_medsam.data.synth.scene import Scene, SynthSample
from edge_medsam.data.synth.shapes import blob, irregular_radii

ALWAYS = ("brain", "ventricles", "edema", "tumor")
SOMETIMES = ("lesion",)

_T2 = {"air": 0.0, "scalp": 0.55, "skull": 0.04, "csf": 1.0, "gm": 0.56, "wm": 0.40, "edema": 0.82, "tumor": 0.66,
       "necrosis": 0.95, "wm_lesion": 0.56}
_T1_CONTRAST = {"air": 0.0, "scalp": 0.95, "skull": 0.05, "csf": 0.12, "gm": 0.45, "wm": 0.64, "edema": 0.38,
                "tumor": 0.92, "necrosis": 0.2, "wm_lesion": 0.5}


def _gyri(rng: np.random.Generator, base: np.ndarray, depth: float, width: int = 4) -> np.ndarray:
    """Fold an outline's radii into gyri: circularly smoothed random bumps ``width`` points wide, ``depth`` deep."""
    bumps = rng.standard_normal(len(base))
    taps = np.hanning(2 * width + 3)[1:-1]
    folds = np.convolve(np.concatenate([bumps[-width:], bumps, bumps[:width]]), taps / taps.sum(), "valid")
    return base * (1.0 + depth * folds / folds.std())


def _anatomy(rng: np.random.Generator, size: int) -> Scene:
    scene = Scene(size, background="air")
    s = float(size)
    cx, cy = s * (0.5 + rng.normal(0, 0.01)), s * (0.5 + rng.normal(0, 0.01))
    rx, ry, tilt = s * rng.uniform(0.33, 0.37), s * rng.uniform(0.41, 0.45), rng.normal(0, 0.05)
    head = irregular_radii(rng, 0.02, 4, 256)
    for tissue, keep in (("scalp", 1.0), ("skull", 0.955), ("csf", 0.915)):
        scene.polygon(scene.region(tissue), blob(cx, cy, rx * keep, ry * keep, tilt, head))
    brain = scene.add_object("brain", "organ")
    grey, white = scene.add_region("gm", brain), scene.add_region("wm", brain)
    scene.polygon(grey, blob(cx, cy, rx * 0.89, ry * 0.89, tilt, _gyri(rng, head, 0.012, 2)))
    scene.polygon(white, blob(cx, cy, rx * 0.76, ry * 0.78, tilt, _gyri(rng, head, 0.06, 6)))
    fissure = scene.region("csf")
    for end in (-0.9, 0.9):
        scene.line(fissure, np.array([[cx, cy + ry * end], [cx + rng.normal(0, 0.005) * s, cy + ry * end * 0.3]]),
                   max(1.0, s * 0.008))
    for side in (-1, 1):  # deep grey nuclei beside the ventricles
        scene.polygon(grey, blob(cx + side * s * 0.1, cy + s * 0.03, s * 0.045, s * 0.07, side * 0.3))
    ventricles = scene.add_object("ventricles", "structure")
    horns = scene.add_region("csf", ventricles)
    gap = s * rng.uniform(0.012, 0.02)
    for side in (-1, 1):
        scene.polygon(horns, blob(cx + side * (gap + s * 0.022), cy - s * rng.uniform(0.0, 0.04),
                                  s * rng.uniform(0.018, 0.03), s * rng.uniform(0.09, 0.13), side * 0.22,
                                  irregular_radii(rng, 0.08, 3)))

    side = rng.choice((-1.0, 1.0))
    oedema = s * rng.uniform(0.07, 0.12)
    reach = min(rx, ry) * 0.8 - oedema * 1.3
    angle = rng.uniform(-1.2, 1.2) + (0.0 if side > 0 else np.pi)
    distance = rng.uniform(0.55, 1.0) * reach
    tx, ty = cx + distance * np.cos(angle), cy + distance * np.sin(angle)
    scene.polygon(scene.region("edema", "edema", "lesion"),
                  blob(tx, ty, oedema, oedema * rng.uniform(0.75, 1.0), rng.uniform(0, np.pi),
                       irregular_radii(rng, 0.18, 6)))
    tumour = scene.add_object("tumor", "lesion")
    core = oedema * rng.uniform(0.42, 0.62)
    scene.polygon(scene.add_region("tumor", tumour), blob(tx, ty, core, core * rng.uniform(0.8, 1.0),
                                                          rng.uniform(0, np.pi), irregular_radii(rng, 0.12, 5)))
    if rng.random() < 0.6:
        necrosis = core * rng.uniform(0.3, 0.55)
        scene.polygon(scene.add_region("necrosis", tumour), blob(tx, ty, necrosis, necrosis, 0.0,
                                                                  irregular_radii(rng, 0.1, 4)))
    for _ in range(rng.integers(0, 5)):  # small white-matter lesions, some very faint
        lx, ly = cx + rng.uniform(-0.5, 0.5) * rx, cy + rng.uniform(-0.55, 0.55) * ry
        radius = s * rng.uniform(0.008, 0.018)
        scene.polygon(scene.region("wm_lesion", "lesion", "lesion"),
                      blob(lx, ly, radius, radius * rng.uniform(0.6, 1.0), rng.uniform(0, np.pi)))
    return scene


def generate_mr(geometry: np.random.Generator, appearance: np.random.Generator, size: int,
                shifted: bool) -> SynthSample:
    """One axial brain slice, 8-bit grey."""
    scene = _anatomy(geometry, size)
    labels, objects = scene.finish()
    rng = appearance
    table = _T1_CONTRAST if shifted else _T2
    jitter = rng.normal(0.0, 0.025, len(scene.regions)).astype(np.float32)
    signal = scene.lookup(table, jitter)
    signal *= 1.0 + np.float32(0.04) * smooth_noise(rng, size, size / 12)
    signal = blur(signal, 0.8 * size / 256)
    bias_strength = rng.uniform(0.25, 0.4) if shifted else rng.uniform(0.1, 0.2)
    signal *= np.exp(np.float32(bias_strength) * smooth_noise(rng, size, 2.5))
    noisy = rician(rng, signal, rng.uniform(0.04, 0.06) if shifted else rng.uniform(0.02, 0.035))
    return SynthSample(to_uint8(noisy * np.float32(rng.uniform(0.72, 0.85))), labels, objects, False, "mr")
