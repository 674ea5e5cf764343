"""Cases for the interactive 3D protocol: challenge .npz files, or any volume the project reads with a label volume.

Box prompts (``boxes``): "case" takes the boxes a challenge case holds (none for other volumes: no box step),
"from-gt" takes them where the case has none from the ground truth as the challenge's ``get_boxes.py`` draws them
(the z range and the 2D box of the middle labelled slice, without its random enlargement), "none" drops them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_medsam.errors import InputError
from edge_medsam.evaluation.interactive3d import Interactive3DCase
from edge_medsam.io import read_volume
from edge_medsam.io.challenge_npz import ChallengeBox, read_challenge_gts, read_challenge_npz
from edge_medsam.io.files import PathLike, existing_file, is_npz, optional_module, sniff_format
from edge_medsam.io.masks import label_array
from edge_medsam.io.types import Volume

BOX_SOURCES = ("case", "from-gt", "none")


def gt_boxes(truth: np.ndarray) -> dict[int, tuple[int, int, int, int, int, int]]:
    """The challenge's box of every object of an (i, j, k) label volume, as voxel boxes."""
    zyx = truth.transpose(2, 1, 0)
    return {int(label): ChallengeBox.from_mask(zyx == label).voxel_box() for label in np.unique(truth) if label}


def _label_volume(path: Path, volume: Volume) -> np.ndarray:
    """Labels on the volume's grid from a NIfTI / NRRD / RTSTRUCT / DICOM-SEG file or a ground-truth .npz (key gts)."""
    p = existing_file(path)
    if sniff_format(p) == "zip" and is_npz(p):
        labels = np.ascontiguousarray(read_challenge_gts(p, volume.shape[::-1]).transpose(2, 1, 0))
    elif sniff_format(p) == "dicom":
        structures = optional_module("dicom_structures")  # an RTSTRUCT or a DICOM-SEG drawn on the series
        labels, _ = structures.structure_labels(structures.read_dicom_structures(p, volume))
    else:
        read = read_volume(p)
        if read.shape != volume.shape or not np.allclose(read.affine, volume.affine, atol=1e-3):
            raise InputError(f"the labels ({read.shape}) are not on the grid of the volume ({volume.shape})",
                             path=p, fix="give the label volume drawn on this image")
        labels = read.voxels
    if labels.shape != volume.shape:
        raise InputError(f"the labels have shape {labels.shape}, the volume {volume.shape}", path=p,
                         fix="give the label volume drawn on this image")
    return label_array(labels, p, max_label=0xFFFF)


def _checked_boxes(source: str) -> str:
    if source not in BOX_SOURCES:
        raise InputError(f"unknown box source {source!r}", fix=f"use one of {', '.join(BOX_SOURCES)}")
    return source


def load_case(path: PathLike, labels: PathLike | None = None, boxes: str = "case",
              name: str | None = None, modality: str | None = None) -> Interactive3DCase:
    """A protocol case from a challenge .npz (its gts, or ``labels``: the challenge's separate gts file) or from
    any volume with a label volume ``labels``."""
    source = _checked_boxes(boxes)
    p = Path(path)
    case_boxes: dict[int, tuple[int, int, int, int, int, int]] | None = None
    if p.is_file() and sniff_format(p) == "zip" and is_npz(p):
        challenge = read_challenge_npz(p)
        volume = challenge.volume()
        if labels is not None:
            truth = np.ascontiguousarray(read_challenge_gts(labels, challenge.imgs.shape).transpose(2, 1, 0))
        elif challenge.gts is not None:
            truth = challenge.truth()
        else:
            raise InputError("the case holds no gts and no ground truth is given", path=p,
                             fix="give the case's ground-truth .npz with --labels")
        if challenge.boxes is not None:
            case_boxes = {label: box.voxel_box() for label, box in challenge.boxes.items()}
    else:
        if labels is None:
            raise InputError("a volume needs its label volume to be scored", path=p,
                             fix="give --labels with one label file per volume")
        volume = read_volume(p)
        truth = _label_volume(Path(labels), volume)
    if modality is not None:
        volume.modality = modality
    if not truth.any():
        raise InputError("the ground truth holds no object", path=labels or p, fix="give a case with labelled objects")
    if source == "none":
        case_boxes = None
    elif source == "from-gt" and case_boxes is None:
        case_boxes = gt_boxes(truth)
    return Interactive3DCase(name or p.name.removesuffix(".gz").removesuffix(".nii").removesuffix(".npz"),
                             volume, truth.astype(np.uint16, copy=False), case_boxes)
