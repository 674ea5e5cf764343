"""What readers return: a 2D image or a 3D volume with the geometry and hints a model needs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_medsam.errors import InputError


@dataclass(frozen=True)
class ReadLimits:
    """Largest images the readers accept (a guard against decompression bombs and exhausted memory).

    Override with the environment variables ``EDGE_MEDSAM_MAX_SIDE`` and ``EDGE_MEDSAM_MAX_PIXELS``.
    """

    max_side: int = 16384
    max_pixels: int = 16384 * 16384
    max_voxels: int = 1024 * 1024 * 1024

    @classmethod
    def from_env(cls) -> ReadLimits:
        """Defaults, overridden by the environment where set."""
        base = cls()
        side = int(os.environ.get("EDGE_MEDSAM_MAX_SIDE", base.max_side))
        pixels = int(os.environ.get("EDGE_MEDSAM_MAX_PIXELS", min(base.max_pixels, side * side)))
        voxels = int(os.environ.get("EDGE_MEDSAM_MAX_VOXELS", base.max_voxels))
        return cls(max_side=side, max_pixels=pixels, max_voxels=voxels)

    def check_2d(self, height: int, width: int, path: str | os.PathLike[str] | None = None) -> None:
        """Raise InputError unless a height x width image is non-degenerate and within the limits."""
        if height < 2 or width < 2:
            raise InputError(f"image is {width}x{height} pixels, too small to segment", path=path,
                             fix="give an image of at least 2x2 pixels")
        if max(height, width) > self.max_side or height * width > self.max_pixels:
            raise InputError(
                f"image is {width}x{height} pixels, over the limit of {self.max_side} per side / {self.max_pixels} pixels",
                path=path, fix="downsample it first or raise EDGE_MEDSAM_MAX_SIDE / EDGE_MEDSAM_MAX_PIXELS")


@dataclass
class Image2D:
    """A 2D image as read from a file.

    ``pixels`` is (H, W) or (H, W, 3) with the file's values: uint8/uint16 for pictures, float32 Hounsfield
    units for CT when ``hounsfield`` is True, the scanner's rescaled values for other DICOM.
    ``spacing`` is (row, column) in mm where the file says it. ``modality`` is the modality name the file
    itself declares (DICOM Modality tag), if any. ``window`` is the file's display window (centre, width).
    ``source`` keeps what a writer needs to reference the original (for DICOM: the dataset without its pixels).
    """

    pixels: np.ndarray
    path: Path | None = None
    spacing: tuple[float, float] | None = None
    modality: str | None = None
    hounsfield: bool = False
    window: tuple[float, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    source: list[Any] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


@dataclass
class Volume:
    """A 3D volume in NIfTI convention: ``voxels[i, j, k]`` and a 4x4 ``affine`` from (i, j, k) to RAS+ mm.

    ``hounsfield``, ``modality`` and ``window`` mean what they mean on Image2D. ``source`` keeps what a
    writer needs to reference the original (for DICOM: the sorted pydicom datasets of the series).
    """

    voxels: np.ndarray
    affine: np.ndarray
    path: Path | None = None
    modality: str | None = None
    hounsfield: bool = False
    window: tuple[float, float] | None = None
    source: list[Any] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along i, j, k in mm (column norms of the affine)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(ni, nj, nk)."""
        return tuple(int(v) for v in self.voxels.shape[:3])  # type: ignore[return-value]
