"""Write a label map the way the input calls for: PNG (2D), NIfTI with the source affine, DICOM-SEG referencing
the source series or image, or a MedSAM-on-Laptop .npz (``segs``) with the input's name.

A DICOM-SEG that the source cannot have (no Frame of Reference on a multi-frame image, an IOD that needs one)
is written as NIfTI (volumes) or PNG (2D) instead, with the reason: a finished segmentation is never lost."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_medsam.errors import InputError
from edge_medsam.io import write_dicom_seg, write_laptop_npz, write_mask_png, write_nifti_labels
from edge_medsam.runtime.inputs import LoadedInput

OUTPUT_FORMATS = ("auto", "png", "nifti", "dicom-seg", "npz")
_SUFFIX = {"png": "_seg.png", "nifti": "_seg.nii.gz", "dicom-seg": "_seg.dcm"}
_NAMES = {"png": "PNG", "nifti": "NIfTI"}


def output_format(requested: str, loaded: LoadedInput) -> str:
    """The format to write: the requested one, or for "auto": npz for challenge cases, PNG for 2D images,
    DICOM-SEG for DICOM volumes and NIfTI for other volumes."""
    if requested not in OUTPUT_FORMATS:
        raise InputError(f"unknown output format {requested!r}", fix=f"use one of {', '.join(OUTPUT_FORMATS)}")
    if requested != "auto":
        if loaded.is_3d and requested == "png":
            raise InputError("a volume cannot be written as one PNG", path=loaded.path,
                             fix="use --format nifti, dicom-seg or npz for volumes")
        if not loaded.is_3d and requested == "nifti":
            raise InputError("a 2D image is written as PNG, npz or (from DICOM) DICOM-SEG, not nifti",
                             path=loaded.path, fix="use --format png, npz or dicom-seg for 2D images")
        if requested == "dicom-seg" and not loaded.from_dicom:
            raise InputError("a DICOM-SEG references DICOM images, and this input is not DICOM", path=loaded.path,
                             fix="use --format nifti or npz for volumes, png or npz for 2D images")
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
        return write_dicom_seg(path, labels, loaded.volume if loaded.is_3d else loaded.image, names)
    # The challenge's layout: (D, H, W) for volumes (Volume voxels are (i, j, k) = (W, H, D)).
    segs = labels.transpose(2, 1, 0) if loaded.is_3d else labels
    return write_laptop_npz(path, segs, loaded.case)


def write_output(out_dir: Path, labels: np.ndarray, loaded: LoadedInput, fmt: str, names: dict[int, str],
                 taken: set[Path]) -> tuple[Path, str, str | None]:
    """Write ``labels`` in ``fmt`` into ``out_dir``: (path, format written, why it is not ``fmt`` or None)."""
    try:
        return write_labels(output_path(out_dir, loaded, fmt, taken), labels, loaded, fmt, names), fmt, None
    except InputError as err:
        if fmt != "dicom-seg":
            raise
        instead = "nifti" if loaded.is_3d else "png"
        written = write_labels(output_path(out_dir, loaded, instead, taken), labels, loaded, instead, names)
        return written, instead, f"{err.problem}; wrote the mask as {_NAMES[instead]} instead ({written})"
