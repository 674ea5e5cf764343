"""Pictures (PNG, JPEG, TIFF, BMP and what else Pillow opens) → Image2D, with size checks before decoding.

TIFF goes through tifffile first because Pillow cannot hold 16-bit RGB, float RGB or planar TIFFs; Pillow is
the fallback for TIFF flavours tifffile leaves to it (CMYK, YCbCr, JPEG-in-TIFF without imagecodecs).
"""

from __future__ import annotations

import logging
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from edge_medsam.errors import InputError
from edge_medsam.io.files import PathLike, check_finite, existing_file, not_readable, resolve_limits, sniff_format
from edge_medsam.io.types import Image2D, ReadLimits

# Pillow's process-wide bomb guard agrees with ours; each call's limits are checked from the header below.
Image.MAX_IMAGE_PIXELS = ReadLimits.from_env().max_pixels

# What Pillow and tifffile raise on damaged files (a malformed tag can reach their code as a wrong type).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError, TypeError,
                  AttributeError, NotImplementedError, RuntimeError)
_TIFFFILE_PHOTOMETRICS = {"MINISBLACK", "MINISWHITE", "RGB", "PALETTE"}
_EXIF_ORIENTATION = 0x0112
_CONVERT_TO_RGB = {"CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "PA"}


def _truncated(path: PathLike, err: BaseException) -> InputError:
    return not_readable(path, f"the file is truncated or corrupt ({err})",
                        fix="copy or export the file again; a partial download cannot be decoded")


@contextmanager
def _open_pillow(path: Path, limits: ReadLimits) -> Iterator[Image.Image]:
    """Open lazily (header only), check the size against ``limits``, and only then let the caller decode."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone switched Pillow to grey-filling truncated files; a clinical image must not be silently padded.
        raise InputError("Pillow is set to accept truncated images (ImageFile.LOAD_TRUNCATED_IMAGES)", path=path,
                         fix="leave PIL.ImageFile.LOAD_TRUNCATED_IMAGES at False")
    if Image.MAX_IMAGE_PIXELS is not None and limits.max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limits.max_pixels  # the caller allows bigger images: Pillow's guard follows
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # ReadLimits decide, just below
            im = Image.open(path)
    except Image.DecompressionBombError as err:
        raise InputError(f"image is over the pixel limit ({err})", path=path,
                         fix="downsample it first or raise EDGE_MEDSAM_MAX_SIDE / EDGE_MEDSAM_MAX_PIXELS") from err
    except UnidentifiedImageError as err:
        raise not_readable(path, "the content is not an image format this package can decode") from err
    except _DECODE_ERRORS as err:
        raise not_readable(path, f"the header is damaged ({err})") from err
    with im:
        limits.check_2d(im.height, im.width, path)
        yield im


def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as f:
        header = f.read(26)
    return header[24] if len(header) == 26 else 8


def _pillow_array(im: Image.Image, path: Path, labels: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a Pillow image to numpy in the file's own value range; palettes stay indices when ``labels``."""
    meta: dict[str, Any] = {"format": (im.format or "").lower(), "mode": im.mode}
    try:
        frames = getattr(im, "n_frames", 1)  # counting frames parses every frame's header
        if frames > 1:
            warnings.warn(f"{path}: holds {frames} frames; reading the first", stacklevel=4)
            meta["frames"] = frames
        im.load()
        if im.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            # Cameras (dermoscopy, fundus) store pictures sideways plus a tag; segment what a viewer shows.
            im = ImageOps.exif_transpose(im)
            meta["exif_transposed"] = True
    except _DECODE_ERRORS as err:
        raise _truncated(path, err) from err
    mode = im.mode
    if mode == "1":
        arr = np.asarray(im, dtype=np.uint8) * (1 if labels else 255)
    elif mode in ("P", "PA") and labels:
        arr = np.asarray(im.getchannel(0) if mode == "PA" else im)
    elif mode in ("P", "PA"):
        arr = np.asarray(im.convert("RGB"))
        if (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
            arr = arr[..., 0]  # a grey palette
    elif mode in ("LA", "La"):
        arr = np.asarray(im.getchannel(0))
    elif mode.startswith("I;16"):
        arr = np.asarray(im).astype(np.uint16)
    elif mode == "I":
        arr = np.asarray(im)
        if arr.size and arr.min() >= 0 and arr.max() <= 0xFFFF:
            arr = arr.astype(np.uint16)
    elif mode in ("L", "F", "RGB"):
        arr = np.asarray(im)
    elif mode == "RGBA":
        arr = np.asarray(im)[..., :3]
    elif mode in _CONVERT_TO_RGB:
        arr = np.asarray(im.convert("RGB"))
    else:
        raise not_readable(path, f"Pillow pixel mode {mode!r} is not supported",
                           fix="convert it to an 8- or 16-bit grey or RGB PNG/TIFF")
    if meta["format"] == "png" and mode in ("RGB", "RGBA") and _png_bit_depth(path) == 16:
        warnings.warn(f"{path}: 16-bit colour PNG read as 8-bit (Pillow keeps the high byte)", stacklevel=4)
        meta["reduced_from_bits"] = 16
    return np.ascontiguousarray(arr), meta


def _tiff_array(path: Path, limits: ReadLimits, labels: bool) -> tuple[np.ndarray, dict[str, Any]] | None:
    """Decode the first page of a TIFF with tifffile; None when the flavour is better left to Pillow."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        limits.check_2d(int(page.imagelength), int(page.imagewidth), path)
        photometric = page.photometric.name
        is_float = page.dtype is not None and page.dtype.kind == "f"
        if photometric not in _TIFFFILE_PHOTOMETRICS or (photometric == "MINISWHITE" and is_float):
            return None
        meta: dict[str, Any] = {"format": "tiff", "photometric": photometric.lower()}
        if len(tif.pages) > 1:
            warnings.warn(f"{path}: holds {len(tif.pages)} pages; reading the first", stacklevel=4)
            meta["pages"] = len(tif.pages)
        arr = page.asarray()
        axes, colormap, bits = page.axes, page.colormap, int(page.bitspersample)
    if axes.startswith("S") and arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)  # planar configuration: samples first
    has_samples = "S" in axes
    if has_samples and arr.ndim == 3 and arr.shape[-1] in (2, 4):
        arr = arr[..., :-1] if arr.shape[-1] == 4 else arr[..., 0]  # alpha carries no anatomy
    if arr.ndim != 2 and not (has_samples and arr.ndim == 3 and arr.shape[-1] == 3):
        raise not_readable(path, f"first page has shape {arr.shape}, not a grey or RGB image",
                           fix="save each channel or plane as its own grey image")
    if photometric == "MINISWHITE":  # 0 is white: invert so that bright is high, as everywhere else
        arr = ~arr if arr.dtype == np.bool_ else ((1 << bits) - 1 - arr.astype(np.int64)).astype(arr.dtype)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * (1 if labels else 255)
    elif photometric == "PALETTE" and not labels and colormap is not None:
        rgb = colormap.T[arr]
        arr = (rgb >> 8).astype(np.uint8) if rgb.max() > 255 else rgb.astype(np.uint8)
        if (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
            arr = arr[..., 0]
    if arr.dtype.kind == "f" and arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    return np.ascontiguousarray(arr), meta


class _HeldLogs(logging.Filter):
    """Holds back the calling thread's log records (other threads' records pass)."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        self.records.append(record)
        return False


@contextmanager
def _remarks_only_if_decoded() -> Iterator[None]:
    """Show Pillow's warnings and tifffile's log lines only when the picture decodes.

    A damaged file gets one InputError line saying what is wrong; the decoders' remarks about the same damage
    (several lines, with source code) would bury it.
    """
    logger = logging.getLogger("tifffile")
    held = _HeldLogs()
    logger.addFilter(held)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        logger.removeFilter(held)
    for record in held.records:  # reached only when decoding succeeded
        logger.handle(record)
    for remark in caught:
        warnings.warn_explicit(remark.message, remark.category, remark.filename, remark.lineno, source=remark.source)


def load_picture(path: PathLike, limits: ReadLimits | None = None, *, labels: bool = False
                 ) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a picture to (pixels, meta) after checking its size from the header.

    ``labels`` keeps palette images as their indices and 1-bit images as 0/1 (for label maps).
    """
    with _remarks_only_if_decoded():
        return _load_picture(path, limits, labels)


def _load_picture(path: PathLike, limits: ReadLimits | None, labels: bool) -> tuple[np.ndarray, dict[str, Any]]:
    p = existing_file(path)
    limits = resolve_limits(limits)
    if sniff_format(p) == "tiff":
        tiff_error: BaseException | None = None
        try:
            decoded = _tiff_array(p, limits, labels)
        except InputError:
            raise
        except (tifffile.TiffFileError, *_DECODE_ERRORS) as err:
            decoded, tiff_error = None, err
        if decoded is not None:
            return decoded
        try:
            with _open_pillow(p, limits) as im:
                return _pillow_array(im, p, labels)
        except InputError:
            if tiff_error is None:
                raise
            raise _truncated(p, tiff_error) from tiff_error
    with _open_pillow(p, limits) as im:
        return _pillow_array(im, p, labels)


def read_picture(path: PathLike, limits: ReadLimits | None = None) -> Image2D:
    """Read a PNG/JPEG/TIFF/BMP (or other Pillow format) into an Image2D with the file's own values."""
    pixels, meta = load_picture(path, limits)
    check_finite(pixels, path)
    return Image2D(pixels=pixels, path=Path(path), meta=meta)
