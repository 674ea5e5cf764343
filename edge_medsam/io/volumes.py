"""Cut a Volume into 2D slices shown the way radiologists view them, and put 2D results back.

Slices are taken along an array axis (no resampling); their rows and columns are permuted and flipped so the
picture follows the radiological display convention: axial and coronal with the patient's right on the left of
the picture, sagittal with anterior on the left, and head (or anterior, for axial) at the top.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nibabel.orientations import io_orientation

from edge_medsam.errors import InputError
from edge_medsam.io.types import Image2D, ReadLimits, Volume

_PLANES = {"sagittal": 0, "coronal": 1, "axial": 2}  # plane name → world axis of its normal (RAS x, y, z)
_ALIASES = {"transverse": "axial", "transversal": "axial", "frontal": "coronal", "sag": "sagittal",
            "cor": "coronal", "ax": "axial"}
# For a slice normal along world x, y or z: the world axes shown as (rows, columns), both running toward -RAS
# (rows toward posterior or inferior, columns toward the patient's left or posterior).
_DISPLAY = {2: (1, 0), 1: (2, 0), 0: (2, 1)}


@dataclass(frozen=True)
class _View:
    axis: int  # array axis the slice is taken along
    plane: str
    row_axis: int  # array axis shown as rows
    col_axis: int
    flip_rows: bool
    flip_cols: bool


def _view(volume: Volume, axis: int | str) -> _View:
    ornt = io_orientation(volume.affine)  # per array axis: (world axis, +1/-1)
    world_of = {int(w): a for a, (w, _) in enumerate(ornt)}
    if isinstance(axis, str):
        name = _ALIASES.get(axis.strip().lower(), axis.strip().lower())
        if name not in _PLANES:
            raise InputError(f"unknown slicing axis {axis!r}", path=volume.path,
                             fix="use 0, 1, 2 or sagittal, coronal, axial")
        array_axis = world_of[_PLANES[name]]
    elif isinstance(axis, (int, np.integer)) and 0 <= int(axis) <= 2:
        array_axis = int(axis)
    else:
        raise InputError(f"slicing axis {axis!r} does not exist", path=volume.path,
                         fix="use 0, 1, 2 or sagittal, coronal, axial")
    normal = int(ornt[array_axis][0])
    row_world, col_world = _DISPLAY[normal]
    row_axis, col_axis = world_of[row_world], world_of[col_world]
    plane = next(name for name, world in _PLANES.items() if world == normal)
    return _View(array_axis, plane, row_axis, col_axis, bool(ornt[row_axis][1] > 0), bool(ornt[col_axis][1] > 0))


def _check_index(volume: Volume, view: _View, index: int) -> int:
    size = volume.shape[view.axis]
    if not isinstance(index, (int, np.integer)) or not 0 <= int(index) < size:
        raise InputError(f"slice index {index!r} is outside 0..{size - 1} along axis {view.axis} ({view.plane})",
                         path=volume.path, fix=f"give an index from 0 to {size - 1}")
    return int(index)


def _display(plane: np.ndarray, view: _View) -> np.ndarray:
    """Array-order plane (remaining axes in order, optional channel last) → display rows x columns."""
    remaining = [a for a in range(3) if a != view.axis]
    if remaining.index(view.row_axis) == 1:
        plane = plane.swapaxes(0, 1)
    if view.flip_rows:
        plane = plane[::-1]
    if view.flip_cols:
        plane = plane[:, ::-1]
    return plane


def single_slice_axis(shape: tuple[int, int, int], path: Path, limits: ReadLimits) -> int:
    """The axis of a one-slice volume (a 2D image stored as 3D), checked against the 2D size limits."""
    singleton = [axis for axis in (2, 1, 0) if shape[axis] == 1]
    if not singleton:
        raise InputError(f"is a 3D volume of shape {shape}, not a 2D image", path=path,
                         fix="read it with read_volume, or take one slice with slice_volume")
    others = [shape[a] for a in range(3) if a != singleton[0]]
    limits.check_2d(others[0], others[1], path)
    return singleton[0]


def slice_volume(volume: Volume, axis: int | str, index: int) -> Image2D:
    """Take slice ``index`` along ``axis`` (0/1/2 or sagittal/coronal/axial) as an Image2D in display orientation.

    ``meta["slice"]`` records the axis, plane and index; ``insert_slice`` puts a 2D result back exactly.
    """
    view = _view(volume, axis)
    index = _check_index(volume, view, index)
    pixels = np.ascontiguousarray(_display(np.moveaxis(volume.voxels, view.axis, 0)[index], view))
    spacing = np.linalg.norm(volume.affine[:3, :3], axis=0)
    meta = {**volume.meta, "slice": {"axis": view.axis, "plane": view.plane, "index": index}}
    return Image2D(pixels=pixels, path=volume.path, spacing=(float(spacing[view.row_axis]),
                   float(spacing[view.col_axis])), modality=volume.modality, hounsfield=volume.hounsfield,
                   window=volume.window, meta=meta)


def insert_slice(labels: np.ndarray, mask: np.ndarray, volume: Volume, axis: int | str, index: int) -> None:
    """Write a 2D ``mask`` in display orientation (as from ``slice_volume``) into ``labels`` of the volume's shape."""
    view = _view(volume, axis)
    index = _check_index(volume, view, index)
    if tuple(labels.shape[:3]) != volume.shape:
        raise InputError(f"labels of shape {labels.shape} do not match the volume {volume.shape}", path=volume.path,
                         fix="allocate labels with the volume's shape")
    # The display transform is only a permutation and flips, so applied to a view of the destination it inverts.
    destination = _display(np.moveaxis(labels, view.axis, 0)[index], view)
    if tuple(mask.shape[:2]) != tuple(destination.shape[:2]):
        raise InputError(f"mask of shape {mask.shape} does not fit a {view.plane} slice of shape "
                         f"{destination.shape[:2]}", path=volume.path, fix="give the mask predicted on that slice")
    destination[...] = mask
