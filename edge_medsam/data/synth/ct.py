"""CT: axial abdomen slices in Hounsfield units (portal-venous phase; style shift: non-contrast, low-dose, sharp
kernel), and whole NIfTI-ready volumes of the same phantom."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_medsam.data.synth.abdomen import FIELD_OF_VIEW_MM, VOLUME_EXTENT_MM, Phantom, build_phantom, paint_slice
from edge_medsam.data.synth.noise import blur, correlated_noise, smooth_noise
from edge_medsam.data.synth.scene import Scene, SynthObject, SynthSample, label_regions

HU_MIN, HU_MAX = -1024, 3071

ALWAYS = ("liver", "lesion", "vertebra", "aorta")
SOMETIMES = ("spleen", "kidney_right", "kidney_left", "stomach", "lymph_node")

# Mean Hounsfield units per tissue: contrast-enhanced portal-venous phase, and a non-contrast scan.
_PORTAL = {"air": -1000, "table": 80, "fat": -105, "visceral_fat": -92, "muscle": 52, "bowel": 35, "gas": -960,
           "liver": 108, "stomach": 28, "spleen": 116, "kidney": 170, "renal_sinus": -40, "node": 48,
           "cortical": 950, "cancellous": 240, "csf": 12, "aorta": 165, "ivc": 140, "lesion": 72}
_PLAIN = {**_PORTAL, "fat": -92, "visceral_fat": -80, "muscle": 46, "liver": 60, "spleen": 50, "kidney": 33,
          "aorta": 42, "ivc": 40, "node": 40, "lesion": 44, "cortical": 850, "cancellous": 190}


@dataclass(frozen=True)
class _Look:
    """One scan's protocol: mean HU per tissue, each region's own offset, noise and sharpness."""

    table: dict[str, float]
    offsets: np.ndarray
    noise_hu: float
    grain: float
    partial_volume: float
    mottle_hu: float


def _look(rng: np.random.Generator, shifted: bool, scene: Scene) -> _Look:
    """Tissue values and noise of one scan: the shifted style is another protocol and reconstruction kernel."""
    base = _PLAIN if shifted else _PORTAL
    enhancement = rng.uniform(0.85, 1.15)
    table = {t: (v if v < 0 or t in ("cortical", "cancellous", "csf") else v * enhancement) for t, v in base.items()}
    table["lesion"] = table["liver"] - (rng.uniform(14, 26) if shifted else rng.uniform(25, 48))
    offsets = rng.normal(0.0, 4.0, len(scene.regions)).astype(np.float32)
    offsets[[i for i, r in enumerate(scene.regions) if r.tissue in ("air", "gas")]] = 0.0
    if shifted:
        return _Look(table, offsets, rng.uniform(24, 34), 0.45, 0.45, 7.0)
    return _Look(table, offsets, rng.uniform(7, 13), 1.0, 0.7, 4.0)


def _render(scene: Scene, look: _Look, rng: np.random.Generator) -> np.ndarray:
    """Hounsfield units of one painted slice: tissue values, organ mottle, partial volume, scanner noise."""
    hu = scene.lookup(look.table, look.offsets)
    soft = (hu > -300) & (hu < 300)
    hu += np.float32(look.mottle_hu) * smooth_noise(rng, scene.size, 25) * soft
    hu = blur(hu, look.partial_volume * scene.size / 256)
    hu += np.float32(look.noise_hu) * correlated_noise(rng, hu.shape, look.grain * scene.size / 256)
    return np.clip(np.rint(hu), HU_MIN, HU_MAX).astype(np.int16)


def generate_ct(geometry: np.random.Generator, appearance: np.random.Generator, size: int,
                shifted: bool) -> SynthSample:
    """One axial slice through the liver, in Hounsfield units."""
    phantom = build_phantom(geometry)
    scene = paint_slice(phantom, phantom.focus_z, size)
    labels, objects = scene.finish()
    return SynthSample(_render(scene, _look(appearance, shifted, scene), appearance), labels, objects, True, "ct")


@dataclass
class SynthVolume:
    """A CT volume in NIfTI convention: ``hounsfield[i, j, k]`` int16 HU, ``labels`` alike, ``affine`` to RAS+ mm."""

    hounsfield: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    objects: list[SynthObject]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along i, j, k in mm."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]


def volume_affine(size: int, slices: int) -> np.ndarray:
    """The affine of a volume: i runs to the patient's left, j to posterior, k to the head; centred on 0."""
    pixel = FIELD_OF_VIEW_MM / size
    low, high = VOLUME_EXTENT_MM
    thickness = (high - low) / slices
    affine = np.diag([-pixel, -pixel, thickness, 1.0])
    affine[:3, 3] = [pixel * (size - 1) / 2, pixel * (size - 1) / 2, low + thickness / 2]
    return affine


def render_volume(phantom: Phantom, slices: int, size: int, appearance: np.random.Generator,
                  shifted: bool) -> SynthVolume:
    """Every axial slice of a phantom, stacked into (i, j, k) arrays with one label per object across slices."""
    affine = volume_affine(size, slices)
    scenes = [paint_slice(phantom, float(affine[2, 3] + k * affine[2, 2]), size) for k in range(slices)]
    look = _look(appearance, shifted, scenes[0])  # one scan: the same protocol for every slice
    hounsfield = [_render(scene, look, appearance) for scene in scenes]
    regions = np.stack([scene.region_map() for scene in scenes], axis=-1)
    labels, objects = label_regions(regions, scenes[0].regions, scenes[0].objects)
    return SynthVolume(np.stack(hounsfield, axis=-1).transpose(1, 0, 2), labels.transpose(1, 0, 2), affine, objects)
