"""RTSTRUCT and DICOM-SEG as inputs: masks back from contours written by the test, the project's SEG read back
exactly, wrong-series errors, and `eval` / `predict --prompts-from` end to end with the test bundle."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid
from skimage.measure import find_contours

from edge_medsam.errors import InputError
from edge_medsam.io import read_dicom_seg, read_volume, write_dicom_seg, write_dicom_series
from edge_medsam.io.dicom import LPS_TO_RAS
from edge_medsam.io.dicom_structures import read_dicom_structures, structure_boxes, structure_labels
from edge_medsam.io.nifti import write_nifti
from edge_medsam.io.types import Volume

SHAPE = (48, 44, 5)
_AFFINE = np.array([[0.9, 0, 0, -20.0], [0, 0.8, 0, 15.0], [0, 0, 3.0, -6.0], [0, 0, 0, 1.0]])


def known_masks() -> dict[str, np.ndarray]:
    """A body ellipse, a disc inside it and a ring (a contour with a hole), on some slices."""
    i, j = np.mgrid[: SHAPE[0], : SHAPE[1]]
    body = np.zeros(SHAPE, bool)
    body[..., :] = (((i - 24) / 20.0) ** 2 + ((j - 22) / 18.0) ** 2 <= 1)[..., None]
    disc = np.zeros(SHAPE, bool)
    disc[..., 1:4] = (((i - 18) ** 2 + (j - 16) ** 2) <= 36)[..., None]
    radius = np.hypot(i - 30, j - 28)
    ring = np.zeros(SHAPE, bool)
    ring[..., 2:5] = ((radius <= 7) & (radius > 3))[..., None]
    return {"Body": body, "Liver": disc, "Ring": ring}


def series(folder: Path) -> Volume:
    """A synthetic CT series written by the project, its volume as read back."""
    hounsfield = np.where(known_masks()["Body"], 40.0, -1000.0).astype(np.float32)
    write_dicom_series(folder, Volume(hounsfield, _AFFINE))
    return read_volume(folder)


def _item(**values) -> Dataset:
    ds = Dataset()
    for key, value in values.items():
        setattr(ds, key, value)
    return ds


def write_rtstruct(path: Path, volume: Volume, masks: dict[str, np.ndarray]) -> Path:
    """An RT Structure Set with the masks' contours (skimage.measure.find_contours) in patient mm."""
    first = volume.source[0]
    by_k = dict(enumerate(volume.source))  # the series' images in k order
    ds = _item(SOPClassUID=RTStructureSetStorage, SOPInstanceUID=generate_uid(), Modality="RTSTRUCT",
               StudyInstanceUID=first.StudyInstanceUID, SeriesInstanceUID=generate_uid(), PatientID=first.PatientID,
               StructureSetLabel="test", FrameOfReferenceUID=first.FrameOfReferenceUID)
    ds.ReferencedFrameOfReferenceSequence = Sequence([_item(
        FrameOfReferenceUID=first.FrameOfReferenceUID, RTReferencedStudySequence=Sequence([_item(
            ReferencedSOPInstanceUID=first.StudyInstanceUID, RTReferencedSeriesSequence=Sequence([_item(
                SeriesInstanceUID=first.SeriesInstanceUID)]))]))])
    ds.StructureSetROISequence = Sequence([_item(ROINumber=n, ReferencedFrameOfReferenceUID=first.FrameOfReferenceUID,
                                                 ROIName=name) for n, name in enumerate(masks, start=1)])
    rois = []
    for number, mask in enumerate(masks.values(), start=1):
        contours = []
        for k in range(mask.shape[2]):
            for points in find_contours(mask[:, :, k].astype(float), 0.5):
                voxel = np.c_[points, np.full(len(points), k), np.ones(len(points))]
                lps = (LPS_TO_RAS @ volume.affine @ voxel.T).T[:, :3]
                contours.append(_item(ContourGeometricType="CLOSED_PLANAR", NumberOfContourPoints=len(lps),
                                      ContourData=[f"{v:.4f}" for v in lps.ravel()],
                                      ContourImageSequence=Sequence([_item(
                                          ReferencedSOPClassUID=by_k[k].SOPClassUID,
                                          ReferencedSOPInstanceUID=by_k[k].SOPInstanceUID)])))
        rois.append(_item(ReferencedROINumber=number, ContourSequence=Sequence(contours)))
    ds.ROIContourSequence = Sequence(rois)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


def masks_of(path: Path, volume: Volume) -> dict[str, np.ndarray]:
    return {item.name: item.mask() for item in read_dicom_structures(path, volume)}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.fixture
def case(tmp_path: Path) -> tuple[Volume, Path]:
    volume = series(tmp_path / "series")
    return volume, write_rtstruct(tmp_path / "rtstruct.dcm", volume, known_masks())


def test_rtstruct_contours_give_the_masks_back(case):
    volume, rtstruct = case
    structures = masks_of(rtstruct, volume)
    assert list(structures) == ["Body", "Liver", "Ring"]
    for name, mask in known_masks().items():
        assert structures[name].shape == volume.shape and dice(structures[name], mask) >= 0.95, name
    assert not structures["Ring"][30, 28, 3] and structures["Ring"][30, 34, 3]  # the inner contour is a hole
    assert not structures["Liver"][..., 0].any() and not structures["Liver"][..., 4].any()


def test_labels_keep_the_smaller_of_overlapping_structures_and_boxes_cover_each(case):
    volume, rtstruct = case
    structures = read_dicom_structures(rtstruct, volume)
    labels, names = structure_labels(structures)
    assert names == {1: "Body", 2: "Liver", 3: "Ring"}
    assert labels[18, 16, 2] == 2 and labels[30, 34, 3] == 3 and labels[24, 6, 0] == 1 and labels[0, 0, 0] == 0
    boxes = dict(structure_boxes(structures))
    liver = known_masks()["Liver"]
    i0, j0, k0, i1, j1, k1 = boxes["Liver"]
    assert (i0, j0, k0, i1, j1, k1) == (12, 10, 1, 24, 22, 3) and liver[12:25, 10:23, 1:4].sum() == liver.sum()
    assert [item.voxels for item in structures] == [int(m.sum()) for m in known_masks().values()]
    assert structures[1].crop.shape == (13, 13, 3)  # kept as the crop to its box, not as a whole volume


def test_a_structure_set_of_another_series_is_refused(case, tmp_path):
    _, rtstruct = case
    other = series(tmp_path / "other")  # new Frame of Reference and series UIDs
    with pytest.raises(InputError, match="frame of reference") as caught:
        read_dicom_structures(rtstruct, other)
    assert "rtstruct.dcm" in str(caught.value) and "\n" not in str(caught.value) and caught.value.fix
    write_nifti(tmp_path / "v.nii.gz", other.voxels, other.affine)
    with pytest.raises(InputError, match="not read from DICOM"):
        read_dicom_structures(rtstruct, read_volume(tmp_path / "v.nii.gz"))
    with pytest.raises(InputError, match="not an RT Structure Set or DICOM Segmentation"):
        read_dicom_structures(sorted((tmp_path / "other").glob("*.dcm"))[0], other)


def test_the_projects_dicom_seg_reads_back_exactly(case, tmp_path):
    volume, _ = case
    masks = known_masks()
    labels = np.zeros(volume.shape, np.uint16)
    labels[masks["Liver"]] = 1
    labels[masks["Ring"]] = 2
    seg = write_dicom_seg(tmp_path / "seg.dcm", labels, volume, {1: "Liver", 2: "Ring"})
    structures = masks_of(seg, volume)
    assert list(structures) == ["Liver", "Ring"]
    np.testing.assert_array_equal(structures["Liver"], labels == 1)
    np.testing.assert_array_equal(structures["Ring"], labels == 2)
    with pytest.raises(InputError, match="does not fit the reference series"):
        read_dicom_structures(seg, series(tmp_path / "other"))


def test_eval_interactive3d_against_rtstruct_and_seg_ground_truth(case, tmp_path):
    from runtime_bundle import cached_bundle

    from edge_medsam.cli import main

    volume, rtstruct = case
    seg = write_dicom_seg(tmp_path / "seg.dcm", (known_masks()["Liver"]).astype(np.uint16), volume, {1: "Liver"})
    out = tmp_path / "eval"
    code = main(["eval", "--protocol", "interactive3d", str(tmp_path / "series"), str(tmp_path / "series"),
                 "--labels", str(rtstruct), str(seg), "--bundle", str(cached_bundle()), "--backend", "onnxruntime",
                 "--threads", "1", "--boxes", "from-gt", "--out", str(out)])
    assert code == 0
    rows = list(csv.DictReader((out / "cases.csv").open()))
    assert [r["num_class"] for r in rows] == ["3", "1"]
    for case_result in json.loads((out / "results.json").read_text())["cases"]:
        assert case_result["has_box"] and 0.0 <= case_result["steps"][0]["case_dice"] <= 1.0


def test_predict_prompts_from_rtstruct_names_the_seg_segments_after_the_rois(case, tmp_path, capsys):
    from runtime_bundle import cached_bundle

    from edge_medsam.cli import main

    volume, rtstruct = case
    out = tmp_path / "out"
    argv = ["predict", str(tmp_path / "series"), "--bundle", str(cached_bundle()), "--backend", "onnxruntime",
            "--threads", "1", "--quiet", "--format", "dicom-seg", "--out", str(out)]
    assert main([*argv, "--prompts-from", str(rtstruct)]) == 0, capsys.readouterr().err
    (record,) = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    assert [(o["label"], o["name"], o["prompt"]) for o in record["objects"]] == [
        (1, "Body", "box3d"), (2, "Liver", "box3d"), (3, "Ring", "box3d")]
    labels, names = read_dicom_seg(record["output"], volume)
    assert names == {1: "Body", 2: "Liver", 3: "Ring"}
    for o in record["objects"]:
        assert int((labels == o["label"]).sum()) == o["voxels"]
    assert pydicom.dcmread(record["output"]).SegmentSequence[1].SegmentLabel == "Liver"
    seg = write_dicom_seg(tmp_path / "seg.dcm", known_masks()["Ring"].astype(np.uint16), volume, {1: "Ring"})
    assert main([*argv[:-1], str(tmp_path / "from_seg"), "--prompts-from", str(seg)]) == 0
    (record,) = [json.loads(line) for line in (tmp_path / "from_seg" / "summary.jsonl").read_text().splitlines()]
    assert [(o["label"], o["name"]) for o in record["objects"]] == [(1, "Ring")]
    assert read_dicom_seg(record["output"], volume)[1] == {1: "Ring"}
    other = tmp_path / "other"
    series(other)
    assert main([*argv[:1], str(other), *argv[2:], "--prompts-from", str(rtstruct)]) == 1
    (line,) = capsys.readouterr().err.splitlines()[:1]
    assert "frame of reference" in line and "rtstruct.dcm" in line


def _edited(path: Path, edit, out: Path) -> Path:
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(out)
    return out


def test_contours_off_the_slices_or_of_another_series_in_the_same_frame_are_refused(case, tmp_path):
    volume, rtstruct = case

    def half_a_slice_up(ds):
        contour = ds.ROIContourSequence[1].ContourSequence[0]
        points = np.asarray([float(v) for v in contour.ContourData]).reshape(-1, 3)
        points[:, 2] += 1.5  # the slices are 3 mm apart
        contour.ContourData = [f"{v:.4f}" for v in points.ravel()]

    with pytest.raises(InputError, match="'Liver' has a contour that does not lie on a slice"):
        read_dicom_structures(_edited(rtstruct, half_a_slice_up, tmp_path / "off.dcm"), volume)

    def other_series(ds):
        study = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
        study.RTReferencedSeriesSequence[0].SeriesInstanceUID = generate_uid()

    with pytest.raises(InputError, match=r"references series .*, not "):
        read_dicom_structures(_edited(rtstruct, other_series, tmp_path / "series.dcm"), volume)

    def other_images(ds):
        del ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence
        for roi in ds.ROIContourSequence:
            for contour in roi.ContourSequence:
                contour.ContourImageSequence[0].ReferencedSOPInstanceUID = generate_uid()

    with pytest.raises(InputError, match="none of them in series"):
        read_dicom_structures(_edited(rtstruct, other_images, tmp_path / "images.dcm"), volume)


def test_a_structure_set_given_as_the_image_says_where_it_goes(case):
    _, rtstruct = case
    with pytest.raises(InputError, match=r"RT Structure Set .*predict --prompts-from or eval --labels"):
        read_volume(rtstruct)
