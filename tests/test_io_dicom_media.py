"""DICOM as hospitals send it: gzip-compressed files, DICOMDIR media, study folders holding several series."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from input_errors import raises_for
from pydicom.fileset import FileSet
from test_io_dicom import image_dataset, oblique_volume, save
from test_runtime_cli_dicom import predict

from edge_medsam.io import read_image, read_volume, write_dicom_series
from edge_medsam.runtime.bundle import DEMO_BUNDLE

RNG = np.random.default_rng(11)
needs_bundle = pytest.mark.skipif(not DEMO_BUNDLE.is_dir(), reason="the demo bundle is not shipped in this checkout")


def gzipped(source: Path, target: Path) -> Path:
    target.write_bytes(gzip.compress(source.read_bytes(), mtime=0))
    return target


def two_series(folder: Path) -> tuple[list[Path], list[Path]]:
    """A CT series (number 1, 3 slices) and an MR series (number 2, 2 slices), written to ``folder``/ct and /mr."""
    ct = write_dicom_series(folder / "ct", oblique_volume((40, 36, 3)), series_description="abdomen")
    mr = write_dicom_series(folder / "mr", oblique_volume((40, 36, 2)), "MR", series_description="T1 axial")
    for path in mr:
        ds = pydicom.dcmread(path)
        ds.SeriesNumber = 2
        ds.save_as(path)
    return ct, mr


def uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def assert_lists(line: str, ct: list[Path], mr: list[Path]) -> None:
    """The error names both series with number, modality, description and image count, and the flag to pick one."""
    assert f"{uid(ct[0])} (number 1, CT 'abdomen', 3 images)" in line, line
    assert f"{uid(mr[0])} (number 2, MR 'T1 axial', 2 images)" in line, line
    assert "holds 2 series" in line and "--series" in line and "\n" not in line


def dicomdir(media: Path, *paths: Path) -> Path:
    fileset = FileSet()
    for path in paths:
        fileset.add(path)
    fileset.write(media)
    return media


# --- gzip ----------------------------------------------------------------------------------------------------------

def test_gzip_dicom_reads_as_the_plain_file(tmp_path):
    plain = save(image_dataset(RNG.integers(0, 4000, (30, 34), dtype=np.uint16), RescaleSlope="1",
                               RescaleIntercept="-1024", PixelSpacing=[0.5, 0.6]), tmp_path / "ct.dcm")
    for packed in (gzipped(plain, tmp_path / "ct.dcm.gz"), gzipped(plain, tmp_path / "IM0001")):  # by content
        image, twin = read_image(packed), read_image(plain)
        assert np.array_equal(image.pixels, twin.pixels) and image.spacing == twin.spacing and image.hounsfield
        assert image.meta == twin.meta and read_volume(packed).shape == (34, 30, 1)
    series = write_dicom_series(tmp_path / "series", oblique_volume((8, 7, 4)))
    packed = tmp_path / "packed"
    packed.mkdir()
    for path in series:
        gzipped(path, packed / f"{path.name}.gz")
    volume, twin = read_volume(packed), read_volume(tmp_path / "series")
    assert np.array_equal(volume.voxels, twin.voxels) and np.allclose(volume.affine, twin.affine)


def test_gzip_of_something_else_is_a_one_line_error(tmp_path):
    other = tmp_path / "scan.dcm.gz"
    other.write_bytes(gzip.compress(RNG.bytes(3000)))
    for read in (read_image, read_volume):
        error = raises_for(other, read, other, match="gzip-compressed data that is neither DICOM nor NIfTI")
        assert "\n" not in str(error)
    plain = save(image_dataset(RNG.integers(0, 4000, (30, 34), dtype=np.uint16)), tmp_path / "ct.dcm")
    cut = tmp_path / "cut.dcm.gz"
    cut.write_bytes(gzip.compress(plain.read_bytes())[:-400])
    raises_for(cut, read_image, cut, match="the gzip data is truncated or corrupt")


# --- DICOMDIR ------------------------------------------------------------------------------------------------------

def test_dicomdir_media_reads_the_series_its_records_reference(tmp_path):
    ct, mr = two_series(tmp_path)
    media = dicomdir(tmp_path / "media", *ct)
    shutil.copy(mr[0], media / "stray.dcm")  # in the folder but not in the DICOMDIR: not read
    volume, twin = read_volume(media), read_volume(tmp_path / "ct")
    assert np.array_equal(volume.voxels, twin.voxels) and np.allclose(volume.affine, twin.affine)
    assert volume.meta["series_instance_uid"] == uid(ct[0]) and all(f.startswith("PT") for f in volume.meta["files"])
    assert read_volume(media / "DICOMDIR").shape == twin.shape


def test_dicomdir_that_is_not_one_is_a_one_line_error(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(write_dicom_series(tmp_path / "ct", oblique_volume((8, 7, 2)))[0], media / "DICOMDIR")
    raises_for(media / "DICOMDIR", read_volume, media, match="the DICOMDIR cannot be read")


# --- several series ------------------------------------------------------------------------------------------------

def test_a_folder_of_two_series_lists_them_and_series_picks_each(tmp_path):
    ct, mr = two_series(tmp_path)
    study = tmp_path / "study"
    study.mkdir()
    for path in (*ct, *mr):
        shutil.copy(path, study / f"{path.parent.name}_{path.name}")
    assert_lists(str(raises_for(study, read_volume, study)), ct, mr)
    assert read_volume(study, series=uid(ct[0])).shape == (40, 36, 3)
    assert read_volume(study, series="2").modality == "mr"
    raises_for(study, read_volume, study, series="7", match="holds no series '7'; it holds 2: ")
    archive = Path(shutil.make_archive(str(tmp_path / "study"), "zip", study))
    assert_lists(str(raises_for(archive, read_volume, archive)), ct, mr)
    assert read_volume(archive, series="1").shape == (40, 36, 3)


@needs_bundle
@pytest.mark.parametrize("layout", ["folder", "dicomdir"])
def test_predict_lists_two_series_and_series_picks_each(layout, tmp_path, capsys):
    ct, mr = two_series(tmp_path)
    if layout == "dicomdir":
        study = dicomdir(tmp_path / "media", *ct, *mr)
    else:
        study = tmp_path / "study"
        study.mkdir()
        for path in (*ct, *mr):
            shutil.copy(path, study / f"{path.parent.name}_{path.name}")
    code, (record,), err = predict(capsys, tmp_path / "none", str(study))
    assert code == 1 and record["status"] == "error" and err[0] == f"edge-medsam: error: {record['error']}"
    assert_lists(record["error"], ct, mr)
    for pick, shape, modality in ((uid(ct[0]), [40, 36, 3], "CT"), ("2", [40, 36, 2], "MR")):
        out = tmp_path / f"out-{modality}"
        code, (record,), err = predict(capsys, out, str(study), "--series", pick)
        assert code == 0 and err == [] and record["shape"] == shape and record["format"] == "dicom-seg"
        assert str(pydicom.dcmread(record["output"]).ReferencedSeriesSequence[0].SeriesInstanceUID) == uid(
            {"CT": ct, "MR": mr}[modality][0])


@needs_bundle
def test_predict_takes_a_study_of_series_folders_as_a_batch_or_searches_it_for_the_picked_one(tmp_path, capsys):
    two_series(tmp_path / "study")
    code, records, err = predict(capsys, tmp_path / "all", str(tmp_path / "study"))
    assert code == 0 and err == [] and [r["shape"][2] for r in records] == [3, 2]
    code, (record,), err = predict(capsys, tmp_path / "mr", str(tmp_path / "study"), "--series", "2")
    assert code == 0 and err == [] and record["shape"] == [40, 36, 2] and record["input"] == str(tmp_path / "study")
