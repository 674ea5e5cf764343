"""From what a user passes (an Image2D, an array or a path) to the [0, 1] image a bundle's encoder takes.

The modality decides the intensity rule. ``modality="auto"`` trusts what the file declares (DICOM Modality,
a challenge file name); an undeclared image whose values are Hounsfield units (air near -1000) is windowed as
CT; anything else gets the generic grey or colour rule, and the model recognises the modality. CT windows come
from the bundle's manifest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from edge_medsam.errors import EdgeMedSAMError, InputError
from edge_medsam.io import Image2D, read_image
from edge_medsam.modalities import MODALITIES, Intensity, Modality, get_modality, normalise_intensity, resolve_window
from edge_medsam.runtime.bundle import Bundle
from edge_medsam.runtime.manifest import AUTO_MODALITY

AIR_HU = -500.0  # below this, signed values can only be Hounsfield units (air is -1000 HU)
ImageLike = Image2D | np.ndarray | str | os.PathLike[str]
ModalityLike = str | int | Modality | None
WindowLike = str | tuple[float, float] | None


@dataclass(frozen=True)
class ModalityPlan:
    """How an image is normalised and which modality index the encoder gets.

    ``source``: "given" (by the caller), "file" (declared by the file) or "model" (recognised by the encoder,
    index -1). ``rule`` is the registry modality whose intensity rule applies.
    """

    rule: Modality
    index: int
    source: str
    hounsfield: bool


def as_image(image: ImageLike) -> Image2D:
    """An Image2D from an Image2D, a (H, W) / (H, W, 3) array or an image file path."""
    if isinstance(image, Image2D):
        return image
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise InputError(f"image array of shape {image.shape} is neither (H, W) nor (H, W, 3)",
                             fix="give one 2D grey or RGB image; take slices of a volume with slice_volume")
        return Image2D(pixels=image)
    raise InputError(f"cannot segment a {type(image).__name__}", fix="give an Image2D, a numpy array or a file path")


def looks_like_hounsfield(values: np.ndarray) -> bool:
    """True when signed values reach below -500, which only CT in Hounsfield units does."""
    arr = np.asarray(values)
    return arr.dtype.kind in "if" and arr.size > 0 and float(arr.min()) <= AIR_HU


def _generic_rule(colour: bool) -> Modality:
    """The registry's first modality with the generic colour (scaled by bit depth) or grey rule."""
    kind = Intensity.COLOUR if colour else Intensity.GREY
    return next(m for m in MODALITIES if m.intensity is kind and m.colour == colour)


def bundle_index(bundle: Bundle, modality: Modality) -> int:
    """The bundle's index for a registry modality; InputError if the model does not know it."""
    index = bundle.modality_index(modality.name)
    if index is None:
        raise InputError(f"the model {bundle.name} was not trained for {modality.name}",
                         fix=f"use one of {', '.join(bundle.manifest.modalities)} or auto")
    return index


def plan_modality(image: Image2D, modality: ModalityLike, bundle: Bundle, *,
                  hounsfield: bool | None = None) -> ModalityPlan:
    """Decide the intensity rule and encoder modality index for an image (see the module docstring).

    ``hounsfield`` overrides the per-image guess (a volume decides once for all its slices).
    """
    in_hu = image.hounsfield or (looks_like_hounsfield(image.pixels) if hounsfield is None else hounsfield)
    if modality is not None and not (isinstance(modality, str) and modality.strip().lower() == "auto"):
        chosen = get_modality(modality)
        return ModalityPlan(chosen, bundle_index(bundle, chosen), "given", in_hu and chosen.name == "ct")
    if image.modality:
        declared = get_modality(image.modality)
        if bundle.modality_index(declared.name) is not None:
            return ModalityPlan(declared, bundle_index(bundle, declared), "file", in_hu and declared.name == "ct")
    if in_hu:
        return ModalityPlan(get_modality("ct"), AUTO_MODALITY, "model", True)
    colour = image.pixels.ndim == 3 and image.pixels.shape[2] >= 3
    return ModalityPlan(_generic_rule(colour), AUTO_MODALITY, "model", False)


def window_for(bundle: Bundle, window: WindowLike) -> tuple[float, float]:
    """A CT window (centre, width) from a preset name in the bundle, "c,w", a pair, or the bundle's default."""
    windows = {k: (float(v[0]), float(v[1])) for k, v in bundle.manifest.intensity.get("ct_windows", {}).items()}
    if window is None:
        window = bundle.manifest.intensity.get("default_ct_window")
        if window is None:
            return resolve_window(None)
    if isinstance(window, str):
        key = window.strip().lower().replace(" ", "_").replace("-", "_")
        if key in windows:
            return windows[key]
        parts = key.split(",")
        if len(parts) != 2:
            raise InputError(f"unknown CT window {window!r}", fix=f"use one of {', '.join(windows)} or centre,width")
        try:
            window = (float(parts[0]), float(parts[1]))
        except ValueError as err:
            raise InputError(f"CT window {window!r} is not two numbers",
                             fix="give centre,width such as 40,400") from err
    return resolve_window(window)


def normalise_image(image: Image2D, plan: ModalityPlan, bundle: Bundle, window: WindowLike = None) -> np.ndarray:
    """The (H, W, 3) float32 [0, 1] image for the encoder; errors name the image's file."""
    try:
        return normalise_intensity(image.pixels, plan.rule, hounsfield=plan.hounsfield,
                                   window=window_for(bundle, window) if plan.hounsfield else None)
    except EdgeMedSAMError as err:
        if image.path is None or err.path is not None:
            raise
        raise err.with_path(image.path) from err
