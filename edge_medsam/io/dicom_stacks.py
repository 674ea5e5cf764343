"""Enhanced multi-frame CT/MR: check that the frames are one regular stack before they are read as a volume.

An Enhanced CT/MR Image may hold several stacks (Stack ID), orientations (a localizer set) or repetitions of
the same slice positions (time points, echoes, b-values: the file's non-spatial Dimension Index Values). None
of these is one volume; they are refused with a listing of what the file holds, so the user can split it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset

from edge_medsam.errors import InputError
from edge_medsam.io.files import PathLike

_SPATIAL = {"ImagePositionPatient", "StackID", "InStackPositionNumber", "ImageOrientationPatient"}
_PLANE_OF_NORMAL = ("sagittal", "coronal", "axial")  # LPS x, y, z
_FIX = ("split the file into one series per stack, orientation or time point (e.g. dcm4che's emf2sf, or the "
        "scanner's export as classic images) and give one of them")


def _listing(counts: Counter) -> str:
    return ", ".join(f"{name}: {count} frames" for name, count in sorted(counts.items(), key=lambda kv: str(kv[0])))


def _plane_name(orientation: tuple[float, ...]) -> str:
    normal = np.cross(orientation[:3], orientation[3:])
    return f"{_PLANE_OF_NORMAL[int(np.argmax(np.abs(normal)))]} {list(orientation)}"


def _orientation(attrs: Dataset) -> tuple[float, ...] | None:
    value = attrs.get("ImageOrientationPatient")
    return tuple(round(float(v), 3) for v in value) if value and len(value) == 6 else None


def _position(attrs: Dataset) -> tuple[float, ...] | None:
    value = attrs.get("ImagePositionPatient")
    return tuple(round(float(v), 3) for v in value) if value and len(value) == 3 else None


def _dimensions(ds: Dataset) -> list[str]:
    """The keywords the file's Dimension Index Values are indices of, in order."""
    return [keyword_for_tag(item.DimensionIndexPointer) or str(item.DimensionIndexPointer)
            for item in ds.get("DimensionIndexSequence") or [] if "DimensionIndexPointer" in item]


def _index_values(frame: Dataset) -> list[int]:
    value = frame.get("DimensionIndexValues")
    return [] if value is None or value == "" else [int(v) for v in np.atleast_1d(value)]


def _varying_dimensions(ds: Dataset, frames: Sequence[Dataset]) -> list[str]:
    """Non-spatial dimensions whose index takes more than one value: '3 values of TemporalPositionIndex'."""
    values = [_index_values(f) for f in frames]
    varying = []
    for index, name in enumerate(_dimensions(ds)):
        distinct = {v[index] for v in values if len(v) > index}
        if name not in _SPATIAL and len(distinct) > 1:
            varying.append(f"{len(distinct)} values of {name}")
    return varying


def check_single_stack(ds: Dataset, frames: Sequence[Dataset], path: PathLike) -> None:
    """Raise InputError unless the frames of an enhanced multi-frame ``ds`` (``frames``: each frame's flattened
    attributes, as from ``frame_attributes``) form one stack: one Stack ID, one orientation, distinct positions."""
    if "PerFrameFunctionalGroupsSequence" not in ds or len(frames) < 2:
        return
    stacks = Counter(str(f.get("StackID")) for f in frames if f.get("StackID") not in (None, ""))
    if len(stacks) > 1:
        raise InputError(f"the multi-frame file holds {len(stacks)} stacks, not one volume (Stack ID "
                         f"{_listing(stacks)})", path=path, fix=_FIX)
    orientations = Counter(_plane_name(o) for o in map(_orientation, frames) if o is not None)
    if len(orientations) > 1:
        raise InputError(f"the multi-frame file holds frames of {len(orientations)} orientations, not one volume "
                         f"({_listing(orientations)})", path=path, fix=_FIX)
    positions = Counter(p for p in map(_position, frames) if p is not None)
    if positions and max(positions.values()) > 1:
        varying = _varying_dimensions(ds, frames)
        why = f"; the frames differ in {', '.join(varying)}" if varying else ""
        raise InputError(f"the multi-frame file's {len(frames)} frames lie at {len(positions)} slice positions, "
                         f"up to {max(positions.values())} frames at one position{why}", path=path, fix=_FIX)
