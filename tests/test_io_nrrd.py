"""NRRD volumes: round trips through pynrrd, LPS → RAS geometry, agreement with NIfTI, and bad inputs."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from input_errors import raises_for

nrrd = pytest.importorskip("nrrd")

from edge_medsam.cli import main  # noqa: E402
from edge_medsam.data.layouts import load_sample, open_dataset  # noqa: E402
from edge_medsam.io import read_image, read_nrrd, read_volume, slice_volume, write_nifti  # noqa: E402
from edge_medsam.io.files import sniff_format  # noqa: E402

RNG = np.random.default_rng(5)
LPS = "left-posterior-superior"
# An oblique grid as ITK writes it: rows are the world steps of voxel axes i, j, k (LPS mm).
DIRECTIONS = np.array([[0.7, 0.05, 0.0], [-0.04, 0.8, 0.1], [0.0, -0.3, 2.5]])
ORIGIN = np.array([-99.6, 99.6, -78.0])


def _write(path: Path, data: np.ndarray, **fields) -> Path:
    header = {"space": LPS, "space directions": DIRECTIONS, "space origin": ORIGIN, "encoding": "gzip", **fields}
    nrrd.write(str(path), data, header, index_order="F")
    return path


def _lps_to_ras(directions: np.ndarray, origin: np.ndarray) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = (directions * [-1, -1, 1]).T
    affine[:3, 3] = origin * [-1, -1, 1]
    return affine


@pytest.mark.parametrize("encoding", ["gzip", "raw", "bzip2", "ascii"])
def test_round_trip_keeps_voxels_dtype_and_geometry(tmp_path, encoding):
    data = RNG.integers(-1024, 3000, (9, 7, 5)).astype(np.int16)
    volume = read_volume(_write(tmp_path / "scan.nrrd", data, encoding=encoding))
    assert volume.voxels.dtype == np.int16 and np.array_equal(volume.voxels, data)
    assert np.allclose(volume.affine, _lps_to_ras(DIRECTIONS, ORIGIN))
    assert np.allclose(volume.spacing, np.linalg.norm(DIRECTIONS, axis=1))
    assert volume.meta["format"] == "nrrd" and volume.meta["space"] == LPS and volume.shape == (9, 7, 5)


def test_detached_header_and_big_endian_float(tmp_path):
    data = RNG.normal(size=(6, 5, 4)).astype(">f8")
    nrrd.write(str(tmp_path / "scan.nhdr"), data, {"space": LPS, "space directions": DIRECTIONS,
                                                     "space origin": ORIGIN, "encoding": "raw"})
    assert (tmp_path / "scan.raw").is_file() and sniff_format(tmp_path / "scan.nhdr") == "nrrd"
    volume = read_volume(tmp_path / "scan.nhdr")
    assert volume.voxels.dtype == np.float32 and np.allclose(volume.voxels, data)


def test_same_array_and_geometry_as_the_nifti_of_the_same_data(tmp_path):
    data = RNG.integers(0, 500, (8, 6, 4)).astype(np.int16)
    spacing, origin = np.array([0.78, 0.78, 6.5]), np.array([10.0, 20.0, 30.0])
    from_nrrd = read_volume(_write(tmp_path / "a.nrrd", data, **{"space directions": np.diag(spacing),
                                                                  "space origin": origin}))
    # The NIfTI ITK would write for it: same voxel order, LPS axes negated to RAS.
    expected = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    expected[:3, 3] = [-10.0, -20.0, 30.0]
    nib.Nifti1Image(data, expected).to_filename(tmp_path / "a.nii.gz")
    from_nifti = read_volume(tmp_path / "a.nii.gz")
    assert np.array_equal(from_nrrd.voxels, from_nifti.voxels)
    assert np.allclose(from_nrrd.affine, from_nifti.affine) and np.allclose(from_nrrd.spacing, spacing)
    for axis in ("axial", "coronal", "sagittal"):
        a, b = slice_volume(from_nrrd, axis, 1), slice_volume(from_nifti, axis, 1)
        assert np.array_equal(a.pixels, b.pixels) and np.allclose(a.spacing, b.spacing)
    rewritten = read_volume(write_nifti(tmp_path / "b.nii.gz", from_nrrd.voxels, from_nrrd.affine))
    assert np.array_equal(rewritten.voxels, data) and np.allclose(rewritten.affine, expected)


def test_ras_space_spacings_only_and_singleton_extra_axis(tmp_path):
    data = RNG.integers(0, 9, (4, 5, 3)).astype(np.uint8)
    ras = read_volume(_write(tmp_path / "ras.nrrd", data, space="right-anterior-superior"))
    assert np.allclose(ras.affine[:3, :3], DIRECTIONS.T) and np.allclose(ras.affine[:3, 3], ORIGIN)
    nrrd.write(str(tmp_path / "plain.nrrd"), data, {"spacings": [0.5, 0.5, 2.0]})
    assert np.allclose(read_volume(tmp_path / "plain.nrrd").affine, np.diag([0.5, 0.5, 2.0, 1.0]))
    nan = np.full(3, np.nan)
    nrrd.write(str(tmp_path / "extra.nrrd"), data[None], {
        "space": LPS, "space directions": np.vstack([nan, DIRECTIONS]), "space origin": ORIGIN,
        "kinds": ["scalar", "domain", "domain", "domain"]})
    extra = read_volume(tmp_path / "extra.nrrd")
    assert extra.shape == (4, 5, 3) and np.array_equal(extra.voxels, data)


def test_single_slice_reads_as_an_image_and_inspect_names_the_volume(tmp_path, capsys):
    data = RNG.integers(0, 200, (6, 5, 1)).astype(np.int16)
    image = read_image(_write(tmp_path / "one.nrrd", data, **{"space directions": np.diag([0.5, 0.6, 3.0])}))
    assert image.shape == (5, 6) and image.meta["format"] == "nrrd"
    assert main(["data", "inspect", str(_write(tmp_path / "vol.nrrd", RNG.normal(size=(4, 4, 3))))]) == 0
    assert "volume 4x4x3 float32" in capsys.readouterr().out


def test_manifest_volumes_in_nrrd_become_slices(tmp_path):
    data = RNG.integers(-1000, 1000, (6, 5, 4)).astype(np.int16)
    labels = np.zeros(data.shape, np.uint8)
    labels[2:4, 1:3, 1:3] = 1
    _write(tmp_path / "v.nrrd", data, **{"space directions": np.diag([1.0, 1.0, 3.0])})
    _write(tmp_path / "v_labels.nrrd", labels, **{"space directions": np.diag([1.0, 1.0, 3.0])})
    (tmp_path / "manifest.json").write_text('{"samples": [], "volumes": [{"image": "v.nrrd", '
                                            '"labels": "v_labels.nrrd", "modality": "ct"}]}')
    dataset = open_dataset(tmp_path, include_volumes=True, foreground_only=True)
    assert [s.index for s in dataset] == [1, 2] and all(s.axis == 2 for s in dataset)
    image, mask, _ = load_sample(dataset[0])
    assert image.hounsfield and mask.sum() == 4


# ---------------------------------------------------------------------------------------------------- bad inputs


def test_missing_and_empty_files(tmp_path):
    raises_for(tmp_path / "nope.nrrd", read_volume, tmp_path / "nope.nrrd", match="does not exist")
    (tmp_path / "empty.nrrd").write_bytes(b"")
    raises_for(tmp_path / "empty.nrrd", read_volume, tmp_path / "empty.nrrd", match="empty")


@pytest.mark.parametrize(("text", "match"), [
    (b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 x\nencoding: raw\n\n", "header cannot be read"),
    (b"NRRD0004\ntype: short\ndimension: 3\nencoding: raw\n\n", "lacks the field(s) sizes"),
    (b"NRRD0004\ntype: short\ndimension: 3\nsizes: -1 2 3\nencoding: raw\n\n", "negative axis length"),
    (b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nencoding: raw\nspace: left-posterior-superior\n"
     b"space directions: (1,0,0) (0,1,0)\n\n", "do not match the 3 axes"),
    (b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nencoding: raw\nspace: left-posterior-superior\n"
     b"space directions: (1,0,0) (1,0,0) (0,0,1)\n\n", "degenerate"),
    (b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n\n\x01\x02", "truncated or corrupt"),
    (b"NRRD0004\n\xff\xfe\x00garbage\n\n", "header cannot be read"),
    (b"not a nrrd at all\n", "header cannot be read"),
])
def test_damaged_headers_and_data(tmp_path, text, match):
    path = tmp_path / "bad.nrrd"
    path.write_bytes(text)
    raises_for(path, read_volume, path, match=match)


def test_truncated_and_corrupt_gzip(tmp_path):
    path = _write(tmp_path / "scan.nrrd", RNG.integers(0, 30000, (20, 20, 10)).astype(np.int16))
    whole = path.read_bytes()
    (tmp_path / "cut.nrrd").write_bytes(whole[: len(whole) - 500])
    raises_for(tmp_path / "cut.nrrd", read_volume, tmp_path / "cut.nrrd", match="truncated or corrupt")
    start = whole.index(b"\n\n") + 2
    damaged = bytearray(whole)
    damaged[start + 40:start + 80] = bytes(40)
    (tmp_path / "bad.nrrd").write_bytes(bytes(damaged))
    raises_for(tmp_path / "bad.nrrd", read_volume, tmp_path / "bad.nrrd", match="truncated or corrupt")
    assert gzip.decompress(whole[start:])  # the intact file's data is a plain gzip stream


def test_not_3d_nan_and_missing_data_file(tmp_path):
    four = tmp_path / "four.nrrd"
    nrrd.write(str(four), RNG.normal(size=(3, 3, 3, 2)))
    raises_for(four, read_volume, four, match="4D NRRD")
    flat = tmp_path / "flat.nrrd"
    nrrd.write(str(flat), RNG.normal(size=(5, 4)))
    raises_for(flat, read_volume, flat, match="2D NRRD")
    nan = np.full(3, np.nan)
    rgb = tmp_path / "rgb.nrrd"
    nrrd.write(str(rgb), RNG.integers(0, 255, (3, 4, 4, 2)).astype(np.uint8), {
        "space": LPS, "space directions": np.vstack([nan, DIRECTIONS]), "kinds": ["RGB-color", "domain", "domain",
                                                                                  "domain"]})
    raises_for(rgb, read_volume, rgb, match="several values per voxel")
    data = RNG.normal(size=(4, 4, 3)).astype(np.float32)
    data[1, 2, 0] = np.nan
    raises_for(tmp_path / "nan.nrrd", read_volume, _write(tmp_path / "nan.nrrd", data), match="NaN")
    nrrd.write(str(tmp_path / "det.nhdr"), RNG.normal(size=(3, 3, 3)), {"encoding": "raw"})
    (tmp_path / "det.raw").unlink()
    raises_for(tmp_path / "det.nhdr", read_volume, tmp_path / "det.nhdr", match="data file")
    for name in ("/etc/passwd", "../secret.raw"):
        header = tmp_path / "elsewhere.nhdr"
        header.write_bytes(b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n"
                           b"data file: " + name.encode() + b"\n\n")
        raises_for(header, read_volume, header, match="outside the header's folder")


def test_voxel_limit_is_checked_from_the_header(tmp_path, monkeypatch):
    path = _write(tmp_path / "big.nrrd", np.zeros((10, 10, 10), np.int16))
    monkeypatch.setenv("EDGE_MEDSAM_MAX_VOXELS", "999")
    raises_for(path, read_nrrd, path, match="over the limit")
