"""Clinical contours as inputs: an RT Structure Set or a DICOM-SEG → one mask per ROI / segment on the grid of the
image series it references, with their names (ground truth for ``eval``, box prompts for ``predict``).

RTSTRUCT: CLOSED_PLANAR contours (patient mm, LPS) are mapped to voxel indices with the series' affine and filled
per slice (scikit-image's polygon: voxels whose centre lies inside; several contours of one ROI on a slice combine
even-odd, so an inner contour is a hole). The structure set must share the series' Frame of Reference and, where
it names them, its series and images. DICOM-SEG: read with highdicom against the series' SOP instances.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset
from skimage.draw import polygon

from edge_medsam.errors import InputError
from edge_medsam.io.dicom import LPS_TO_RAS, dicom_errors, read_dataset
from edge_medsam.io.dicom_seg import read_dicom_seg
from edge_medsam.io.files import PathLike, existing_file
from edge_medsam.io.types import Volume

_SLICE_TOLERANCE = 0.25  # voxels a contour may lie off a slice centre
_SERIES_FIX = "give the image series the structure set or segmentation was drawn on"


def _series_identity(volume: Volume, path: PathLike) -> tuple[str, str, set[str]]:
    """(FrameOfReferenceUID, SeriesInstanceUID, SOP instance UIDs) of the DICOM series a Volume was read from."""
    source = [ds for ds in volume.source if isinstance(ds, Dataset)]
    if not source:
        raise InputError(f"the image ({volume.path}) was not read from DICOM, so the contours cannot be matched "
                         "to it", path=path, fix="give the DICOM series the contours reference")
    first = source[0]
    return (str(first.get("FrameOfReferenceUID", "")), str(first.get("SeriesInstanceUID", "")),
            {str(ds.SOPInstanceUID) for ds in source if "SOPInstanceUID" in ds})


def _unique(names: Sequence[str]) -> list[str]:
    """Names made unique by a count suffix, so that two ROIs called "GTV" stay two structures."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def _check_references(ds: Dataset, volume: Volume, path: PathLike) -> None:
    frame_uid, series_uid, instances = _series_identity(volume, path)
    frames = {str(item.get("ReferencedFrameOfReferenceUID", "")) for item in ds.get("StructureSetROISequence") or []}
    frames |= {str(item.get("FrameOfReferenceUID", "")) for item in ds.get("ReferencedFrameOfReferenceSequence") or []}
    frames.discard("")
    if frames and frame_uid not in frames:
        raise InputError(f"the structure set's contours are in frame of reference {', '.join(sorted(frames))}, the "
                         f"series {series_uid or volume.path} in {frame_uid or 'none'}", path=path, fix=_SERIES_FIX)
    series = {str(s.SeriesInstanceUID) for f in ds.get("ReferencedFrameOfReferenceSequence") or []
              for study in f.get("RTReferencedStudySequence") or [] for s in study.get("RTReferencedSeriesSequence") or []
              if "SeriesInstanceUID" in s}
    if series and series_uid not in series:
        raise InputError(f"the structure set references series {', '.join(sorted(series))}, not {series_uid}",
                         path=path, fix=_SERIES_FIX)
    images = {str(image.ReferencedSOPInstanceUID) for roi in ds.get("ROIContourSequence") or []
              for contour in roi.get("ContourSequence") or [] for image in contour.get("ContourImageSequence") or []
              if "ReferencedSOPInstanceUID" in image}
    if images and not images & instances:
        raise InputError(f"the contours reference {len(images)} images, none of them in series {series_uid}",
                         path=path, fix=_SERIES_FIX)


def _voxel_points(contour: Dataset, world_to_voxel: np.ndarray) -> np.ndarray:
    lps = np.asarray([float(v) for v in contour.ContourData], np.float64).reshape(-1, 3)
    ras = np.c_[lps, np.ones(len(lps))] @ (world_to_voxel @ LPS_TO_RAS).T
    return ras[:, :3]


def _fill_contour(mask: np.ndarray, points: np.ndarray, name: str, path: PathLike) -> None:
    """XOR the polygon of one planar contour (voxel coordinates) into its slice of ``mask``."""
    k = float(np.median(points[:, 2]))
    index = round(k)
    if np.abs(points[:, 2] - index).max() > _SLICE_TOLERANCE:
        raise InputError(f"ROI {name!r} has a contour that does not lie on a slice of the series (k {k:.2f})",
                         path=path, fix="give contours drawn on the slices of this series (not on a reformat)")
    if not 0 <= index < mask.shape[2]:
        raise InputError(f"ROI {name!r} has a contour at slice {k:.2f}, outside the series' slices "
                         f"0..{mask.shape[2] - 1}", path=path, fix=_SERIES_FIX)
    rows, cols = polygon(points[:, 0], points[:, 1], shape=mask.shape[:2])
    mask[rows, cols, index] ^= True


def _rtstruct_masks(ds: Dataset, volume: Volume, path: PathLike) -> dict[str, np.ndarray]:
    _check_references(ds, volume, path)
    names = {int(item.ROINumber): str(item.get("ROIName", "") or f"ROI {item.ROINumber}")
             for item in ds.get("StructureSetROISequence") or []}
    world_to_voxel = np.linalg.inv(volume.affine)
    rois = list(ds.get("ROIContourSequence") or [])
    masks = []
    for roi in rois:
        number = int(roi.ReferencedROINumber)
        name = names.get(number, f"ROI {number}")
        mask = np.zeros(volume.shape, bool)
        for contour in roi.get("ContourSequence") or []:
            if str(contour.get("ContourGeometricType", "")).upper() == "CLOSED_PLANAR" and "ContourData" in contour:
                _fill_contour(mask, _voxel_points(contour, world_to_voxel), name, path)
        masks.append((name, mask))
    return dict(zip(_unique([n for n, _ in masks]), (m for _, m in masks), strict=True))


def read_dicom_structures(path: PathLike, volume: Volume) -> dict[str, np.ndarray]:
    """The ROIs of an RTSTRUCT or the segments of a DICOM-SEG as boolean masks on ``volume``'s (i, j, k) grid,
    keyed by ROI / segment name, in the file's order (ROIs without closed contours give empty masks)."""
    p = existing_file(path)
    ds = read_dataset(p)
    modality = str(ds.get("Modality", "")).upper()
    if modality == "SEG":
        labels, names = read_dicom_seg(p, volume)
        numbers = sorted(names)
        return dict(zip(_unique([names[n] for n in numbers]), (labels == n for n in numbers), strict=True))
    if modality != "RTSTRUCT":
        raise InputError(f"is not an RT Structure Set or DICOM Segmentation (Modality {modality or 'missing'})",
                         path=p, fix="give the RTSTRUCT or DICOM-SEG file drawn on this series")
    with dicom_errors(p):
        return _rtstruct_masks(ds, volume, p)


def structure_labels(structures: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[int, str]]:
    """One label volume (labels 1..N in the structures' order) and the names; where structures overlap, the
    smaller one is kept, so that an organ inside a body contour stays visible."""
    items = list(structures.items())
    if not items:
        raise InputError("the file holds no ROI or segment", fix="give a structure set with contours")
    labels = np.zeros(items[0][1].shape, np.uint16)
    for label in sorted(range(len(items)), key=lambda i: -int(np.count_nonzero(items[i][1]))):
        labels[items[label][1]] = label + 1
    return labels, {i + 1: name for i, (name, _) in enumerate(items)}


def structure_boxes(structures: dict[str, np.ndarray]) -> list[tuple[str, tuple[int, int, int, int, int, int]]]:
    """(name, inclusive voxel box (i0, j0, k0, i1, j1, k1)) of every non-empty structure, in order."""
    boxes = []
    for name, mask in structures.items():
        found = np.nonzero(mask)
        if found[0].size:
            low, high = [int(a.min()) for a in found], [int(a.max()) for a in found]
            boxes.append((name, (*low, *high)))
    return boxes
