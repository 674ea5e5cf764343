"""`predict --prompts-from`: the 3D box prompts of an RTSTRUCT's ROIs or a DICOM-SEG's segments on the input volume."""

from __future__ import annotations

from pathlib import Path

from edge_medsam.errors import InputError
from edge_medsam.io.files import optional_module
from edge_medsam.runtime.interactor import SliceFrame
from edge_medsam.runtime.volume import VolumeSegmenter


def structure_prompts(path: Path, segmenter: VolumeSegmenter) -> tuple[list[list[float]], dict[int, str]]:
    """(display 3D boxes as ``VolumeSegmenter.segment`` takes them, {object label: ROI name}), one per non-empty ROI
    or segment in the file's order; the objects are labelled 1, 2, ... in that order."""
    structures = optional_module("dicom_structures")
    boxes = structures.structure_boxes(structures.read_dicom_structures(path, segmenter.volume))
    if not boxes:
        raise InputError("no ROI or segment of it has a voxel on this series", path=path,
                         fix="give the structure set or segmentation drawn on this series")
    frame = SliceFrame(segmenter.volume, segmenter.array_axis)
    return ([frame.box3d(box) for _, box in boxes],
            {label: name for label, (name, _) in enumerate(boxes, start=1)})
