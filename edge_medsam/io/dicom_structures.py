"""Clinical contours as inputs: an RT Structure Set or a DICOM-SEG → one mask per ROI / segment on the grid of the
image series it references, with their names (ground truth for ``eval``, box prompts for ``predict``).

RTSTRUCT: CLOSED_PLANAR contours (patient mm, LPS) are mapped to voxel indices with the series' affine and filled
per slice (scikit-image's polygon: voxels whose centre lies inside; several contours of one ROI on a slice combine
even-odd, so an inner contour is a hole). The structure set must share the series' Frame of Reference and, where
it names them, its series and images. DICOM-SEG: read with highdicom against the series' SOP instances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from skimage.draw import polygon

from edge_medsam.errors import InputError
from edge_medsam.io.dicom import LPS_TO_RAS, dicom_errors, read_dataset
from edge_medsam.io.dicom_seg import read_dicom_seg
from edge_medsam.io.files import PathLike, existing_file
from edge_medsam.io.types import Volume

Box = tuple[int, int, int, int, int, int]  # inclusive voxel box (i0, j0, k0, i1, j1, k1)
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


@dataclass(frozen=True)
class Structure:
    """One ROI or segment: its name and its mask on the series' grid, kept as the crop to its box (a structure set
    of many organs on a large CT then takes the memory of the organs, not of one volume per ROI)."""

    name: str
    shape: tuple[int, int, int]
    box: Box | None  # None: no voxel
    crop: np.ndarray  # the mask within ``box``

    @classmethod
    def from_mask(cls, name: str, mask: np.ndarray, shape: tuple[int, int, int],
                  offset: tuple[int, int, int] = (0, 0, 0)) -> Structure:
        """The structure of a boolean ``mask`` placed at ``offset`` in a volume of ``shape``, cropped to its box."""
        found = np.nonzero(mask)
        if not found[0].size:
            return cls(name, shape, None, np.zeros((0, 0, 0), bool))
        low = [int(a.min()) for a in found]
        high = [int(a.max()) for a in found]
        crop = np.ascontiguousarray(mask[tuple(slice(lo, hi + 1) for lo, hi in zip(low, high, strict=True))])
        box = (*(lo + o for lo, o in zip(low, offset, strict=True)), *(hi + o for hi, o in zip(high, offset, strict=True)))
        return cls(name, shape, box, crop)  # type: ignore[arg-type]

    @property
    def region(self) -> tuple[slice, slice, slice]:
        """The box as array slices (empty for an empty structure)."""
        if self.box is None:
            return slice(0, 0), slice(0, 0), slice(0, 0)
        return tuple(slice(lo, hi + 1) for lo, hi in zip(self.box[:3], self.box[3:], strict=True))  # type: ignore[return-value]

    def mask(self) -> np.ndarray:
        """The full boolean mask on the series' (i, j, k) grid."""
        full = np.zeros(self.shape, bool)
        full[self.region] = self.crop
        return full

    @property
    def voxels(self) -> int:
        return int(np.count_nonzero(self.crop))


def _voxel_points(contour: Dataset, world_to_voxel: np.ndarray) -> np.ndarray:
    lps = np.asarray([float(v) for v in contour.ContourData], np.float64).reshape(-1, 3)
    ras = np.c_[lps, np.ones(len(lps))] @ (world_to_voxel @ LPS_TO_RAS).T
    return ras[:, :3]


def _slice_of(points: np.ndarray, slices: int, name: str, path: PathLike) -> int:
    """The slice a planar contour (voxel coordinates) lies on."""
    k = float(np.median(points[:, 2]))
    index = round(k)
    if np.abs(points[:, 2] - index).max() > _SLICE_TOLERANCE:
        raise InputError(f"ROI {name!r} has a contour that does not lie on a slice of the series (k {k:.2f})",
                         path=path, fix="give contours drawn on the slices of this series (not on a reformat)")
    if not 0 <= index < slices:
        raise InputError(f"ROI {name!r} has a contour at slice {k:.2f}, outside the series' slices "
                         f"0..{slices - 1}", path=path, fix=_SERIES_FIX)
    return index


def _filled(name: str, polygons: list[tuple[int, np.ndarray]], shape: tuple[int, int, int]) -> Structure:
    """The contours of one ROI filled slice by slice (even-odd), in a crop around their points."""
    if not polygons:
        return Structure.from_mask(name, np.zeros((0, 0, 0), bool), shape)
    points = np.concatenate([p for _, p in polygons])
    low = [max(0, int(np.floor(points[:, a].min()))) for a in (0, 1)]
    high = [min(shape[a] - 1, int(np.ceil(points[:, a].max()))) for a in (0, 1)]
    slices = [k for k, _ in polygons]
    k0 = min(slices)
    crop = np.zeros((max(high[0] - low[0] + 1, 0), max(high[1] - low[1] + 1, 0), max(slices) - k0 + 1), bool)
    for k, p in polygons:
        rows, cols = polygon(p[:, 0] - low[0], p[:, 1] - low[1], shape=crop.shape[:2])
        crop[rows, cols, k - k0] ^= True
    return Structure.from_mask(name, crop, shape, (low[0], low[1], k0))


def _rtstruct(ds: Dataset, volume: Volume, path: PathLike) -> list[Structure]:
    _check_references(ds, volume, path)
    names = {int(item.ROINumber): str(item.get("ROIName", "") or f"ROI {item.ROINumber}")
             for item in ds.get("StructureSetROISequence") or []}
    world_to_voxel = np.linalg.inv(volume.affine)
    rois = [(names.get(int(roi.ReferencedROINumber), f"ROI {roi.ReferencedROINumber}"), roi)
            for roi in ds.get("ROIContourSequence") or []]
    structures = []
    for name, (_, roi) in zip(_unique([n for n, _ in rois]), rois, strict=True):
        polygons = []
        for contour in roi.get("ContourSequence") or []:
            if str(contour.get("ContourGeometricType", "")).upper() == "CLOSED_PLANAR" and "ContourData" in contour:
                points = _voxel_points(contour, world_to_voxel)
                polygons.append((_slice_of(points, volume.shape[2], name, path), points))
        structures.append(_filled(name, polygons, volume.shape))
    return structures


def read_dicom_structures(path: PathLike, volume: Volume) -> list[Structure]:
    """The ROIs of an RTSTRUCT or the segments of a DICOM-SEG on ``volume``'s (i, j, k) grid, in the file's order,
    with unique names (ROIs without closed contours are empty structures)."""
    p = existing_file(path)
    ds = read_dataset(p)
    modality = str(ds.get("Modality", "")).upper()
    if modality == "SEG":
        labels, names = read_dicom_seg(p, volume)
        numbers = sorted(names)
        return [Structure.from_mask(name, labels == n, volume.shape)
                for name, n in zip(_unique([names[n] for n in numbers]), numbers, strict=True)]
    if modality != "RTSTRUCT":
        raise InputError(f"is not an RT Structure Set or DICOM Segmentation (Modality {modality or 'missing'})",
                         path=p, fix="give the RTSTRUCT or DICOM-SEG file drawn on this series")
    with dicom_errors(p):
        return _rtstruct(ds, volume, p)


def structure_labels(structures: Sequence[Structure]) -> tuple[np.ndarray, dict[int, str]]:
    """One label volume (labels 1..N in the structures' order) and the names; where structures overlap, the
    smaller one is kept, so that an organ inside a body contour stays visible."""
    if not structures:
        raise InputError("the file holds no ROI or segment", fix="give a structure set with contours")
    labels = np.zeros(structures[0].shape, np.uint16)
    for index in sorted(range(len(structures)), key=lambda i: -structures[i].voxels):
        item = structures[index]
        labels[item.region][item.crop] = index + 1
    return labels, {i + 1: item.name for i, item in enumerate(structures)}


def structure_boxes(structures: Sequence[Structure]) -> list[tuple[str, Box]]:
    """(name, inclusive voxel box) of every non-empty structure, in order."""
    return [(item.name, item.box) for item in structures if item.box is not None]
