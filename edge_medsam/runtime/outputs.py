"""Write a label map the way the input calls for: PNG (2D), NIfTI with the source affine, DICOM-SEG referencing
the source series, or a MedSAM-on-Laptop .npz (``segs``) with the input's name."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_medsam.errors import InputError
from edge_medsam.io import write_dicom_seg, write_laptop_npz, write_mask_png, write_nifti_labels
from edge_medsam.runtime.inputs import LoadedInput

OUTPUT_FORMATS = ("auto", "png", "nifti", "dicom-seg", "npz")
_SUFFIX = {"png": "_seg.png", "nifti": "_seg.nii.gz", "dicom-seg": "_seg.dcm"}


def output_format(requested: str, loaded: LoadedInput) -> str:
    """The format to write: the requested one, or for "auto": npz for challenge cases, PNG for 2D images,
    DICOM-SEG for DICOM volumes and NIfTI for other volumes."""
    if requested not in OUTPUT_FORMATS:
        raise InputError(f"unknown output format {requested!r}", fix=f"use one of {', '.join(OUTPUT_FORMATS)}")
    if requested != "auto":
        if loaded.is_3d and requested == "png":
            raise InputError("a volume cannot be written as one PNG", path=loaded.path,
                             fix="use --format nifti, dicom-seg or npz for volumes")
        if not loaded.is_3d and requested in ("nifti", "dicom-seg"):
            raise InputError(f"a 2D image is written as PNG or npz, not {requested}", path=loaded.path,
                             fix="use --format png or npz for 2D images")
        return requested
    if loaded.case is not None:
        return "npz"
    if not loaded.is_3d:
        return "png"
    return "dicom-seg" if loaded.from_dicom else "nifti"


def output_path(out_dir: Path, loaded: LoadedInput, fmt: str, taken: set[Path]) -> Path:
    """``<stem>_seg.<ext>`` (challenge .npz: the input's own name) in ``out_dir``, unique within a batch and
    never the input file itself."""
    name = f"{loaded.stem}.npz" if fmt == "npz" else f"{loaded.stem}{_SUFFIX[fmt]}"
    path, serial = out_dir / name, 1
    while path in taken or path.resolve() == loaded.path.resolve():
        serial += 1
        path = out_dir / name.replace(loaded.stem, f"{loaded.stem}-{serial}", 1)
    taken.add(path)
    return path


def write_labels(path: Path, labels: np.ndarray, loaded: LoadedInput, fmt: str, names: dict[int, str]) -> Path:
    """Write ``labels`` (the image's (H, W), or the volume's (i, j, k) grid) to ``path`` in ``fmt``."""
    if fmt == "png":
        return write_mask_png(path, labels)
    if fmt == "nifti":
        assert loaded.volume is not None
        return write_nifti_labels(path, labels, loaded.volume)
    if fmt == "dicom-seg":
        assert loaded.volume is not None
        return write_dicom_seg(path, labels, loaded.volume, names)
    # The challenge's layout: (D, H, W) for volumes (Volume voxels are (i, j, k) = (W, H, D)).
    segs = labels.transpose(2, 1, 0) if loaded.is_3d else labels
    return write_laptop_npz(path, segs, loaded.case)
