"""Write a Volume as a valid CT or MR DICOM series (int16 + rescale, geometry from the affine)."""

from __future__ import annotations

import copy
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from edge_medsam import __version__
from edge_medsam.errors import InputError
from edge_medsam.io.dicom import LPS_TO_RAS
from edge_medsam.io.files import PathLike, atomic_write, check_finite
from edge_medsam.io.types import Volume

_SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage}
_INT16 = np.iinfo(np.int16)


def _ds_number(value: float) -> str:
    """A DICOM decimal string (at most 16 characters) as exact as that allows."""
    for digits in range(10, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise ValueError(value)  # unreachable: one significant digit always fits


def _encoding(values: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) that store ``values`` in int16: exact for whole numbers spanning up to 65535."""
    lo, hi = float(values.min()), float(values.max())
    whole = values.dtype.kind in "iub" or bool((values == np.round(values)).all())
    if whole and lo >= _INT16.min and hi <= _INT16.max:
        return 1.0, 0.0
    if whole and hi - lo <= _INT16.max - _INT16.min:
        return 1.0, lo - _INT16.min
    slope = (hi - lo) / (_INT16.max - _INT16.min) if hi > lo else 1.0
    return slope, lo - _INT16.min * slope


def _plane_geometry(volume: Volume, folder: PathLike) -> tuple[np.ndarray, np.ndarray, tuple[float, float],
                                                                np.ndarray, np.ndarray]:
    """(row cosines, column cosines, (row, column) spacing, slice step, origin) in LPS from the RAS affine."""
    lps = LPS_TO_RAS @ np.asarray(volume.affine, dtype=np.float64)
    di, dj = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    if not np.isfinite(lps).all() or di == 0 or dj == 0 or np.linalg.norm(lps[:3, 2]) == 0:
        raise InputError("the volume's affine is not finite or has a zero-length axis", path=folder,
                         fix="give a Volume with a valid voxel-to-RAS affine")
    row, col = lps[:3, 0] / di, lps[:3, 1] / dj
    if abs(row @ col) > 1e-4:
        raise InputError("the volume's in-plane axes are not perpendicular (sheared affine); DICOM cannot store it",
                         path=folder, fix="resample the volume to an orthogonal grid first, or write NIfTI")
    return row, col, (float(dj), float(di)), lps[:3, 2], lps[:3, 3]


def _series_dataset(modality: str, volume: Volume, description: str) -> Dataset:
    """Everything the slices share: patient, study, series, frame of reference, equipment, pixel format."""
    now = datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = _SOP_CLASSES[modality]
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Anonymous^", "EDGE-MEDSAM", "", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "1", ""
    ds.Modality, ds.SeriesNumber, ds.SeriesDescription = modality, 1, description
    ds.PatientPosition, ds.PositionReferenceIndicator = "HFS", ""
    ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions = "edge-medsam", "edge-medsam", __version__
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.AcquisitionNumber = 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    if modality == "CT":
        ds.KVP, ds.RescaleType = "", "HU"
    else:
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "RM", "NONE", "", "3D"
        ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = "", "", ""
    if volume.window is not None:
        ds.WindowCenter, ds.WindowWidth = _ds_number(volume.window[0]), _ds_number(volume.window[1])
    return ds


def write_dicom_series(folder: PathLike, volume: Volume, modality: str = "CT", *,
                       series_description: str = "edge-medsam") -> list[Path]:
    """Write ``volume`` as one DICOM file per k-slice (IM00001.dcm, ...) in ``folder``; return the paths in k order.

    Values are stored as int16 with one rescale slope/intercept for the series (exact for whole numbers such
    as Hounsfield units); ImagePositionPatient/Orientation, PixelSpacing and SliceThickness come from the affine.
    """
    code = modality.strip().upper()
    if code not in _SOP_CLASSES:
        raise InputError(f"cannot write DICOM modality {modality!r}", path=folder, fix="use CT or MR")
    voxels = np.asarray(volume.voxels)
    if voxels.ndim != 3 or voxels.dtype.kind not in "uifb" or min(voxels.shape) < 1:
        raise InputError(f"volume of shape {voxels.shape} and type {voxels.dtype} is not a grey 3D volume",
                         path=folder, fix="give a (i, j, k) numeric volume")
    check_finite(voxels, folder, "volume")
    row, col, spacing, step, origin = _plane_geometry(volume, folder)
    normal = np.cross(row, col)
    # Encode with the values as the files will state them, so decoding gives back exactly what was encoded.
    slope, intercept = (float(_ds_number(v)) for v in _encoding(voxels))
    shared = _series_dataset(code, volume, series_description)
    shared.ImageOrientationPatient = [_ds_number(v) for v in (*row, *col)]
    shared.PixelSpacing = [_ds_number(v) for v in spacing]
    shared.SliceThickness = shared.SpacingBetweenSlices = _ds_number(float(np.linalg.norm(step)))
    shared.RescaleSlope, shared.RescaleIntercept = _ds_number(slope), _ds_number(intercept)
    shared.Rows, shared.Columns = voxels.shape[1], voxels.shape[0]
    paths = []
    for k in range(voxels.shape[2]):
        stored = np.round((voxels[:, :, k].T.astype(np.float64) - intercept) / slope)
        ds = copy.deepcopy(shared)
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        position = origin + k * step
        ds.ImagePositionPatient = [_ds_number(v) for v in position]
        ds.SliceLocation = _ds_number(float(position @ normal))
        ds.PixelData = np.clip(stored, _INT16.min, _INT16.max).astype("<i2").tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID

        def save(tmp: Path, ds: Dataset = ds) -> None:
            ds.save_as(tmp, enforce_file_format=True)

        paths.append(atomic_write(Path(folder) / f"IM{k + 1:05d}.dcm", save))
    return paths
