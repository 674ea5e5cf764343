"""DICOM files (pydicom): one image → Image2D, a multi-frame image → Volume, and the pieces series reading shares.

Pixel values follow the DICOM pipeline up to the modality LUT: stored values → rescale slope/intercept or
Modality LUT (CT → Hounsfield units) → MONOCHROME1 inverted so that bright means dense. The display step (VOI
LUT, window) is not applied; its window is kept on ``window`` for the caller.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from edge_medsam.errors import InputError
from edge_medsam.io.dicom_header import drop_malformed
from edge_medsam.io.dicom_stacks import check_single_stack
from edge_medsam.io.files import (
    PathLike,
    check_finite,
    check_voxels,
    existing_file,
    not_readable,
    resolve_limits,
)
from edge_medsam.io.gzipped import gunzip, is_gzip, not_gzip_image, sniff
from edge_medsam.io.types import Image2D, ReadLimits, Volume
from edge_medsam.modalities import modality_from_dicom

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_REQUIRED = ("Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated")
_NON_IMAGES = {
    "SEG": "a DICOM Segmentation (read it with read_dicom_seg)",
    "RTSTRUCT": "an RT Structure Set (contours, no image)",
    "SR": "a Structured Report (no image)",
    "PR": "a Presentation State (no image)",
    "KO": "a Key Object Selection (no image)",
}
_TRUNCATED_FIX = "copy or export the file again; a partial transfer cannot be decoded"
# What pydicom raises on malformed files (element values of a wrong length included).
DICOM_ERRORS = (InvalidDicomError, BytesLengthException, EOFError, OSError, ValueError, TypeError, KeyError,
                AttributeError, NotImplementedError, RuntimeError, struct.error, IndexError)
_POSITION_TOLERANCE_MM = 1e-3


@contextmanager
def dicom_errors(path: PathLike) -> Iterator[None]:
    """Turn whatever a malformed DICOM makes pydicom raise into an InputError naming the file."""
    try:
        yield
    except InputError:
        raise
    except DICOM_ERRORS as err:
        raise not_readable(path, f"the DICOM file is malformed or truncated ({type(err).__name__}: {err})",
                           fix=_TRUNCATED_FIX) from err


def dicom_source(path: Path, limits: ReadLimits | None = None) -> Path | BytesIO:
    """What pydicom reads: the file, or the content of a gzip-compressed one."""
    return BytesIO(gunzip(path, resolve_limits(limits))) if is_gzip(path) else path


def read_dataset(path: PathLike, limits: ReadLimits | None = None) -> Dataset:
    """Read a DICOM file (or gzip-compressed DICOM) with pydicom; files without the DICM preamble are read only if
    named .dcm/.ima."""
    p = existing_file(path)
    kind = sniff(p)
    if kind == "gzip":
        raise not_gzip_image(p)
    with dicom_errors(p):
        try:
            ds = pydicom.dcmread(dicom_source(p, limits), force=kind == "dicom")
        except InvalidDicomError as err:
            raise not_readable(p, "not a DICOM file (no DICM marker)") from err
        if "TransferSyntaxUID" not in ds.file_meta:
            # Old files without a file meta header: the encoding pydicom detected is the transfer syntax.
            implicit, little = ds.original_encoding
            ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                              ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        drop_malformed(ds, p)
        return ds


def check_image_dataset(ds: Dataset, path: PathLike) -> None:
    """Raise InputError unless ``ds`` is an image object with the attributes needed to decode it."""
    modality = str(ds.get("Modality", "")).upper()
    if modality in _NON_IMAGES:
        raise InputError(f"is {_NON_IMAGES[modality]}, not an image", path=path,
                         fix="give the image series it refers to" + (
                             " (and this file to predict --prompts-from or eval --labels)"
                             if modality in ("SEG", "RTSTRUCT") else ""))
    missing = [k for k in _REQUIRED if k not in ds]
    if not any(k in ds for k in PIXEL_KEYWORDS):
        missing.append("PixelData")
    if missing:
        raise not_readable(path, f"DICOM object without an image ({', '.join(missing)} missing); it is truncated "
                           "or not an image (e.g. a DICOMDIR or report)",
                           fix="give a DICOM image file, or the folder of the series")


def number_of_frames(ds: Dataset) -> int:
    """NumberOfFrames, 1 when absent or empty."""
    value = ds.get("NumberOfFrames")
    return int(value) if value not in (None, "") else 1


def frame_attributes(ds: Dataset, index: int) -> Dataset:
    """The dataset as seen by frame ``index``: shared then per-frame functional groups overlaid on the top level.

    Enhanced (multi-frame) objects keep rescale, window, position and spacing in functional groups; flattening
    them lets one code path (and pydicom's apply_modality_lut) serve classic and enhanced objects alike. Classic
    multi-frame grids (RT Dose, some NM) place frame ``index`` at ImagePositionPatient moved along the slice
    normal by its GridFrameOffsetVector entry (relative to the first entry, which covers both of the standard's
    conventions: offsets from 0, or absolute z for an axial grid).
    """
    groups = [seq[0] for seq in (ds.get("SharedFunctionalGroupsSequence"),) if seq]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and index < len(per_frame):
        groups.append(per_frame[index])
    offsets = ds.get("GridFrameOffsetVector")
    gridded = bool(offsets) and index < len(offsets) and number_of_frames(ds) > 1 and \
        "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds
    if not groups and not gridded:
        return ds
    flat = Dataset()
    for element in ds:
        if element.keyword not in (*PIXEL_KEYWORDS, "SharedFunctionalGroupsSequence",
                                   "PerFrameFunctionalGroupsSequence"):
            flat.add(element)
    if hasattr(ds, "file_meta"):
        flat.file_meta = ds.file_meta  # LUT data endianness is read from it
    for group in groups:
        for macro in group:
            if macro.VR == "SQ" and macro.value:
                for element in macro.value[0]:
                    flat.add(element)
    if gridded:
        orientation = np.asarray(ds.ImageOrientationPatient, np.float64)
        normal = np.cross(orientation[:3], orientation[3:])
        shift = float(offsets[index]) - float(offsets[0])
        position = np.asarray(ds.ImagePositionPatient, np.float64) + shift * normal
        # A new element: the flattened view shares the others with ``ds``, which must not change.
        flat["ImagePositionPatient"] = DataElement(0x00200032, "DS", [f"{v:.6f}" for v in position])
    return flat


def _decode_fix(ds: Dataset) -> str:
    """What to do when pixel data does not decode: depends on whether pydicom has a working decoder for it."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed:
        return _TRUNCATED_FIX
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return (f"pydicom has no decoder for {syntax.name} ({syntax}); export the image uncompressed or in a "
                "JPEG, JPEG-LS, JPEG 2000 or RLE transfer syntax (e.g. dcmdjpeg, gdcmconv --raw)")
    if not decoder.is_available:
        return (f"install the decoders for {syntax.name}: pip install 'edge-medsam[runtime]' (pylibjpeg, "
                "pylibjpeg-libjpeg, pylibjpeg-openjpeg, pylibjpeg-rle)")
    return f"the {syntax.name} stream is damaged or cut short; export the file again from the archive"


def decode(ds: Dataset, path: PathLike) -> np.ndarray:
    """Decode the pixel data: (rows, cols[, 3]) for one frame, (frames, rows, cols[, 3]) for several; YBR → RGB."""
    try:
        return ds.pixel_array
    except DICOM_ERRORS as err:
        raise not_readable(path, f"the DICOM pixel data cannot be decoded ({err})", fix=_decode_fix(ds)) from err


def _first(value: Any) -> float:
    return float(value[0] if isinstance(value, Sequence) and not isinstance(value, str) else value)


def _stored_range(attrs: Dataset) -> tuple[float, float]:
    bits = int(attrs.get("BitsStored") or attrs.BitsAllocated)
    if int(attrs.get("PixelRepresentation") or 0):
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _rescale(attrs: Dataset) -> tuple[float, float] | None:
    """(slope, intercept) if the frame sets a rescale that changes values, else None."""
    if "RescaleSlope" not in attrs and "RescaleIntercept" not in attrs:
        return None
    slope = _first(attrs.get("RescaleSlope") or 1.0)
    intercept = _first(attrs.get("RescaleIntercept") or 0.0)
    return None if (slope, intercept) == (1.0, 0.0) else (slope, intercept)


def _window(attrs: Dataset) -> tuple[tuple[float, float] | None, str | None]:
    centre, width = attrs.get("WindowCenter"), attrs.get("WindowWidth")
    if centre not in (None, "") and width not in (None, ""):
        c, w = _first(centre), _first(width)
        if np.isfinite(c) and np.isfinite(w) and w > 0:
            return (c, w), "window"
    voi = attrs.get("VOILUTSequence")
    if voi and "LUTDescriptor" in voi[0]:
        entries, first, _ = (int(v) for v in voi[0].LUTDescriptor)
        entries = entries or 65536
        return (first + entries / 2.0, float(entries)), "voi_lut"  # the value range the display LUT spans
    return None, None


@dataclass
class Frame:
    """One decoded frame: modality values, its display window and how they were derived."""

    values: np.ndarray
    window: tuple[float, float] | None
    info: dict[str, Any]


def pixel_values(frame: np.ndarray, ds: Dataset, attrs: Dataset) -> Frame:
    """Stored values of one frame → modality values (HU for CT), MONOCHROME1 inverted; with the display window."""
    photometric = str(attrs.PhotometricInterpretation).upper()
    info: dict[str, Any] = {"photometric": photometric}
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(frame, ds)[..., :3]
        return Frame(rgb if rgb.max() > 255 else rgb.astype(np.uint8), None, info)
    if int(attrs.SamplesPerPixel) != 1:
        return Frame(frame, None, info)
    window, source = _window(attrs)
    if source:
        info["window_source"] = source
    lo, hi = _stored_range(attrs)
    if attrs.get("ModalityLUTSequence"):
        values = apply_modality_lut(frame, attrs)
        lo, hi = float(values.min()), float(values.max())
        info["modality_lut"] = True
    elif (rescale := _rescale(attrs)) is not None:
        # What apply_modality_lut does, in float32 rather than float64: half the memory for a whole CT.
        slope, intercept = rescale
        values = frame.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
        info["rescale"] = rescale
    else:
        values = frame
    if photometric == "MONOCHROME1":
        # Invert within the value range so that bright means dense, as in MONOCHROME2 and every other reader here.
        values = (np.float64(lo + hi) - values).astype(values.dtype)
        window = None if window is None else (lo + hi - window[0], window[1])
        info["inverted"] = True
    return Frame(values, window, info)


def dicom_modality(ds: Dataset) -> tuple[str | None, bool, str]:
    """(modality name or None, values are Hounsfield units, the DICOM Modality code)."""
    code = str(ds.get("Modality", "")).strip().upper()
    modality = modality_from_dicom(code)
    grey = int(ds.get("SamplesPerPixel") or 1) == 1
    return (modality.name if modality else None), (code == "CT" and grey), code


def pixel_spacing(attrs: Dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm from PixelSpacing, else ImagerPixelSpacing (projection X-ray at the detector)."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = attrs.get(keyword)
        if value and len(value) == 2 and all(float(v) > 0 for v in value):
            return float(value[0]), float(value[1])
    return None


def drop_pixels(ds: Dataset) -> Dataset:
    """Remove the pixel data (already decoded) so that Volume.source keeps only the headers writers need."""
    for keyword in PIXEL_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)
    return ds


@dataclass(frozen=True)
class _Plane:
    position: np.ndarray  # ImagePositionPatient, LPS mm
    row: np.ndarray  # direction of increasing column index
    col: np.ndarray  # direction of increasing row index


def _plane(attrs: Dataset) -> _Plane | None:
    position, orientation = attrs.get("ImagePositionPatient"), attrs.get("ImageOrientationPatient")
    if not position or not orientation or len(position) != 3 or len(orientation) != 6:
        return None
    cosines = np.asarray([float(v) for v in orientation])
    return _Plane(np.asarray([float(v) for v in position]), cosines[:3], cosines[3:])


def _slice_thickness(attrs: Dataset) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = attrs.get(keyword)
        if value not in (None, "") and float(value) > 0:
            return float(value)
    return 1.0


def ras_affine(row: np.ndarray, col: np.ndarray, spacing: tuple[float, float], step: np.ndarray,
               origin: np.ndarray) -> np.ndarray:
    """The (i=column, j=row, k=slice) → RAS affine from DICOM's LPS geometry."""
    lps = np.eye(4)
    lps[:3, 0] = row * spacing[1]
    lps[:3, 1] = col * spacing[0]
    lps[:3, 2] = step
    lps[:3, 3] = origin
    return LPS_TO_RAS @ lps


def stack_geometry(frames: Sequence[Dataset], fallback: Sequence[int | None], path: PathLike
                   ) -> tuple[list[int], np.ndarray, dict[str, Any]]:
    """Order 2D frames into a volume and give its RAS affine.

    Frames are sorted by ImagePositionPatient projected on the slice normal; without positions by ``fallback``
    (InstanceNumber, or frame order) with the first frame's orientation and SliceThickness as the step.
    """
    planes = [_plane(f) for f in frames]
    spacing = pixel_spacing(frames[0]) or (1.0, 1.0)
    meta: dict[str, Any] = {}
    if all(p is not None for p in planes):
        first = planes[0]
        for p in planes:  # type: ignore[union-attr]
            if not (np.allclose(p.row, first.row, atol=1e-3) and np.allclose(p.col, first.col, atol=1e-3)):
                raise InputError("the images have different orientations (ImageOrientationPatient)", path=path,
                                 fix="give one series with a single orientation (a localizer may have slipped in)")
        normal = np.cross(first.row, first.col)
        distances = np.array([p.position @ normal for p in planes])  # type: ignore[union-attr]
        order = [int(i) for i in np.argsort(distances, kind="stable")]
        gaps = np.diff(distances[order])
        if len(gaps) and gaps.min() < _POSITION_TOLERANCE_MM:
            duplicates = int((gaps < _POSITION_TOLERANCE_MM).sum())
            raise InputError(f"{duplicates} images share a slice position with another image", path=path,
                             fix="the series mixes acquisitions (echoes, phases, time points); split it, "
                                 "e.g. by EchoTime, AcquisitionNumber or TemporalPositionIdentifier")
        if len(gaps) and np.abs(gaps - np.median(gaps)).max() > 0.05 * np.median(gaps) + _POSITION_TOLERANCE_MM:
            warnings.warn(f"{path}: slice spacing varies from {gaps.min():.3f} to {gaps.max():.3f} mm (missing "
                          "slices?); the volume assumes even spacing", stacklevel=3)
            meta["irregular_spacing"] = (float(gaps.min()), float(gaps.max()))
        start, end = planes[order[0]], planes[order[-1]]
        step = ((end.position - start.position) / (len(order) - 1) if len(order) > 1  # type: ignore[union-attr]
                else normal * _slice_thickness(frames[0]))
        meta["geometry"] = "image_position"
        return order, ras_affine(first.row, first.col, spacing, step, start.position), meta  # type: ignore[union-attr]
    keys = list(fallback)
    if all(k is not None for k in keys) and len(set(keys)) == len(keys):
        order = sorted(range(len(keys)), key=lambda i: keys[i])  # type: ignore[arg-type,return-value]
    else:
        order = list(range(len(keys)))
        if len(keys) > 1:
            warnings.warn(f"{path}: no slice positions or instance numbers; slices kept in file order", stacklevel=3)
    orientation = frames[0].get("ImageOrientationPatient")
    cosines = np.asarray([float(v) for v in orientation]) if orientation and len(orientation) == 6 else np.array(
        [1.0, 0, 0, 0, 1.0, 0])
    position = frames[order[0]].get("ImagePositionPatient")
    origin = np.asarray([float(v) for v in position]) if position and len(position) == 3 else np.zeros(3)
    step = np.cross(cosines[:3], cosines[3:]) * _slice_thickness(frames[0])
    meta["geometry"] = "assumed"
    return order, ras_affine(cosines[:3], cosines[3:], spacing, step, origin), meta


def stack_frames(frames: Sequence[np.ndarray]) -> np.ndarray:
    """Stack 2D frames (k, rows, cols[, 3]) into NIfTI order voxels (i=column, j=row, k[, 3])."""
    dtype = np.result_type(*{f.dtype for f in frames})
    if dtype.kind == "f":
        dtype = np.dtype(np.float32)
    stacked = np.empty((len(frames), *frames[0].shape), dtype=dtype)
    for k, frame in enumerate(frames):
        stacked[k] = frame
    axes = (2, 1, 0, 3) if stacked.ndim == 4 else (2, 1, 0)
    return np.ascontiguousarray(stacked.transpose(axes))


def read_dicom_image(path: PathLike, limits: ReadLimits | None = None) -> Image2D:
    """Read one single-frame DICOM image as an Image2D (HU for CT, window kept, MONOCHROME1 inverted)."""
    limits = resolve_limits(limits)
    ds = read_dataset(path, limits)
    p = Path(path)
    with dicom_errors(p):
        check_image_dataset(ds, p)
        frames = number_of_frames(ds)
        if frames > 1:
            raise InputError(f"is a multi-frame DICOM with {frames} frames, not a single image", path=p,
                             fix="read it with read_volume (or the volume commands)")
        limits.check_2d(int(ds.Rows), int(ds.Columns), p)
        attrs = frame_attributes(ds, 0)
        frame = pixel_values(decode(ds, p), ds, attrs)
        check_finite(frame.values, p)
        modality, hounsfield, code = dicom_modality(ds)
        meta = {"format": "dicom", "dicom_modality": code, **frame.info,
                "sop_instance_uid": str(ds.get("SOPInstanceUID", ""))}
        return Image2D(pixels=np.ascontiguousarray(frame.values), path=p, spacing=pixel_spacing(attrs),
                       modality=modality, hounsfield=hounsfield, window=frame.window, meta=meta,
                       source=[drop_pixels(ds)])


def volume_from_frames(frames: Sequence[Frame], attrs: Sequence[Dataset], fallback: Sequence[int | None],
                       path: PathLike) -> tuple[np.ndarray, np.ndarray, tuple[float, float] | None, dict[str, Any],
                                                list[int]]:
    """Order decoded frames by their geometry: (voxels, affine, window, meta, order)."""
    order, affine, meta = stack_geometry(attrs, fallback, path)
    voxels = stack_frames([frames[i].values for i in order])
    check_finite(voxels, path, "volume")
    first = frames[order[0]]
    meta.update({k: v for k, v in first.info.items() if k in ("photometric", "window_source", "inverted")})
    return voxels, affine, first.window, meta, order


def read_dicom_file_volume(path: PathLike, limits: ReadLimits | None = None) -> Volume:
    """Read a multi-frame DICOM file (or one single-frame image as a one-slice volume) as a Volume.

    Enhanced CT/MR frames take their position, orientation, spacing and rescale from the functional groups; a file
    whose frames are not one stack is refused (``check_single_stack``)."""
    limits = resolve_limits(limits)
    ds = read_dataset(path, limits)
    p = Path(path)
    with dicom_errors(p):
        check_image_dataset(ds, p)
        count = number_of_frames(ds)
        rows, cols = int(ds.Rows), int(ds.Columns)
        limits.check_2d(rows, cols, p)
        check_voxels((cols, rows, count), limits, p)
        attrs = [frame_attributes(ds, f) for f in range(count)]
        check_single_stack(ds, attrs, p)
        decoded = decode(ds, p)
        if count == 1:
            decoded = decoded[None]
        frames = [pixel_values(decoded[f], ds, attrs[f]) for f in range(count)]
        del decoded
        voxels, affine, window, meta, order = volume_from_frames(frames, attrs, range(count), p)
        modality, hounsfield, code = dicom_modality(ds)
        meta.update({"format": "dicom", "dicom_modality": code, "frame_order": order,
                     "series_instance_uid": str(ds.get("SeriesInstanceUID", ""))})
        return Volume(voxels=voxels, affine=affine, path=p, modality=modality, hounsfield=hounsfield, window=window,
                      source=[drop_pixels(ds)], meta=meta)
