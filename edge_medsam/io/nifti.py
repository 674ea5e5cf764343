"""NIfTI (nibabel): volumes with their affine, 2D NIfTI images, and writers that keep the source geometry."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from edge_medsam.errors import InputError
from edge_medsam.io.files import (
    PathLike,
    atomic_write,
    check_finite,
    check_voxels,
    existing_file,
    not_readable,
    resolve_limits,
)
from edge_medsam.io.masks import label_array
from edge_medsam.io.types import Image2D, ReadLimits, Volume
from edge_medsam.io.volumes import single_slice_axis, slice_volume

_NAMES = (".nii", ".nii.gz", ".hdr", ".img", ".hdr.gz", ".img.gz")
# What nibabel (and numpy's memory map under it) raise on damaged headers and data.
_READ_ERRORS = (ImageFileError, HeaderDataError, OSError, EOFError, zlib.error, ValueError, struct.error, OverflowError,
                TypeError)


def _open(path: PathLike, limits: ReadLimits) -> tuple[nib.spatialimages.SpatialImage, tuple[int, int, int]]:
    """Load the header only; return the image and its shape as three spatial axes, checked against the limits."""
    p = existing_file(path)
    if not p.name.lower().endswith(_NAMES):
        raise InputError("holds NIfTI data but its name does not end in .nii or .nii.gz", path=p,
                         fix="rename it to end in .nii (or .nii.gz if it is gzip-compressed)")
    try:
        img = nib.load(p)
    except _READ_ERRORS as err:
        raise not_readable(p, f"the NIfTI header cannot be read ({err})") from err
    shape = tuple(int(v) for v in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 3:
        raise InputError(f"is a {len(shape)}D NIfTI of shape {shape} (several volumes or channels)", path=p,
                         fix="extract one 3D volume first, e.g. nibabel.funcs.four_to_three or fslroi")
    shape = (*shape, 1, 1)[:3] if len(shape) < 3 else shape
    check_voxels(shape, limits, p)
    return img, shape  # type: ignore[return-value]


def _voxels(img: nib.spatialimages.SpatialImage, shape: tuple[int, int, int], path: Path) -> np.ndarray:
    """Decode the data, applying scl_slope/scl_inter (→ float32) only where the header sets a real scaling."""
    proxy = img.dataobj
    try:
        raw = np.asarray(proxy.get_unscaled())
    except _READ_ERRORS as err:
        raise not_readable(path, f"the NIfTI data is truncated or corrupt ({err})",
                           fix="copy or export the file again; a partial download cannot be decoded") from err
    if raw.dtype.names:  # RGB24 / RGBA32 NIfTI: a record per voxel
        raw = np.stack([raw[name] for name in raw.dtype.names[:3]], axis=-1)
        return raw.reshape((*shape, 3))
    if raw.dtype.kind == "c":
        raise InputError("holds complex-valued data", path=path, fix="save the magnitude image instead")
    slope, inter = float(getattr(proxy, "slope", 1.0)), float(getattr(proxy, "inter", 0.0))
    if (slope, inter) != (1.0, 0.0) and np.isfinite(slope) and slope != 0.0:
        raw = raw.astype(np.float32) * np.float32(slope) + np.float32(inter)
    elif raw.dtype.kind == "f" and raw.dtype != np.float32:
        raw = raw.astype(np.float32)
    raw = raw.reshape(shape)
    check_finite(raw, path, "volume")
    return raw


def read_nifti(path: PathLike, limits: ReadLimits | None = None) -> Volume:
    """Read a NIfTI/Analyze volume: voxels as stored (float32 when scaled) and the file's affine (sform, else qform)."""
    img, shape = _open(path, resolve_limits(limits))
    p = Path(path)
    header = img.header
    meta: dict[str, Any] = {"format": "nifti"}
    for code in ("qform_code", "sform_code"):
        if code in header:
            meta[code] = int(header[code])
    return Volume(voxels=_voxels(img, shape, p), affine=np.asarray(img.affine, dtype=np.float64), path=p,
                  source=[header.copy()], meta=meta)


def read_nifti_image(path: PathLike, limits: ReadLimits | None = None) -> Image2D:
    """Read a 2D NIfTI (or a 3D one with a single slice) as an Image2D in display orientation."""
    limits = resolve_limits(limits)
    img, shape = _open(path, limits)
    p = Path(path)
    axis = single_slice_axis(shape, p, limits)
    volume = Volume(voxels=_voxels(img, shape, p), affine=np.asarray(img.affine, dtype=np.float64), path=p,
                    meta={"format": "nifti"})
    return slice_volume(volume, axis, 0)


def _checked_affine(affine: np.ndarray, path: PathLike) -> np.ndarray:
    arr = np.asarray(affine, dtype=np.float64)
    if arr.shape != (4, 4) or not np.isfinite(arr).all() or abs(np.linalg.det(arr[:3, :3])) < 1e-12:
        raise InputError(f"affine of shape {arr.shape} is not a finite, invertible 4x4 matrix", path=path,
                         fix="give the voxel-to-RAS affine of the volume (e.g. Volume.affine)")
    return arr


def _savable(data: np.ndarray, path: PathLike) -> np.ndarray:
    arr = np.asarray(data)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if arr.dtype.kind not in "uif" or arr.ndim < 2:
        raise InputError(f"data of type {arr.dtype} and shape {arr.shape} cannot be written as NIfTI", path=path,
                         fix="give a numeric array with at least 2 dimensions")
    if arr.dtype == np.float16:
        return arr.astype(np.float32)
    if arr.dtype in (np.int64, np.uint64):
        if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
            raise InputError("64-bit integers beyond the 32-bit range", path=path, fix="rescale the data first")
        return arr.astype(np.int32)
    return arr


def _save(path: PathLike, img: nib.Nifti1Image) -> Path:
    def save(tmp: Path) -> None:
        nib.save(img, tmp)

    return atomic_write(path, save)


def write_nifti(path: PathLike, data: np.ndarray, affine: np.ndarray) -> Path:
    """Write an array as NIfTI-1 (.nii or .nii.gz) with ``affine`` in both qform and sform (scanner codes)."""
    img = nib.Nifti1Image(_savable(data, path), _checked_affine(affine, path))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    return _save(path, img)


def write_nifti_labels(path: PathLike, labels: np.ndarray, reference: Volume) -> Path:
    """Write a label map (uint8/uint16) on the grid of ``reference``, keeping its affine and qform/sform codes."""
    arr = label_array(labels, path, max_label=0xFFFF)
    if arr.shape != reference.shape:
        raise InputError(f"labels of shape {arr.shape} do not match the reference volume {reference.shape}",
                         path=path, fix="give one label per voxel of the volume they were predicted on")
    affine = _checked_affine(reference.affine, path)
    source = reference.source[0] if reference.source else None
    if isinstance(source, nib.Nifti1Header):
        image_class = nib.Nifti2Image if isinstance(source, nib.Nifti2Header) else nib.Nifti1Image
        img = image_class(arr, affine, header=source.copy())
        codes = int(source["qform_code"]), int(source["sform_code"])
    else:
        img = nib.Nifti1Image(arr, affine)
        img.header.set_xyzt_units("mm", "sec")
        codes = 1, 1
    if codes == (0, 0):
        codes = 1, 1
    img.set_qform(affine if codes[0] else None, code=codes[0])
    img.set_sform(affine if codes[1] else None, code=codes[1])
    header = img.header
    header.set_data_dtype(arr.dtype)
    header.set_slope_inter(1.0, 0.0)
    header.set_intent("label")
    header["cal_min"], header["cal_max"] = 0, 0
    header["descrip"] = b"edge-medsam labels"
    return _save(path, img)
