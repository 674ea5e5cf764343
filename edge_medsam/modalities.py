"""Registry of imaging modalities: stable indices, names, aliases and each one's intensity handling.

The index of a modality is part of every exported model (it selects per-modality parameters inside the
graph), so indices are append-only: never reorder or reuse them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from edge_medsam.errors import InputError


class Intensity(str, Enum):
    """How raw pixel values become the [0, 1] image a model sees."""

    HOUNSFIELD = "hounsfield"  # CT: a window (centre, width) in Hounsfield units
    PERCENTILE = "percentile"  # MR, PET: robust percentile clipping, scanner units are arbitrary
    GREY = "grey"  # X-ray, ultrasound, OCT, mammography: 8-bit scaled, deeper bit depths percentile-clipped
    COLOUR = "colour"  # photographs and slides: colour kept, scaled by the bit depth


@dataclass(frozen=True)
class Modality:
    """One imaging modality as the models and readers know it."""

    name: str
    index: int
    title: str
    intensity: Intensity
    colour: bool
    aliases: tuple[str, ...] = ()
    dicom_codes: tuple[str, ...] = ()


# CT window presets (centre, width) in Hounsfield units.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft_tissue": (40.0, 400.0),
    "abdomen": (50.0, 350.0),
    "liver": (60.0, 160.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
}
DEFAULT_CT_WINDOW = "soft_tissue"
PERCENTILES = (0.5, 99.5)

MODALITIES: tuple[Modality, ...] = (
    Modality("ct", 0, "CT", Intensity.HOUNSFIELD, False, ("computed_tomography",), ("CT",)),
    Modality("mr", 1, "MR", Intensity.PERCENTILE, False, ("mri", "magnetic_resonance"), ("MR",)),
    Modality("pet", 2, "PET", Intensity.PERCENTILE, False, ("pt",), ("PT",)),
    Modality("xray", 3, "X-ray", Intensity.GREY, False, ("x_ray", "x-ray", "cxr", "radiograph"), ("CR", "DX", "RF")),
    Modality("ultrasound", 4, "Ultrasound", Intensity.GREY, False, ("us", "sonography"), ("US",)),
    Modality("dermoscopy", 5, "Dermoscopy", Intensity.COLOUR, True, ("derm", "dermatoscopy"), ()),
    Modality("endoscopy", 6, "Endoscopy", Intensity.COLOUR, True, ("colonoscopy", "endo"), ("ES",)),
    Modality("fundus", 7, "Fundus", Intensity.COLOUR, True, ("fundus_photography", "retina", "retinal"), ()),
    Modality("microscopy", 8, "Microscopy", Intensity.COLOUR, True,
             ("microscope", "histology", "histopathology", "pathology"), ("SM", "GM")),
    Modality("oct", 9, "OCT", Intensity.GREY, False, ("optical_coherence_tomography",), ("OPT", "OCT")),
    Modality("mammography", 10, "Mammography", Intensity.GREY, False, ("mammo", "mg"), ("MG",)),
)

_BY_KEY: dict[str, Modality] = {}
for _m in MODALITIES:
    for _key in (_m.name, *_m.aliases):
        _BY_KEY[_key] = _m


def modality_names() -> list[str]:
    """Canonical modality names in index order."""
    return [m.name for m in MODALITIES]


def get_modality(name: str | int | Modality) -> Modality:
    """Look a modality up by name, alias (case-insensitive) or index; raise InputError if unknown."""
    if isinstance(name, Modality):
        return name
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        if 0 <= int(name) < len(MODALITIES):
            return MODALITIES[int(name)]
        raise InputError(f"modality index {name} does not exist", fix=f"use 0..{len(MODALITIES) - 1}")
    key = str(name).strip().lower().replace(" ", "_")
    if key in _BY_KEY:
        return _BY_KEY[key]
    raise InputError(f"unknown modality {name!r}", fix=f"use one of {', '.join(modality_names())}")


def modality_from_dicom(code: str) -> Modality | None:
    """The modality for a DICOM (0008,0060) Modality code, or None if it has no counterpart here."""
    code = (code or "").strip().upper()
    return next((m for m in MODALITIES if code in m.dicom_codes), None)


def resolve_window(window: str | tuple[float, float] | None) -> tuple[float, float]:
    """A CT window (centre, width) from a preset name, an explicit pair, or the default preset."""
    if window is None:
        return CT_WINDOWS[DEFAULT_CT_WINDOW]
    if isinstance(window, str):
        key = window.strip().lower().replace(" ", "_").replace("-", "_")
        if key not in CT_WINDOWS:
            raise InputError(f"unknown CT window {window!r}", fix=f"use one of {', '.join(CT_WINDOWS)} or centre,width")
        return CT_WINDOWS[key]
    centre, width = (float(v) for v in window)
    if not np.isfinite(centre) or not np.isfinite(width) or width <= 0:
        raise InputError(f"CT window {window!r} is not a finite centre with a positive width", fix="give e.g. 40,400")
    return centre, width


def _scale_clipped(values: np.ndarray, lo: float, width: float) -> np.ndarray:
    """clip((values - lo) / width, 0, 1) in float32, in one buffer (the window is not linear: it runs before any
    resize, at the image's own size)."""
    out = values.astype(np.float32)
    np.subtract(out, np.float32(lo), out=out)
    np.divide(out, np.float32(width), out=out)
    return np.clip(out, 0.0, 1.0, out=out)


def apply_window(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Map values through a linear window to float32 in [0, 1]."""
    return _scale_clipped(values, centre - width / 2.0, width)


def percentile_normalise(values: np.ndarray, percentiles: tuple[float, float] = PERCENTILES) -> np.ndarray:
    """Clip to robust percentiles (over all channels) and scale to float32 [0, 1]; a flat image becomes 0."""
    lo, hi = np.percentile(values, percentiles)
    if hi <= lo:
        return np.zeros(values.shape, np.float32)
    return _scale_clipped(values, lo, hi - lo)


def _scale_by_depth(values: np.ndarray, source_dtype: np.dtype) -> np.ndarray:
    """8-bit (and smaller) images scale by 255, [0, 1] floats stay, everything else is percentile-clipped."""
    if source_dtype == np.bool_:
        return values.astype(np.float32)
    if source_dtype == np.uint8:
        out = values.astype(np.float32)
        return np.divide(out, np.float32(255.0), out=out)
    if np.issubdtype(source_dtype, np.floating) and values.min() >= 0.0 and values.max() <= 1.0:
        return values.astype(np.float32)
    return percentile_normalise(values)


def normalise_intensity(
    pixels: np.ndarray,
    modality: str | int | Modality,
    *,
    hounsfield: bool = False,
    window: str | tuple[float, float] | None = None,
) -> np.ndarray:
    """Turn raw pixels (H, W) or (H, W, C) into a float32 (H, W, 3) image in [0, 1] for ``modality``.

    ``hounsfield`` says the values are Hounsfield units (CT from DICOM, NIfTI or the corpus); only then
    is a CT window applied, otherwise an already-windowed CT picture (8-bit PNG) is scaled like any grey image.
    A grey result is one channel broadcast to three (a read-only view: ``to_model_input`` resizes it once; copy it
    with ``np.array`` to write into it).
    """
    mod = get_modality(modality)
    arr = np.asarray(pixels)
    if arr.ndim == 3 and arr.shape[2] in (1, 2):  # grey, grey + alpha
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InputError(f"image of shape {arr.shape} is neither (H, W) nor (H, W, 3)", fix="give a 2D grey or RGB image")
    if arr.ndim == 3:
        arr = arr[..., :3]  # alpha carries no anatomy
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InputError(f"pixels of type {arr.dtype} are not numbers", fix="give a numeric image")
    if arr.size == 0 or min(arr.shape[:2]) < 2:
        raise InputError(f"image of {arr.shape[1]}x{arr.shape[0]} pixels is too small",
                         fix="give an image of at least 2x2 pixels")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputError("image contains NaN or Inf values", fix="replace non-finite values before segmenting")
    source_dtype = arr.dtype
    if arr.ndim == 3 and not mod.colour:
        arr = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # grey modality saved as RGB
    if mod.intensity is Intensity.HOUNSFIELD and hounsfield:
        out = apply_window(arr, *resolve_window(window))
    elif mod.intensity is Intensity.PERCENTILE or (mod.intensity is Intensity.HOUNSFIELD and source_dtype != np.uint8):
        out = percentile_normalise(arr)
    else:
        out = _scale_by_depth(arr, source_dtype)
    out = np.ascontiguousarray(out, dtype=np.float32)
    return np.broadcast_to(out[..., None], (*out.shape, 3)) if out.ndim == 2 else out
