"""Readers and writers for what hospitals and datasets contain: pictures, DICOM, NIfTI, NRRD, MedSAM .npz, masks.

DICOM, NIfTI, NRRD and DICOM-SEG functions load pydicom, nibabel, pynrrd and highdicom (the ``runtime`` extra) on
first use, so that pictures and .npz work on the base install and importing this package stays fast.

Every problem a file can have raises InputError naming the file and the fix. Sizes are checked from headers
before any decoding (ReadLimits / EDGE_MEDSAM_MAX_*), and readers refuse NaN or Inf values rather than pass
them on. Writers write atomically (temporary file in the same folder, then rename).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge_medsam.io.files import optional_module
from edge_medsam.io.masks import read_mask, write_mask_png
from edge_medsam.io.npz import LaptopCase, read_laptop_npz, write_laptop_npz
from edge_medsam.io.readers import read_image, read_volume
from edge_medsam.io.types import Image2D, ReadLimits, Volume

if TYPE_CHECKING:
    from edge_medsam.io.dicom_seg import read_dicom_seg, write_dicom_seg
    from edge_medsam.io.dicom_series import read_dicom_series
    from edge_medsam.io.dicom_write import write_dicom_series
    from edge_medsam.io.nifti import write_nifti, write_nifti_labels
    from edge_medsam.io.nrrd import read_nrrd
    from edge_medsam.io.volumes import insert_slice, slice_volume

_LAZY = {
    "write_nifti": "nifti",
    "write_nifti_labels": "nifti",
    "read_nrrd": "nrrd",
    "slice_volume": "volumes",
    "insert_slice": "volumes",
    "read_dicom_series": "dicom_series",
    "write_dicom_series": "dicom_write",
    "write_dicom_seg": "dicom_seg",
    "read_dicom_seg": "dicom_seg",
}

__all__ = [
    "Image2D",
    "LaptopCase",
    "ReadLimits",
    "Volume",
    "insert_slice",
    "read_dicom_seg",
    "read_dicom_series",
    "read_image",
    "read_laptop_npz",
    "read_mask",
    "read_nrrd",
    "read_volume",
    "slice_volume",
    "write_dicom_seg",
    "write_dicom_series",
    "write_laptop_npz",
    "write_mask_png",
    "write_nifti",
    "write_nifti_labels",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(optional_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
