"""The two entry points: ``read_image`` (2D) and ``read_volume`` (3D), dispatching on content first, name second."""

from __future__ import annotations

from pathlib import Path

from edge_medsam.errors import InputError
from edge_medsam.io.files import PathLike, existing_file, is_npz, not_readable, optional_module
from edge_medsam.io.gzipped import not_gzip_image, sniff
from edge_medsam.io.images import read_picture
from edge_medsam.io.npz import read_laptop_npz
from edge_medsam.io.types import Image2D, ReadLimits, Volume

_PICTURES = ("png", "jpeg", "tiff", "bmp")


def read_image(path: PathLike, limits: ReadLimits | None = None) -> Image2D:
    """Read a 2D image: PNG/JPEG/TIFF/BMP, a single-frame DICOM (also gzip-compressed), a 2D NIfTI or NRRD, or a 2D
    MedSAM .npz."""
    p = existing_file(path)
    kind = sniff(p)
    if kind == "dicom":
        return optional_module("dicom").read_dicom_image(p, limits)
    if kind == "nifti":
        return optional_module("nifti").read_nifti_image(p, limits)
    if kind == "nrrd":
        return optional_module("nrrd").read_nrrd_image(p, limits)
    if kind == "zip":
        if not is_npz(p):
            raise InputError("is a zip archive, not an image", path=p,
                             fix="unzip it, or read a zipped DICOM series with read_volume")
        return read_laptop_npz(p, limits).to_image()
    if kind == "gzip":
        raise not_gzip_image(p)
    return read_picture(p, limits)  # known picture formats, and whatever else Pillow recognises by content


def read_volume(path: PathLike, limits: ReadLimits | None = None, *, series: str | None = None) -> Volume:
    """Read a 3D volume: NIfTI, NRRD, a DICOM series folder or zip, DICOMDIR media, a (multi-frame, or
    gzip-compressed) DICOM file, or a 3D MedSAM .npz.

    ``series`` (a SeriesInstanceUID or SeriesNumber) picks one where a folder, zip or DICOMDIR holds several.
    """
    p = Path(path)
    if p.is_dir() or (p.is_file() and p.name.upper() == "DICOMDIR"):
        return optional_module("dicom_series").read_dicom_series(p, limits, series=series)
    p = existing_file(p)
    kind = sniff(p)
    if kind == "nifti":
        return optional_module("nifti").read_nifti(p, limits)
    if kind == "nrrd":
        return optional_module("nrrd").read_nrrd(p, limits)
    if kind == "dicom":
        return optional_module("dicom").read_dicom_file_volume(p, limits)
    if kind == "zip":
        if is_npz(p):
            return read_laptop_npz(p, limits).to_volume()
        return optional_module("dicom_series").read_dicom_zip(p, limits, series=series)
    if kind in _PICTURES:
        raise InputError(f"is a 2D {kind.upper()} picture, not a volume", path=p,
                         fix="read it with read_image, or give a NIfTI file or DICOM series folder")
    if kind == "gzip":
        raise not_gzip_image(p)
    raise not_readable(p, "the content is not a volume format this package reads",
                       fix="give a NIfTI (.nii/.nii.gz) or NRRD (.nrrd/.nhdr) file, a DICOM series folder or zip, "
                           "or a 3D MedSAM .npz")
