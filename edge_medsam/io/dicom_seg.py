"""DICOM-SEG (highdicom): write labels as a Segmentation that references the source series or image, and read it back.

BINARY segmentations are written: every DICOM viewer and PACS that shows SEG reads them (LABELMAP, new in
2024, is not yet widely supported). One segment per label value, AUTOMATIC, algorithm "edge-medsam".
A source without a Frame of Reference (secondary capture, some ultrasound) is referenced by SOP instance only;
highdicom writes that for single-frame sources.
"""

from __future__ import annotations

import copy
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from edge_medsam import __version__
from edge_medsam.errors import InputError
from edge_medsam.io.dicom import dicom_errors, read_dataset
from edge_medsam.io.files import PathLike, atomic_write, existing_file
from edge_medsam.io.masks import label_array
from edge_medsam.io.types import Image2D, Volume

_SEG_SERIES_NUMBER = 1000  # derived series sort after the acquired ones in viewers
# Type 2 attributes (present, may be empty) that highdicom copies from the source; anonymisers often delete them.
_TYPE2 = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate",
          "StudyTime", "ReferringPhysicianName")
_SOURCE_FIX = ("give the images as the scanner exported them (study, series and frame-of-reference UIDs present), "
               "or write NIfTI / PNG")


def _complete(ds: Dataset) -> Dataset:
    """``ds`` with missing type 2 attributes added empty, on a copy so that the caller's volume is untouched."""
    missing = [k for k in _TYPE2 if k not in ds]
    if not missing:
        return ds
    ds = copy.deepcopy(ds)
    for keyword in missing:
        setattr(ds, keyword, "")
    return ds


def _source_datasets(reference: Volume | Image2D, path: PathLike) -> list[Dataset]:
    source = reference.source
    if not source or not all(isinstance(ds, Dataset) and "SOPInstanceUID" in ds for ds in source):
        raise InputError(f"the reference was not read from DICOM (it came from {reference.path}), so a "
                         "DICOM-SEG has no images to reference", path=path,
                         fix="read the DICOM series or image with read_volume / read_image and give that, or write "
                             "NIfTI (write_nifti_labels) or PNG (write_mask_png) instead")
    return list(source)


def _frames(labels: np.ndarray, reference: Volume | Image2D, source: list[Dataset]) -> np.ndarray:
    """Labels (i, j, k), or an image's (rows, cols) → frames (frame, rows, cols) in the order of the source."""
    if isinstance(reference, Image2D):
        return labels[None]
    by_slice = labels.transpose(2, 1, 0)
    if len(source) > 1:
        return by_slice  # single-frame images, already sorted into k order
    order = reference.meta.get("frame_order", list(range(labels.shape[2])))
    frames = np.empty_like(by_slice)
    frames[np.asarray(order)] = by_slice
    return frames


def _descriptions(labels: np.ndarray, segment_names: dict[int, str], path: PathLike,
                  algorithm: hd.AlgorithmIdentificationSequence | None) -> list[hd.seg.SegmentDescription]:
    bad = [k for k in segment_names if not isinstance(k, (int, np.integer)) or k < 1 or k > 0xFFFF]
    if bad:
        raise InputError(f"segment numbers {bad} are not labels 1..65535", path=path,
                         fix="key segment_names by the label values of the objects")
    highest = max(int(labels.max()), *segment_names, 1)
    algorithm = algorithm or hd.AlgorithmIdentificationSequence(name="edge-medsam", version=__version__,
                                                                family=codes.cid7162.ArtificialIntelligence)
    return [hd.seg.SegmentDescription(
        segment_number=n, segment_label=str(segment_names.get(n, f"segment {n}"))[:64] or f"segment {n}",
        segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm)
        for n in range(1, highest + 1)]


def _segmentation(source: list[Dataset], frames: np.ndarray, descriptions: list[hd.seg.SegmentDescription], *,
                  omit_empty: bool, uids: tuple[str, str] | None) -> hd.seg.Segmentation:
    series_uid, instance_uid = uids or (hd.UID(), hd.UID())
    return hd.seg.Segmentation(
        source_images=source, pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=series_uid,
        series_number=_SEG_SERIES_NUMBER, sop_instance_uid=instance_uid, instance_number=1,
        manufacturer="edge-medsam", manufacturer_model_name="edge-medsam", software_versions=__version__,
        device_serial_number="0", series_description="edge-medsam segmentation",
        omit_empty_frames=omit_empty,  # a SEG needs at least one frame, even when nothing was found
    )


def write_dicom_seg(path: PathLike, labels: np.ndarray, reference: Volume | Image2D, segment_names: dict[int, str],
                    *, algorithm: hd.AlgorithmIdentificationSequence | None = None,
                    uids: tuple[str, str] | None = None) -> Path:
    """Write a label map on ``reference`` (a Volume's (i, j, k) grid or an Image2D's (rows, cols), read from DICOM)
    as a DICOM-SEG file, atomically.

    Labels without a name are called "segment N"; every SOP instance of the source series is referenced.
    ``algorithm`` replaces the default identification (edge-medsam and its version); ``uids`` (series, SOP
    instance) makes the SEG's identity reproducible, so that storing it twice replaces rather than duplicates.
    """
    source = _source_datasets(reference, path)
    arr = label_array(labels, path, max_label=0xFFFF)
    if arr.shape != reference.shape:
        raise InputError(f"labels of shape {arr.shape} do not match the reference volume {reference.shape}",
                         path=path, fix="give one label per pixel of the image or volume they were predicted on")
    descriptions = _descriptions(arr, segment_names, path, algorithm)
    try:
        seg = _segmentation([_complete(ds) for ds in source], _frames(arr, reference, source), descriptions,
                            omit_empty=bool(arr.any()), uids=uids)
    except (AttributeError, ValueError, TypeError, KeyError) as err:  # what highdicom raises for incomplete sources
        raise InputError(f"the source DICOM cannot be referenced by a DICOM-SEG ({err})", path=path,
                         fix=_SOURCE_FIX) from err

    def save(tmp: Path) -> None:
        seg.save_as(tmp)

    return atomic_write(path, save)


def read_dicom_seg(path: PathLike, reference: Volume | Image2D) -> tuple[np.ndarray, dict[int, str]]:
    """Read a DICOM-SEG as labels on the grid of ``reference`` (the series or image it segments) and the names."""
    p = existing_file(path)
    source = _source_datasets(reference, p)
    ds = read_dataset(p)
    if str(ds.get("Modality", "")).upper() != "SEG":
        raise InputError(f"is not a DICOM Segmentation (Modality {ds.get('Modality', 'missing')})", path=p,
                         fix="give the DICOM-SEG file written for this series")
    with dicom_errors(p):
        seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
        names = {int(item.SegmentNumber): str(item.SegmentLabel) for item in seg.SegmentSequence}
    try:
        if isinstance(reference, Image2D):
            image = seg.get_pixels_by_source_instance([str(source[0].SOPInstanceUID)], combine_segments=True)
            return np.ascontiguousarray(image[0]), names
        if len(source) > 1:
            frames = seg.get_pixels_by_source_instance([str(image.SOPInstanceUID) for image in source],
                                                       combine_segments=True)
        else:
            order = reference.meta.get("frame_order", list(range(reference.shape[2])))
            # Frames after the last segmented one are omitted empty frames (omit_empty_frames), not missing data.
            frames = seg.get_pixels_by_source_frame(str(source[0].SOPInstanceUID), [i + 1 for i in order],
                                                    combine_segments=True, assert_missing_frames_are_empty=True)
    except (KeyError, ValueError, RuntimeError) as err:
        raise InputError(f"the DICOM-SEG does not fit the reference series ({err})", path=p,
                         fix="give the series the segmentation was made for") from err
    return np.ascontiguousarray(frames.transpose(2, 1, 0)), names
