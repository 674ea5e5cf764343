"""MedSAM-on-Laptop .npz cases and outputs; DICOM-SEG written, then opened again with highdicom."""

from __future__ import annotations

import zipfile
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from input_errors import raises_for

from edge_medsam.io import (
    LaptopCase,
    Volume,
    read_dicom_seg,
    read_image,
    read_laptop_npz,
    read_volume,
    slice_volume,
    write_dicom_seg,
    write_dicom_series,
    write_laptop_npz,
    write_nifti,
)

RNG = np.random.default_rng(5)


# --- MedSAM-on-Laptop .npz -----------------------------------------------------------------------------------------

def test_2d_case_reads_and_segs_are_written_compressed(tmp_path):
    imgs = RNG.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    gts = np.zeros((30, 40), np.uint8)
    gts[5:10, 5:20], gts[15:25, 22:35] = 1, 2
    boxes = np.array([[5, 5, 19, 9], [22, 15, 34, 24]])
    np.savez_compressed(tmp_path / "2DBox_Dermoscopy_0001.npz", imgs=imgs, gts=gts, boxes=boxes)
    case = read_laptop_npz(tmp_path / "2DBox_Dermoscopy_0001.npz")
    assert not case.is_3d and np.array_equal(case.imgs, imgs) and np.array_equal(case.gts, gts)
    assert case.boxes.shape == (2, 4) and case.spacing is None
    image = read_image(tmp_path / "2DBox_Dermoscopy_0001.npz")
    assert np.array_equal(image.pixels, imgs) and image.meta["laptop_case"].boxes.shape == (2, 4)
    assert image.modality == "dermoscopy" and not image.hounsfield
    out = write_laptop_npz(tmp_path / "segs" / "2DBox_Dermoscopy_0001.npz", gts, case)
    with np.load(out) as saved:
        assert list(saved.keys()) == ["segs"] and np.array_equal(saved["segs"], gts)
        assert saved["segs"].dtype == np.uint8
    with zipfile.ZipFile(out) as zf:
        assert zf.getinfo("segs.npy").compress_type == zipfile.ZIP_DEFLATED


def test_3d_case_becomes_a_volume_with_its_spacing(tmp_path):
    imgs = RNG.integers(0, 255, (6, 20, 24), dtype=np.uint8)  # (D, H, W)
    gts = np.zeros_like(imgs)
    gts[2:4, 5:9, 6:12] = 3
    np.savez_compressed(tmp_path / "3DBox_CT_0001.npz", imgs=imgs, gts=gts, spacing=np.array([0.8, 0.7, 2.5]),
                        boxes=np.array([[6, 5, 2, 11, 8, 3]]))
    case = read_laptop_npz(tmp_path / "3DBox_CT_0001.npz")
    assert case.is_3d and case.spacing == (0.8, 0.7, 2.5) and case.boxes.shape == (1, 6)
    volume = read_volume(tmp_path / "3DBox_CT_0001.npz")
    assert volume.shape == (24, 20, 6) and np.allclose(volume.spacing, (0.8, 0.7, 2.5))
    assert volume.modality == "ct" and not volume.hounsfield  # challenge volumes are already windowed to uint8
    assert np.array_equal(slice_volume(volume, "axial", 3).pixels, imgs[3])
    labels = case.gts.transpose(2, 1, 0)  # a prediction on the Volume goes back with the same transpose
    out = write_laptop_npz(tmp_path / "out.npz", labels.transpose(2, 1, 0), case)
    with np.load(out) as saved:
        assert np.array_equal(saved["segs"], gts)
    raises_for(tmp_path / "bad.npz", write_laptop_npz, tmp_path / "bad.npz", labels, case, match="segs has shape")


def test_bad_cases_name_the_key(tmp_path):
    np.savez(tmp_path / "no_imgs.npz", gts=np.zeros((4, 4)))
    raises_for(tmp_path / "no_imgs.npz", read_laptop_npz, tmp_path / "no_imgs.npz", match="'imgs' is missing")
    raises_for(tmp_path / "no_imgs.npz", read_image, tmp_path / "no_imgs.npz", match="'imgs'")
    np.savez(tmp_path / "gts.npz", imgs=np.zeros((8, 8, 3), np.uint8), gts=np.zeros((8, 7), np.uint8))
    raises_for(tmp_path / "gts.npz", read_laptop_npz, tmp_path / "gts.npz", match="'gts'")
    np.savez(tmp_path / "boxes.npz", imgs=np.zeros((8, 8, 3), np.uint8), boxes=np.zeros((2, 6)))
    raises_for(tmp_path / "boxes.npz", read_laptop_npz, tmp_path / "boxes.npz", match="'boxes'")
    np.savez(tmp_path / "flip.npz", imgs=np.zeros((8, 8, 3), np.uint8), boxes=np.array([[5, 5, 1, 1]]))
    raises_for(tmp_path / "flip.npz", read_laptop_npz, tmp_path / "flip.npz", match="'boxes'")
    np.savez(tmp_path / "spacing.npz", imgs=np.zeros((3, 8, 8), np.uint8), spacing=np.array([1.0, -1.0, 2.0]))
    raises_for(tmp_path / "spacing.npz", read_laptop_npz, tmp_path / "spacing.npz", match="'spacing'")
    np.savez(tmp_path / "pickle.npz", imgs=np.array([{"evil": 1}], dtype=object))
    raises_for(tmp_path / "pickle.npz", read_laptop_npz, tmp_path / "pickle.npz", match="'imgs'")
    np.savez(tmp_path / "nan.npz", imgs=np.full((4, 4, 3), np.nan, np.float32))
    raises_for(tmp_path / "nan.npz", read_laptop_npz, tmp_path / "nan.npz", match="NaN")
    full = tmp_path / "full.npz"
    np.savez_compressed(full, imgs=RNG.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (tmp_path / "cut.npz").write_bytes(full.read_bytes()[:-200])
    raises_for(tmp_path / "cut.npz", read_laptop_npz, tmp_path / "cut.npz")


def test_npz_size_is_checked_before_decompressing(tmp_path, monkeypatch):
    np.savez_compressed(tmp_path / "big.npz", imgs=np.zeros((10, 30, 30), np.uint8))
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("decompressed before the check"))
    monkeypatch.setenv("EDGE_MEDSAM_MAX_VOXELS", "1000")
    raises_for(tmp_path / "big.npz", read_volume, tmp_path / "big.npz", match="over the limit")


def test_laptop_case_views_refuse_the_wrong_dimension():
    flat = LaptopCase(imgs=np.zeros((4, 4, 3), np.uint8), path=Path("a.npz"))
    raises_for(Path("a.npz"), flat.to_volume, match="2D")
    cube = LaptopCase(imgs=np.zeros((4, 4, 4), np.uint8), path=Path("b.npz"))
    raises_for(Path("b.npz"), cube.to_image, match="3D")


# --- DICOM-SEG -----------------------------------------------------------------------------------------------------

@pytest.fixture
def ct_series(tmp_path) -> tuple[Volume, list[Path]]:
    affine = np.array([[-0.7, 0, 0, 50.0], [0, -0.7, 0, 60.0], [0, 0, 3.0, -100.0], [0, 0, 0, 1]])
    voxels = RNG.integers(-1000, 1000, (16, 12, 5)).astype(np.int16)
    paths = write_dicom_series(tmp_path / "ct", Volume(voxels=voxels, affine=affine))
    return read_volume(tmp_path / "ct"), paths


def test_dicom_seg_round_trips_through_highdicom(tmp_path, ct_series):
    volume, paths = ct_series
    labels = np.zeros(volume.shape, np.uint8)
    labels[3:8, 2:6, 1:3] = 1
    labels[10:14, 7:10, 3] = 2
    out = write_dicom_seg(tmp_path / "seg.dcm", labels, volume, {1: "liver", 2: "tumour"})
    seg = hd.seg.segread(out)
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "tumour"]
    for item in seg.SegmentSequence:
        assert item.SegmentAlgorithmType == "AUTOMATIC" and item.SegmentAlgorithmName == "edge-medsam"
    source_uids = [str(pydicom.dcmread(p).SOPInstanceUID) for p in paths]
    series = seg.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == pydicom.dcmread(paths[0]).SeriesInstanceUID
    assert sorted(i.ReferencedSOPInstanceUID for i in series.ReferencedInstanceSequence) == sorted(source_uids)
    pixels = seg.get_pixels_by_source_instance(source_uids, combine_segments=True)
    assert np.array_equal(pixels, labels.transpose(2, 1, 0))
    back, names = read_dicom_seg(out, volume)
    assert np.array_equal(back, labels) and names == {1: "liver", 2: "tumour"}
    raises_for(out, read_image, out, match="Segmentation")
    out.rename(paths[0].parent / "seg.dcm")  # a SEG stored beside its series is not taken for another series
    assert np.array_equal(read_volume(paths[0].parent).voxels, volume.voxels)


def test_dicom_seg_of_nothing_and_unnamed_labels(tmp_path, ct_series):
    volume, _ = ct_series
    empty, names = read_dicom_seg(write_dicom_seg(tmp_path / "empty.dcm", np.zeros(volume.shape), volume, {}), volume)
    assert not empty.any() and names == {1: "segment 1"}
    labels = np.zeros(volume.shape, np.uint8)
    labels[0, 0, 0] = 3
    _, names = read_dicom_seg(write_dicom_seg(tmp_path / "three.dcm", labels, volume, {1: "a"}), volume)
    assert names == {1: "a", 2: "segment 2", 3: "segment 3"}


def test_dicom_seg_needs_a_dicom_reference(tmp_path):
    write_nifti(tmp_path / "scan.nii.gz", np.zeros((4, 4, 2), np.float32), np.eye(4))
    volume = read_volume(tmp_path / "scan.nii.gz")
    err = raises_for(tmp_path / "seg.dcm", write_dicom_seg, tmp_path / "seg.dcm", np.zeros((4, 4, 2), np.uint8),
                     volume, {1: "x"}, match="not read from DICOM")
    assert "write_nifti_labels" in str(err)


def test_dicom_seg_checks_shape_and_segment_numbers(tmp_path, ct_series):
    volume, _ = ct_series
    raises_for(tmp_path / "s.dcm", write_dicom_seg, tmp_path / "s.dcm", np.zeros((2, 2, 2)), volume, {},
               match="do not match")
    raises_for(tmp_path / "s.dcm", write_dicom_seg, tmp_path / "s.dcm", np.zeros(volume.shape), volume, {0: "bg"},
               match="segment numbers")
    (tmp_path / "not_seg.dcm").write_bytes(Path(volume.source[0].filename).read_bytes())
    raises_for(tmp_path / "not_seg.dcm", read_dicom_seg, tmp_path / "not_seg.dcm", volume)
