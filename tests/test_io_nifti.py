"""NIfTI volumes, 2D NIfTI, label writing that keeps the geometry, and slicing along any axis."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from input_errors import raises_for

from edge_medsam.io import (
    Volume,
    insert_slice,
    read_image,
    read_mask,
    read_volume,
    slice_volume,
    write_nifti,
    write_nifti_labels,
)

RNG = np.random.default_rng(11)
OBLIQUE = np.array([[-0.9, 0.1, 0.05, 90.0], [0.1, 0.8, -0.2, -120.0], [0.0, 0.3, 2.4, 15.0], [0, 0, 0, 1]])


def test_float_volume_round_trips_with_its_affine(tmp_path):
    data = RNG.normal(size=(7, 6, 5)).astype(np.float32)
    write_nifti(tmp_path / "v.nii.gz", data, OBLIQUE)
    volume = read_volume(tmp_path / "v.nii.gz")
    assert volume.voxels.dtype == np.float32 and np.array_equal(volume.voxels, data)
    assert np.allclose(volume.affine, OBLIQUE) and volume.meta["sform_code"] == 1
    assert np.allclose(volume.spacing, np.linalg.norm(OBLIQUE[:3, :3], axis=0))


def test_integer_volume_stays_integer_and_scaled_one_becomes_float(tmp_path):
    data = RNG.integers(-1000, 2000, (5, 4, 3)).astype(np.int16)
    write_nifti(tmp_path / "ct.nii", data, np.eye(4))
    assert read_volume(tmp_path / "ct.nii").voxels.dtype == np.int16
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(0.5, -10.0)
    nib.save(img, tmp_path / "scaled.nii.gz")
    volume = read_volume(tmp_path / "scaled.nii.gz")
    assert volume.voxels.dtype == np.float32 and np.array_equal(volume.voxels, data * np.float32(0.5) - 10)


def test_labels_keep_the_reference_affine_and_form_codes(tmp_path):
    img = nib.Nifti1Image(RNG.normal(size=(6, 5, 4)).astype(np.float32), OBLIQUE)
    img.set_qform(OBLIQUE, code=1)
    img.set_sform(OBLIQUE, code=2)
    nib.save(img, tmp_path / "scan.nii.gz")
    reference = read_volume(tmp_path / "scan.nii.gz")
    labels = RNG.integers(0, 3, reference.shape)
    written = nib.load(write_nifti_labels(tmp_path / "out" / "labels.nii.gz", labels, reference))
    assert np.allclose(written.affine, OBLIQUE) and np.allclose(written.get_sform(), OBLIQUE)
    assert int(written.header["qform_code"]) == 1 and int(written.header["sform_code"]) == 2
    assert written.get_data_dtype() == np.uint8 and np.array_equal(np.asarray(written.dataobj), labels)
    assert written.header.get_intent()[0] == "label"
    many = labels * 200
    assert nib.load(write_nifti_labels(tmp_path / "many.nii", many, reference)).get_data_dtype() == np.uint16
    raises_for(tmp_path / "bad.nii.gz", write_nifti_labels, tmp_path / "bad.nii.gz", labels[:-1], reference,
               match="do not match")


def test_two_d_nifti_reads_as_an_image(tmp_path):
    flat = RNG.integers(0, 255, (9, 7)).astype(np.uint8)
    nib.save(nib.Nifti1Image(flat, np.diag([-1.0, -1.0, 1.0, 1.0])), tmp_path / "flat.nii.gz")
    nib.save(nib.Nifti1Image(flat[:, :, None], np.diag([-0.5, -0.4, 1.0, 1.0])), tmp_path / "one.nii")
    image = read_image(tmp_path / "flat.nii.gz")
    assert np.array_equal(image.pixels, flat.T) and image.pixels.dtype == np.uint8
    assert read_image(tmp_path / "one.nii").spacing == pytest.approx((0.4, 0.5))
    assert np.array_equal(read_mask(tmp_path / "flat.nii.gz"), flat.T)
    nib.save(nib.Nifti1Image(flat[:, :, None].repeat(3, axis=2), np.eye(4)), tmp_path / "three.nii")
    raises_for(tmp_path / "three.nii", read_image, tmp_path / "three.nii", match="3D volume")


def test_four_d_and_complex_and_misnamed(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 1), np.float32), np.eye(4)), tmp_path / "single.nii")
    assert read_volume(tmp_path / "single.nii").shape == (3, 3, 3)
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2), np.float32), np.eye(4)), tmp_path / "fmri.nii")
    raises_for(tmp_path / "fmri.nii", read_volume, tmp_path / "fmri.nii", match="4D")
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.complex64), np.eye(4)), tmp_path / "complex.nii")
    raises_for(tmp_path / "complex.nii", read_volume, tmp_path / "complex.nii", match="complex")
    write_nifti(tmp_path / "v.nii.gz", np.zeros((3, 3, 3), np.float32), np.eye(4))
    (tmp_path / "v.nii.gz").rename(tmp_path / "scan.bin")
    raises_for(tmp_path / "scan.bin", read_volume, tmp_path / "scan.bin", match="rename")


def test_nan_in_nifti_is_rejected_by_the_reader(tmp_path):
    data = np.ones((4, 4, 4), np.float32)
    data[1, 2, 3] = np.inf
    write_nifti(tmp_path / "inf.nii.gz", data, np.eye(4))
    raises_for(tmp_path / "inf.nii.gz", read_volume, tmp_path / "inf.nii.gz", match="NaN or Inf")


@pytest.mark.parametrize("name", ["cut.nii.gz", "cut.nii"])
def test_truncated_nifti(tmp_path, name):
    write_nifti(tmp_path / f"full_{name}", RNG.normal(size=(20, 20, 20)).astype(np.float32), np.eye(4))
    data = (tmp_path / f"full_{name}").read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    raises_for(tmp_path / name, read_volume, tmp_path / name, match="not a readable image")
    (tmp_path / f"head_{name}").write_bytes(data[:200])
    raises_for(tmp_path / f"head_{name}", read_volume, tmp_path / f"head_{name}")


def test_voxel_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    write_nifti(tmp_path / "big.nii.gz", np.zeros((10, 10, 10), np.int16), np.eye(4))
    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "get_unscaled", lambda self: pytest.fail("decoded too early"))
    monkeypatch.setenv("EDGE_MEDSAM_MAX_VOXELS", "999")
    raises_for(tmp_path / "big.nii.gz", read_volume, tmp_path / "big.nii.gz", match="over the limit")


def test_writers_refuse_bad_arrays(tmp_path):
    raises_for(tmp_path / "a.nii", write_nifti, tmp_path / "a.nii", np.zeros((2, 2, 2)), np.zeros((4, 4)),
               match="affine")
    raises_for(tmp_path / "b.nii", write_nifti, tmp_path / "b.nii", np.array(["x"]), np.eye(4))
    reference = Volume(voxels=np.zeros((2, 2, 2), np.float32), affine=np.eye(4))
    raises_for(tmp_path / "c.nii", write_nifti_labels, tmp_path / "c.nii", np.full((2, 2, 2), 0.5), reference,
               match="fractional")


# --- slicing -------------------------------------------------------------------------------------------------------

def test_slices_of_a_ras_volume_follow_the_radiological_display():
    voxels = RNG.integers(0, 100, (4, 5, 6))
    volume = Volume(voxels=voxels, affine=np.diag([0.5, 0.6, 2.0, 1.0]))
    axial = slice_volume(volume, "axial", 2)
    assert np.array_equal(axial.pixels, voxels[::-1, ::-1, 2].T) and axial.spacing == (0.6, 0.5)
    assert np.array_equal(slice_volume(volume, "coronal", 1).pixels, voxels[::-1, 1, ::-1].T)
    assert np.array_equal(slice_volume(volume, "sagittal", 3).pixels, voxels[3, ::-1, ::-1].T)
    assert np.array_equal(slice_volume(volume, 2, 2).pixels, axial.pixels)
    assert axial.meta["slice"] == {"axis": 2, "plane": "axial", "index": 2}


def test_dicom_like_volume_gives_back_the_dicom_frame():
    voxels = RNG.integers(0, 100, (6, 4, 3))  # (columns, rows, slices) with LPS axes seen in RAS
    volume = Volume(voxels=voxels, affine=np.diag([-0.7, -0.7, 3.0, 1.0]), modality="ct", hounsfield=True)
    image = slice_volume(volume, "axial", 1)
    assert np.array_equal(image.pixels, voxels[:, :, 1].T) and image.hounsfield and image.modality == "ct"


def test_axis_names_follow_the_affine_not_the_array_order():
    # i runs toward superior, j toward the right, k toward anterior.
    affine = np.array([[0, 1.0, 0, 0], [0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])
    volume = Volume(voxels=RNG.integers(0, 9, (3, 4, 5)), affine=affine)
    assert slice_volume(volume, "axial", 0).meta["slice"]["axis"] == 0
    assert slice_volume(volume, "sagittal", 0).meta["slice"]["axis"] == 1
    assert slice_volume(volume, "coronal", 0).meta["slice"]["axis"] == 2


@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
@pytest.mark.parametrize("affine", [np.eye(4), np.diag([-1.0, -1.0, 1.0, 1.0]), OBLIQUE])
def test_insert_slice_inverts_slice_volume(axis, affine):
    volume = Volume(voxels=RNG.integers(0, 9, (5, 6, 7)), affine=affine)
    index = 2
    mask = (RNG.random(slice_volume(volume, axis, index).shape) > 0.5).astype(np.uint8)
    labels = np.zeros(volume.shape, np.uint8)
    insert_slice(labels, mask, volume, axis, index)
    assert np.array_equal(slice_volume(Volume(labels, affine), axis, index).pixels, mask)
    assert labels.sum() == mask.sum()


def test_bad_axis_and_index():
    volume = Volume(voxels=np.zeros((3, 3, 3)), affine=np.eye(4), path=Path("vol.nii.gz"))
    raises_for(Path("vol.nii.gz"), slice_volume, volume, "oblique", 0, match="unknown slicing axis")
    raises_for(Path("vol.nii.gz"), slice_volume, volume, 3, 0)
    raises_for(Path("vol.nii.gz"), slice_volume, volume, "axial", 3, match="outside 0..2")
    raises_for(Path("vol.nii.gz"), insert_slice, np.zeros((3, 3, 3)), np.zeros((2, 2)), volume, "axial", 0,
               match="does not fit")
