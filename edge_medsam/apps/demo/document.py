"""What a user uploaded, read with edge_medsam.io: a 2D picture, or a volume (DICOM file or series, NIfTI, 3D .npz).

A single DICOM image is read as a one-slice volume so that its mask can be written as a DICOM-SEG that
references it. Several uploaded files are one DICOM series: they are copied under generated names into a
scratch folder, so an uploaded file name never becomes part of a path this package builds.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_medsam.errors import EdgeMedSAMError, InputError
from edge_medsam.io import Image2D, ReadLimits, Volume, read_dicom_series, read_image, read_laptop_npz, read_volume
from edge_medsam.io.dicom_series import PICK_SERIES_FIX
from edge_medsam.io.files import is_npz
from edge_medsam.io.gzipped import sniff

VOLUME_KINDS = ("dicom", "nifti", "nrrd", "zip")  # zip: a zipped DICOM series (a .npz is told apart by its content)
PNG, NIFTI, DICOM_SEG = "PNG", "NIfTI", "DICOM-SEG"


@dataclass
class Document:
    """One upload: a 2D ``image`` or a 3D ``volume``, and a one-line description of it."""

    image: Image2D | None
    volume: Volume | None
    description: str

    @property
    def is_volume(self) -> bool:
        """True for a volume (even of one slice)."""
        return self.volume is not None

    @property
    def from_dicom(self) -> bool:
        """True when the volume came from DICOM, so that a DICOM-SEG can reference it."""
        return self.volume is not None and self.volume.meta.get("format") == "dicom"

    def formats(self) -> list[str]:
        """The download formats this upload allows: PNG (the shown slice), NIfTI for volumes, DICOM-SEG for DICOM."""
        return [PNG] + ([NIFTI] if self.is_volume else []) + ([DICOM_SEG] if self.from_dicom else [])


def _describe(document_kind: str, shape: Sequence[int], modality: str | None) -> str:
    size = "x".join(str(v) for v in shape)
    return f"{document_kind} {size}" + (f" ({modality})" if modality else "")


def _read_one(path: Path, limits: ReadLimits) -> Document:
    kind = sniff(path) if path.stat().st_size else None  # gzip-compressed DICOM is "dicom" too
    if kind == "zip" and is_npz(path):
        case = read_laptop_npz(path, limits)
        if case.is_3d:
            volume = case.to_volume()
            return Document(None, volume, _describe("MedSAM .npz volume", volume.shape, volume.modality))
        image = case.to_image()
        return Document(image, None, _describe("MedSAM .npz image", image.shape[::-1], image.modality))
    if kind in VOLUME_KINDS:
        volume = read_volume(path, limits)
        label = {"dicom": "DICOM", "nifti": "NIfTI", "nrrd": "NRRD", "zip": "DICOM series (zip)"}[kind]
        return Document(None, volume, _describe(label, volume.shape, volume.modality))
    image = read_image(path, limits)  # pictures, and the one clear error for anything unreadable
    return Document(image, None, _describe(str(image.meta.get("format", "image")).upper(), image.shape[::-1], None))


def _read_series(paths: Sequence[Path], limits: ReadLimits) -> Document:
    with tempfile.TemporaryDirectory(prefix="edge-medsam-series-") as scratch:
        folder = Path(scratch)
        for number, path in enumerate(paths):
            shutil.copyfile(path, folder / f"{number:05d}.dcm")
        volume = read_dicom_series(folder, limits)
    volume.path = None  # the scratch folder is gone; nothing may refer to it
    return Document(None, volume, _describe(f"DICOM series of {len(paths)} files", volume.shape, volume.modality))


def load_document(paths: Sequence[str | Path], names: Sequence[str], limits: ReadLimits, max_bytes: int) -> Document:
    """Read uploaded files (one image or volume, or several files of one DICOM series) within the limits.

    ``names`` are the names the user's files had, used in messages only; errors name them, not server paths.
    """
    files = [Path(p) for p in paths]
    if not files:
        raise InputError("no file was uploaded", fix="upload an image, a DICOM file or zipped series, or a NIfTI volume")
    total = sum(p.stat().st_size for p in files)
    if total > max_bytes:
        raise InputError(f"the upload is {total / 2**20:.1f} MB, over this demo's limit of {max_bytes / 2**20:.0f} MB",
                         fix="upload a smaller file (crop or downsample it), or restart the demo with a larger "
                             "--max-upload-mb")
    shown = names[0] if len(names) == 1 else f"{len(names)} uploaded files"
    try:
        return _read_one(files[0], limits) if len(files) == 1 else _read_series(files, limits)
    except EdgeMedSAMError as err:
        fix = err.fix
        if fix == PICK_SERIES_FIX:  # the demo has no --series: one series per upload
            fix = "upload the files (or a zip) of one series at a time"
        elif fix and "EDGE_MEDSAM_MAX_" in fix:  # a size limit: the demo's own settings apply, not the variables
            fix = (f"crop or downsample it and upload it again (this demo takes up to {limits.max_side} pixels per "
                   f"side and {limits.max_voxels} voxels; restart it with a larger --max-side or "
                   "EDGE_MEDSAM_MAX_VOXELS for more)")
        raise type(err)(err.problem, path=shown, fix=fix) from err
