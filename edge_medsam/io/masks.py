"""Label maps: read a mask from PNG/TIFF/JPEG/NIfTI into integer labels, write labels as PNG, validate them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edge_medsam.errors import InputError
from edge_medsam.io.files import PathLike, atomic_write, existing_file, optional_module, sniff_format
from edge_medsam.io.images import load_picture
from edge_medsam.io.types import Image2D


def label_array(labels: np.ndarray, path: PathLike | None = None, *, max_label: int = 0xFFFFFFFF) -> np.ndarray:
    """Check that ``labels`` are non-negative whole numbers and return them in the smallest unsigned dtype."""
    arr = np.asarray(labels)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"labels of type {arr.dtype} are not numbers", path=path, fix="give an integer label map")
    if arr.size == 0:
        raise InputError(f"label map of shape {arr.shape} is empty", path=path, fix="give a non-empty label map")
    if np.issubdtype(arr.dtype, np.floating) and not (np.isfinite(arr) & (arr == np.round(arr))).all():
        raise InputError("labels have fractional, NaN or Inf values", path=path,
                         fix="threshold probabilities (e.g. > 0.5) or take the argmax before saving")
    low, high = arr.min(), arr.max()
    if low < 0:
        raise InputError(f"labels include the negative value {low}", path=path,
                         fix="use 0 for background and 1..N for objects")
    if high > max_label:
        raise InputError(f"label value {high} is over the largest this format stores ({max_label})", path=path,
                         fix="renumber the labels 1..N, or write NIfTI for many labels")
    dtype = np.uint8 if high <= 0xFF else np.uint16 if high <= 0xFFFF else np.uint32
    return arr.astype(dtype, copy=False)


def check_mask_shape(mask: np.ndarray, like: Image2D | tuple[int, ...], path: PathLike | None = None) -> None:
    """Raise InputError naming both shapes unless ``mask`` is (H, W) of the image (or shape) ``like``."""
    expected = tuple(like.shape) if isinstance(like, Image2D) else tuple(int(v) for v in like)[:2]
    if tuple(mask.shape[:2]) != expected[:2]:
        image = f" ({like.path.name})" if isinstance(like, Image2D) and like.path else ""
        raise InputError(
            f"mask is {mask.shape[1]}x{mask.shape[0]} pixels but its image{image} is {expected[1]}x{expected[0]}",
            path=path, fix="pair the mask with the image it was drawn on, or resize it with nearest-neighbour")


def _colour_labels(rgb: np.ndarray, path: Path) -> np.ndarray:
    """Number the colours of a colour-coded mask 1..N in sorted colour order, black staying background."""
    colours, inverse = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    if len(colours) > 0xFFFF:
        raise InputError(f"mask has {len(colours)} colours, not a label map", path=path,
                         fix="give a grey or palette PNG whose values are the labels")
    first_is_black = not colours[0].any()
    return (inverse.reshape(rgb.shape[:2]) + (0 if first_is_black else 1)).astype(np.uint16)


def _picture_labels(path: Path) -> np.ndarray:
    arr, meta = load_picture(path, labels=True)
    if meta["format"] == "jpeg":
        # JPEG ringing blurs 0/255 edges into intermediate values: a JPEG mask can only be read as binary.
        grey = arr.mean(axis=-1) if arr.ndim == 3 else arr
        return (grey >= 128).astype(np.uint8)
    if arr.ndim == 3:
        same = (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
        return arr[..., 0] if same else _colour_labels(arr, path)
    return arr


def read_mask(path: PathLike, like: Image2D | tuple[int, ...] | None = None) -> np.ndarray:
    """Read an integer label map (H, W): 0 background, 1..N objects; a 0/255 mask becomes 0/1.

    PNG/TIFF/BMP grey or palette values are the labels; colour-coded masks are numbered by colour; JPEG masks are
    thresholded at 128 (lossy, so binary only); 2D NIfTI values are the labels. ``like`` (an Image2D or a shape)
    makes a mask of another size an error.
    """
    p = existing_file(path)
    if sniff_format(p) == "nifti":
        nifti = optional_module("nifti")
        arr = nifti.read_nifti_image(p).pixels
    else:
        arr = _picture_labels(p)
    labels = label_array(arr, p)
    values = np.unique(labels)
    if values[-1] == 255 and set(values.tolist()) <= {0, 255}:
        labels = (labels > 0).astype(np.uint8)
    if like is not None:
        check_mask_shape(labels, like, p)
    return labels


def write_mask_png(path: PathLike, labels: np.ndarray) -> Path:
    """Write an (H, W) label map as PNG: 8-bit up to 255 labels, 16-bit up to 65535; atomically."""
    arr = label_array(labels, path, max_label=0xFFFF)
    if arr.ndim != 2:
        raise InputError(f"label map of shape {arr.shape} is not 2D (H, W)", path=path,
                         fix="write one 2D mask per image, or a volume with write_nifti_labels")
    image = Image.fromarray(arr)  # uint8 → mode L, uint16 → mode I;16 (16-bit PNG)

    def save(tmp: Path) -> None:
        image.save(tmp, format="PNG", optimize=False)

    return atomic_write(path, save)
