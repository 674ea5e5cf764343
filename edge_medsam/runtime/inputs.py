"""What `predict` accepts: image files, folders of them, DICOM series folders or zips, DICOMDIR media, NIfTI, NRRD,
MedSAM .npz cases.

Each input is loaded as a 2D image or a 3D volume (files decide by content, not name); a MedSAM-on-Laptop case
keeps its boxes. A folder holding DICOM files (or a DICOMDIR) is one series; any other folder stands for the files
and DICOM series folders directly inside it, unless a series is picked: then every folder is searched whole for it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from edge_medsam.errors import InputError
from edge_medsam.io import Image2D, LaptopCase, Volume, read_image, read_laptop_npz, read_volume, slice_volume
from edge_medsam.io.files import is_npz, optional_module
from edge_medsam.io.gzipped import sniff
from edge_medsam.io.types import ReadLimits


@dataclass
class LoadedInput:
    """One input: a 2D ``image`` or a 3D ``volume``, with the challenge ``case`` for .npz files."""

    path: Path
    image: Image2D | None = None
    volume: Volume | None = None
    case: LaptopCase | None = None

    @property
    def is_3d(self) -> bool:
        """True for a volume."""
        return self.volume is not None

    @property
    def from_dicom(self) -> bool:
        """True when the volume or image was read from DICOM with its headers (so a DICOM-SEG can reference it)."""
        item = self.volume if self.volume is not None else self.image
        return item is not None and item.meta.get("format") == "dicom" and bool(item.source)

    @property
    def stem(self) -> str:
        """The input's name without its extensions (.nii.gz counts as one)."""
        name = self.path.name
        for suffix in (".nii.gz", ".nii", ".dcm.gz", ".nrrd", ".nhdr", ".npz", ".zip", ".dcm", ".png", ".jpg", ".jpeg",
                       ".tif", ".tiff", ".bmp"):
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                return name[: -len(suffix)]
        return Path(name).stem or name


def _holds_dicom(folder: Path) -> bool:
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and not entry.name.startswith("."):
            try:
                if sniff(entry) == "dicom":
                    return True
            except OSError:
                continue
    return False


def discover_inputs(paths: list[str | os.PathLike[str]], series: str | None = None) -> list[Path]:
    """Expand folders of images into their files; keep DICOM series folders (every folder when a ``series`` is
    picked) and everything else as given."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and series is None and not _holds_dicom(path):
            entries = [p for p in sorted(path.iterdir()) if not p.name.startswith(".")]
            inside = [p for p in entries if p.is_file() or (p.is_dir() and _holds_dicom(p))]
            found += inside or [path]  # a folder with nothing to read stays, so the batch reports it
        else:
            found.append(path)  # missing files stay, so the batch reports them
    return found


def _nifti(path: Path, limits: ReadLimits | None) -> LoadedInput:
    volume = read_volume(path, limits)
    singleton = [axis for axis in (2, 1, 0) if volume.shape[axis] == 1]
    if singleton:
        return LoadedInput(path, image=slice_volume(volume, singleton[0], 0))
    return LoadedInput(path, volume=volume)


def _dicom_file(path: Path, limits: ReadLimits | None) -> LoadedInput:
    dicom = optional_module("dicom")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the header's remarks come again from the read below
        frames = dicom.number_of_frames(dicom.read_dataset(path))
    if frames > 1:
        return LoadedInput(path, volume=read_volume(path, limits))
    return LoadedInput(path, image=read_image(path, limits))


def load_input(path: str | os.PathLike[str], limits: ReadLimits | None = None, *, series: str | None = None
               ) -> LoadedInput:
    """Read one input as a 2D image or a 3D volume (InputError naming the file otherwise).

    ``series`` (a SeriesInstanceUID or SeriesNumber) picks one where a folder, zip or DICOMDIR holds several.
    """
    p = Path(path)
    if p.is_dir() or (p.is_file() and p.name.upper() == "DICOMDIR"):
        if series is None and p.is_dir() and not _holds_dicom(p):
            raise InputError("is a folder without image files or DICOM series", path=p,
                             fix="give image files, a DICOM series folder or a folder of images")
        return LoadedInput(p, volume=read_volume(p, limits, series=series))
    if not p.exists():
        raise InputError("does not exist", path=p, fix="check the path")
    kind = sniff(p) if p.is_file() and p.stat().st_size else None
    if kind == "zip" and is_npz(p):
        case = read_laptop_npz(p, limits)
        return LoadedInput(p, volume=case.to_volume(), case=case) if case.is_3d else LoadedInput(
            p, image=case.to_image(), case=case)
    if kind == "zip":
        return LoadedInput(p, volume=read_volume(p, limits, series=series))
    if kind in ("nifti", "nrrd"):
        return _nifti(p, limits)
    if kind == "dicom":
        return _dicom_file(p, limits)
    return LoadedInput(p, image=read_image(p, limits))
