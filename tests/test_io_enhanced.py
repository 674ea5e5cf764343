"""Enhanced multi-frame CT/MR as volumes: the same voxels and affine as the classic series they were converted
from, per-frame rescale, files that are not one stack refused with what they hold, predict on such a file."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from edge_medsam.errors import InputError
from edge_medsam.io import read_dicom_seg, read_volume, write_dicom_series
from edge_medsam.io.nifti import read_nifti
from edge_medsam.io.types import Volume

_CONVERTERS = {"CT": hd.legacy.LegacyConvertedEnhancedCTImage, "MR": hd.legacy.LegacyConvertedEnhancedMRImage}
# An oblique, anisotropic grid: frames sorted along the normal, not along any world axis.
_AFFINE = np.array([[0.7, 0.1, 0.0, -20.0], [-0.1, 0.7, 0.0, 12.0], [0.0, 0.0, 2.5, -30.0], [0, 0, 0, 1.0]])


def classic_series(folder: Path, modality: str = "CT", shape: tuple[int, int, int] = (24, 20, 6)) -> Path:
    """A single-frame series the project writes, of random whole values (exact through int16)."""
    voxels = np.random.default_rng(3).integers(-1000, 1500, shape).astype(np.float32)
    write_dicom_series(folder, Volume(voxels, _AFFINE), modality)
    return folder


def enhanced(series: Path, path: Path, modality: str = "CT", *, shuffle: bool = True) -> Path:
    """The series converted to one Legacy Converted Enhanced CT/MR file (highdicom), frames in shuffled order."""
    datasets = [pydicom.dcmread(p) for p in sorted(series.glob("*.dcm"))]
    if shuffle:
        datasets = [datasets[i] for i in np.random.default_rng(1).permutation(len(datasets))]
    image = _CONVERTERS[modality](datasets, series_instance_uid=hd.UID(), series_number=2,
                                  sop_instance_uid=hd.UID(), instance_number=1)
    image.save_as(path)
    return path


def edited(path: Path, edit, out: Path) -> Path:
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(out)
    return out


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_enhanced_file_gives_the_voxels_and_affine_of_its_classic_series(modality, tmp_path):
    series = classic_series(tmp_path / "series", modality)
    classic = read_volume(series)
    volume = read_volume(enhanced(series, tmp_path / "enhanced.dcm", modality))
    assert volume.shape == classic.shape == (24, 20, 6)
    np.testing.assert_array_equal(volume.voxels, classic.voxels)
    np.testing.assert_allclose(volume.affine, classic.affine, atol=1e-5)
    np.testing.assert_allclose(volume.affine, _AFFINE, atol=1e-5)
    assert volume.hounsfield == (modality == "CT") and volume.meta["geometry"] == "image_position"
    assert sorted(volume.meta["frame_order"]) == list(range(6)) and volume.meta["frame_order"] != list(range(6))


def test_enhanced_geometry_agrees_with_highdicom_get_volume(tmp_path):
    """highdicom's own volume reading gives the same grid (its axes are (k, j, i) in LPS, ours (i, j, k) in RAS)."""
    for path in (enhanced(classic_series(tmp_path / "s"), tmp_path / "e.dcm"), Path(get_testdata_file(
            "eCT_Supplemental.dcm"))):
        ours = read_volume(path)
        theirs = hd.imread(path).get_volume()
        reordered = (np.diag([-1.0, -1, 1, 1]) @ ours.affine)[:, [2, 1, 0, 3]]
        if reordered[:3, 0] @ theirs.affine[:3, 0] < 0:  # it may stack the frames the other way along the normal
            theirs = theirs.flip_spatial(0)
        np.testing.assert_allclose(reordered, theirs.affine, atol=1e-4)
        np.testing.assert_allclose(ours.voxels.transpose(2, 1, 0), theirs.array, atol=1e-3)


def test_real_enhanced_ct_from_pydicom_data(tmp_path):
    volume = read_volume(get_testdata_file("eCT_Supplemental.dcm"))
    assert volume.shape == (512, 512, 2) and volume.hounsfield
    assert volume.spacing == pytest.approx((0.388672, 0.388672, 10.0))


def test_per_frame_rescale_is_applied_frame_by_frame(tmp_path):
    series = classic_series(tmp_path / "series")
    path = enhanced(series, tmp_path / "e.dcm", shuffle=False)
    before = read_volume(path)

    def rescale_per_frame(ds):
        shared = ds.SharedFunctionalGroupsSequence[0]
        transform = shared.PixelValueTransformationSequence
        del shared.PixelValueTransformationSequence
        for index, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
            item = copy.deepcopy(transform)
            item[0].RescaleSlope = str(1 + index)
            item[0].RescaleIntercept = str(-100 * index)
            frame.PixelValueTransformationSequence = item

    after = read_volume(edited(path, rescale_per_frame, tmp_path / "per_frame.dcm"))
    order = before.meta["frame_order"]
    stored = before.voxels  # slope 1, intercept 0 in the shared group: the stored values
    for k, frame in enumerate(order):
        np.testing.assert_allclose(after.voxels[:, :, k], stored[:, :, k] * (1 + frame) - 100 * frame)


def _frame_content(ds, index):
    return ds.PerFrameFunctionalGroupsSequence[index].FrameContentSequence[0]


def test_several_stacks_are_refused_with_a_listing(tmp_path):
    path = enhanced(classic_series(tmp_path / "series"), tmp_path / "e.dcm")

    def two_stacks(ds):
        for index in range(3):
            _frame_content(ds, index).StackID = "2"

    with pytest.raises(InputError) as caught:
        read_volume(edited(path, two_stacks, tmp_path / "stacks.dcm"))
    message = str(caught.value)
    assert "holds 2 stacks" in message and "1: 3 frames, 2: 3 frames" in message and "stacks.dcm" in message
    assert "\n" not in message and caught.value.fix


def test_several_orientations_are_refused_with_a_listing(tmp_path):
    path = enhanced(classic_series(tmp_path / "series"), tmp_path / "e.dcm")

    def localizer(ds):
        shared = ds.SharedFunctionalGroupsSequence[0]
        orientation = shared.PlaneOrientationSequence
        del shared.PlaneOrientationSequence
        for index, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
            item = copy.deepcopy(orientation)
            if index == 0:
                item[0].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
            frame.PlaneOrientationSequence = item

    with pytest.raises(InputError, match=r"2 orientations.*sagittal \[0\.0, 1\.0, 0\.0, 0\.0, 0\.0, -1\.0\]: 1 frames"):
        read_volume(edited(path, localizer, tmp_path / "localizer.dcm"))


def test_repeated_positions_name_the_dimension_that_varies(tmp_path):
    path = enhanced(classic_series(tmp_path / "series"), tmp_path / "e.dcm", shuffle=False)

    def two_time_points(ds):
        dimension = pydicom.Dataset()
        dimension.DimensionIndexPointer = pydicom.tag.Tag("TemporalPositionIndex")
        dimension.FunctionalGroupPointer = pydicom.tag.Tag("FrameContentSequence")
        ds.DimensionIndexSequence.append(dimension)
        frames = ds.PerFrameFunctionalGroupsSequence
        for index, frame in enumerate(frames):
            content = frame.FrameContentSequence[0]
            content.TemporalPositionIndex = 1 + index // 3
            content.DimensionIndexValues = [index % 3 + 1, 1 + index // 3]
            if index >= 3:  # the second time point repeats the first one's positions
                frame.PlanePositionSequence = copy.deepcopy(frames[index - 3].PlanePositionSequence)

    with pytest.raises(InputError, match=r"6 frames lie at 3 slice positions.*2 values of TemporalPositionIndex"):
        read_volume(edited(path, two_time_points, tmp_path / "time.dcm"))


def test_predict_writes_nifti_and_dicom_seg_for_an_enhanced_file(tmp_path, capsys):
    from runtime_bundle import cached_bundle

    from edge_medsam.cli import main

    path = enhanced(classic_series(tmp_path / "series", shape=(48, 40, 4)), tmp_path / "e.dcm")
    volume = read_volume(path)
    for fmt in ("nifti", "dicom-seg"):
        out = tmp_path / fmt
        code = main(["predict", str(path), "--bundle", str(cached_bundle()), "--backend", "onnxruntime",
                     "--threads", "1", "--quiet", "--format", fmt, "--box3d", "5", "5", "1", "30", "30", "2",
                     "--out", str(out)])
        assert code == 0, capsys.readouterr().err
        (record,) = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
        assert record["format"] == fmt and record["shape"] == [48, 40, 4]
        if fmt == "nifti":
            written = read_nifti(record["output"])
            labels = written.voxels
            np.testing.assert_allclose(written.affine, volume.affine, atol=1e-4)
        else:
            labels, names = read_dicom_seg(record["output"], volume)
            assert names == {1: "object 1"}
        assert labels.shape == volume.shape and int((labels == 1).sum()) == record["objects"][0]["voxels"]
