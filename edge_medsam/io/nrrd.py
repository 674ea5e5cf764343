"""NRRD (pynrrd): ``.nrrd`` and detached ``.nhdr`` volumes as Volumes in the NIfTI convention (voxel → RAS+ mm).

NRRD keeps its axes in file order (the first axis varies fastest), as NIfTI does, so the voxel array is the same
one a NIfTI of the data holds; the affine comes from ``space directions`` and ``space origin`` mapped from the
header's ``space`` (LPS for ITK/3D Slicer files) to RAS, the way ITK converts NRRD to NIfTI.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import nrrd
import numpy as np
from nrrd.errors import NRRDError

from edge_medsam.errors import InputError
from edge_medsam.io.files import PathLike, check_finite, check_voxels, existing_file, not_readable, resolve_limits
from edge_medsam.io.types import Image2D, ReadLimits, Volume
from edge_medsam.io.volumes import single_slice_axis, slice_volume

SUFFIXES = (".nrrd", ".nhdr")
# What pynrrd (and the zlib/bz2/numpy calls under it) raise on damaged headers and data.
_READ_ERRORS = (NRRDError, OSError, EOFError, zlib.error, ValueError, struct.error, OverflowError, TypeError,
                KeyError, IndexError)
# Sign flips from a NRRD world space to RAS; spaces without anatomical meaning keep their coordinates.
_TO_RAS = {
    "right-anterior-superior": (1, 1, 1), "ras": (1, 1, 1),
    "left-anterior-superior": (-1, 1, 1), "las": (-1, 1, 1),
    "left-posterior-superior": (-1, -1, 1), "lps": (-1, -1, 1),
}
_REQUIRED = ("dimension", "type", "encoding", "sizes")
_REPAIR = "re-export it, e.g. with 3D Slicer or SimpleITK (sitk.WriteImage(sitk.ReadImage(path), 'out.nrrd'))"


def _header(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            header = dict(nrrd.read_header(f))
    except _READ_ERRORS as err:
        raise not_readable(path, f"the NRRD header cannot be read ({err})", fix=_REPAIR) from err
    missing = [name for name in _REQUIRED if name not in header]
    if missing:
        raise not_readable(path, f"the NRRD header lacks the field(s) {', '.join(missing)}", fix=_REPAIR)
    data_file = header.get("data file", header.get("datafile"))
    # A header must not make the reader open files elsewhere (an uploaded .nhdr naming /etc/passwd, say).
    if data_file is not None and (Path(str(data_file)).is_absolute() or ".." in Path(str(data_file)).parts):
        raise InputError(f"the header's data file {data_file!r} lies outside the header's folder", path=path,
                         fix="keep the data file next to the .nhdr header and name it without a folder")
    return header


def _space_axes(header: dict[str, Any], path: Path) -> tuple[list[int], np.ndarray | None]:
    """The spatial axes (those with a space direction, or all) and their direction vectors (rows), if given."""
    sizes = [int(v) for v in np.atleast_1d(header["sizes"])]
    directions = header.get("space directions")
    if directions is None:
        return list(range(len(sizes))), None
    matrix = np.asarray(directions, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != len(sizes):
        raise InputError(f"'space directions' of shape {matrix.shape} do not match the {len(sizes)} axes", path=path,
                         fix=_REPAIR)
    spatial = [axis for axis in range(len(sizes)) if np.isfinite(matrix[axis]).all()]
    return spatial, matrix[spatial]


def _geometry(header: dict[str, Any], path: Path) -> tuple[list[int], tuple[int, int, int], np.ndarray]:
    """(spatial axes, their sizes, voxel → RAS affine); InputError unless there are exactly three spatial axes.

    Non-spatial axes (a 'none' space direction) are allowed when they have size 1.
    """
    sizes = [int(v) for v in np.atleast_1d(header["sizes"])]
    if any(v < 0 for v in sizes):
        raise InputError(f"'sizes' {sizes} include a negative axis length", path=path, fix=_REPAIR)
    spatial, directions = _space_axes(header, path)
    extra = [axis for axis in range(len(sizes)) if axis not in spatial]
    if any(sizes[axis] != 1 for axis in extra):
        kinds = header.get("kinds", ["?"] * len(sizes))
        listed = ", ".join(f"{sizes[a]} ({kinds[a] if a < len(kinds) else '?'})" for a in extra)
        raise InputError(f"holds several values per voxel (non-spatial axes of size {listed})", path=path,
                         fix="save one scalar 3D volume, e.g. one component or time point (unu slice)")
    if len(spatial) != 3:
        raise InputError(f"is a {len(spatial)}D NRRD of sizes {tuple(sizes)}, not a 3D volume", path=path,
                         fix="give one 3D volume; save 2D images as PNG/TIFF and split 4D data (unu slice)")
    shape = tuple(sizes[axis] for axis in spatial)
    if directions is None:
        spacings = np.asarray(header.get("spacings", [1.0] * len(sizes)), dtype=np.float64)[spatial]
        directions = np.diag(np.where(np.isfinite(spacings) & (spacings > 0), spacings, 1.0))
    if directions.shape[1] != 3:
        raise InputError(f"lives in a {directions.shape[1]}D world space, not 3D", path=path, fix=_REPAIR)
    origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64).reshape(-1)
    if origin.shape != (3,) or not np.isfinite(origin).all():
        raise InputError(f"'space origin' {origin.tolist()} is not a finite 3D point", path=path, fix=_REPAIR)
    flip = np.asarray(_TO_RAS.get(str(header.get("space", "")).strip().lower().removesuffix("-time"), (1, 1, 1)),
                      dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = flip[:, None] * directions.T  # column i: world step of voxel axis i
    affine[:3, 3] = flip * origin
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError("'space directions' are degenerate (a zero or repeated axis)", path=path, fix=_REPAIR)
    return spatial, shape, affine + 0.0  # type: ignore[return-value]  # + 0.0: no negative zeros from the flips


def _voxels(header: dict[str, Any], path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """Decode the data (pynrrd: raw, gzip, bzip2, ASCII; attached or detached) into the (ni, nj, nk) array."""
    try:
        with open(path, "rb") as f:
            nrrd.read_header(f)  # leaves the file at the first data byte
            raw = nrrd.read_data(header, f, str(path), index_order="F")
    except FileNotFoundError as err:
        raise InputError(f"the data file {err.filename} named by the header is missing", path=path,
                         fix="keep the .nhdr header next to its data file (or fix its 'data file' line)") from err
    except _READ_ERRORS as err:
        raise not_readable(path, f"the NRRD data is truncated or corrupt ({err})",
                           fix="copy or export the file again; a partial download cannot be decoded") from err
    if raw.dtype.kind not in "uif":
        raise InputError(f"holds {raw.dtype} data, not numbers", path=path, fix="save a numeric (integer or float) volume")
    raw = raw.reshape(shape)  # drops the size-1 non-spatial axes; the order of the voxels is unchanged
    if raw.dtype.byteorder not in ("=", "|"):
        raw = raw.astype(raw.dtype.newbyteorder("="))
    if raw.dtype.kind == "f" and raw.dtype != np.float32:
        raw = raw.astype(np.float32)
    check_finite(raw, path, "volume")
    return raw


def _open(path: PathLike, limits: ReadLimits) -> tuple[Path, dict[str, Any], tuple[int, int, int], np.ndarray]:
    """Read the header only; return (path, header, shape, affine) with the shape checked against the limits."""
    p = existing_file(path)
    header = _header(p)
    try:
        _, shape, affine = _geometry(header, p)
    except InputError:
        raise
    except (TypeError, ValueError, IndexError) as err:  # fields of the wrong form (pynrrd parses, does not check)
        raise not_readable(p, f"the NRRD header is inconsistent ({err})", fix=_REPAIR) from err
    check_voxels(shape, limits, p)
    return p, header, shape, affine


def read_nrrd(path: PathLike, limits: ReadLimits | None = None) -> Volume:
    """Read a NRRD volume (.nrrd, or a .nhdr with its data file): voxels as stored, affine voxel → RAS+ mm."""
    p, header, shape, affine = _open(path, resolve_limits(limits))
    voxels = _voxels(header, p, shape)
    meta = {"format": "nrrd", "space": header.get("space"), "encoding": header.get("encoding")}
    return Volume(voxels=voxels, affine=affine, path=p, source=[header], meta=meta)


def read_nrrd_image(path: PathLike, limits: ReadLimits | None = None) -> Image2D:
    """Read a NRRD volume with a single slice as an Image2D in display orientation."""
    limits = resolve_limits(limits)
    p, header, shape, affine = _open(path, limits)
    axis = single_slice_axis(shape, p, limits)
    volume = Volume(voxels=_voxels(header, p, shape), affine=affine, path=p, meta={"format": "nrrd"})
    return slice_volume(volume, axis, 0)


def nrrd_header_geometry(path: PathLike) -> tuple[tuple[int, int, int], np.ndarray]:
    """The shape and affine of a NRRD volume from its header alone (no data is decoded)."""
    _, _, shape, affine = _open(path, resolve_limits(None))
    return shape, affine
