"""DICOM: single images (HU, MONOCHROME1, VOI, colour), multi-frame, series folders and zips, the series writer."""

from __future__ import annotations

import shutil
import stat
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from input_errors import raises_for
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import convert_color_space
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    UltrasoundImageStorage,
    generate_uid,
)

from edge_medsam.io import Volume, read_image, read_volume, write_dicom_series
from edge_medsam.io.dicom_series import read_dicom_series
from edge_medsam.modalities import normalise_intensity

RNG = np.random.default_rng(3)


def image_dataset(pixels: np.ndarray, *, modality: str = "CT", sop_class: str = CTImageStorage,
                  photometric: str | None = None, bits_stored: int | None = None, **attrs) -> Dataset:
    """A minimal valid DICOM image holding ``pixels`` (rows, cols[, 3]) or (frames, rows, cols)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
    ds.Modality, ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = modality, "P1", generate_uid(), generate_uid()
    colour = pixels.ndim == 3 and pixels.shape[-1] == 3 and photometric != "MONOCHROME2"
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric or ("RGB" if colour else "MONOCHROME2")
    if colour:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    return ds


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def oblique_volume(shape=(12, 10, 6), dtype=np.float32) -> Volume:
    voxels = RNG.integers(-1024, 3000, shape).astype(dtype)
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-0.75, -0.6, 2.5])
    affine[:3, 3] = [120.5, -80.25, 33.0]
    return Volume(voxels=voxels, affine=affine, window=(40.0, 400.0))


# --- single images -------------------------------------------------------------------------------------------------

def test_ct_slice_with_rescale_gives_exact_hounsfield_units(tmp_path):
    stored = RNG.integers(0, 4095, (20, 24), dtype=np.uint16)
    ds = image_dataset(stored, bits_stored=12, RescaleSlope="1", RescaleIntercept="-1024", PixelSpacing=[0.7, 0.8],
                       WindowCenter=["40", "-600"], WindowWidth=["400", "1500"])
    image = read_image(save(ds, tmp_path / "ct.dcm"))
    assert image.pixels.dtype == np.float32 and np.array_equal(image.pixels, stored.astype(np.float32) - 1024)
    assert image.hounsfield and image.modality == "ct" and image.spacing == (0.7, 0.8)
    assert image.window == (40.0, 400.0) and image.meta["window_source"] == "window"
    shown = normalise_intensity(image.pixels, image.modality, hounsfield=image.hounsfield, window=image.window)
    assert shown.shape == (20, 24, 3) and 0.0 <= shown.min() <= shown.max() <= 1.0


def test_fractional_slope_and_signed_pixels(tmp_path):
    stored = RNG.integers(-2000, 2000, (8, 9), dtype=np.int16)
    ds = image_dataset(stored, RescaleSlope="0.5", RescaleIntercept="-10")
    image = read_image(save(ds, tmp_path / "signed.dcm"))
    assert np.array_equal(image.pixels, stored.astype(np.float32) * 0.5 - 10)


def test_identity_rescale_keeps_the_integer_type(tmp_path):
    stored = RNG.integers(0, 1000, (6, 7), dtype=np.uint16)
    image = read_image(save(image_dataset(stored, modality="MR", RescaleSlope="1", RescaleIntercept="0"),
                            tmp_path / "mr.dcm"))
    assert image.pixels.dtype == np.uint16 and not image.hounsfield and image.modality == "mr"


def test_monochrome1_is_inverted_with_its_window(tmp_path):
    stored = RNG.integers(0, 4095, (10, 12), dtype=np.uint16)
    ds = image_dataset(stored, modality="DX", sop_class=DigitalXRayImageStorageForPresentation,
                       photometric="MONOCHROME1", bits_stored=12, WindowCenter="1000", WindowWidth="500",
                       ImagerPixelSpacing=[0.15, 0.15])
    image = read_image(save(ds, tmp_path / "cxr.dcm"))
    assert np.array_equal(image.pixels, 4095 - stored) and image.meta["inverted"]
    assert image.window == (3095.0, 500.0) and image.modality == "xray" and image.spacing == (0.15, 0.15)


def test_voi_lut_sequence_gives_the_window_it_spans(tmp_path):
    item = Dataset()
    item.LUTDescriptor = [2048, 100, 12]
    item.add_new(0x00283006, "US", list(range(2048)))  # LUT Data, VR US (it may also be OW)
    stored = RNG.integers(0, 4095, (6, 6), dtype=np.uint16)
    ds = image_dataset(stored, modality="MG", bits_stored=12, VOILUTSequence=Sequence([item]))
    image = read_image(save(ds, tmp_path / "mammo.dcm"))
    assert image.window == (1124.0, 2048.0) and image.meta["window_source"] == "voi_lut"
    assert image.modality == "mammography"


def test_rgb_and_ybr_ultrasound(tmp_path):
    rgb = np.tile(np.linspace(0, 250, 16, dtype=np.uint8)[None, :, None], (12, 1, 3))
    rgb[..., 1] = 100
    image = read_image(save(image_dataset(rgb, modality="US", sop_class=UltrasoundImageStorage),
                            tmp_path / "us.dcm"))
    assert np.array_equal(image.pixels, rgb) and image.modality == "ultrasound" and not image.hounsfield
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    image = read_image(save(image_dataset(ybr, modality="US", sop_class=UltrasoundImageStorage,
                                          photometric="YBR_FULL"), tmp_path / "ybr.dcm"))
    assert image.pixels.shape == (12, 16, 3) and np.abs(image.pixels.astype(int) - rgb).max() <= 2


def test_palette_colour_image_is_expanded_to_rgb(tmp_path):
    indices = np.array([[0, 1], [2, 3]], np.uint8).repeat(3, axis=0).repeat(3, axis=1)
    ds = image_dataset(indices, modality="US", sop_class=UltrasoundImageStorage, photometric="PALETTE COLOR")
    lut = np.zeros((3, 256), np.uint16)
    lut[0, 1] = lut[1, 2] = lut[2, 3] = 255
    for channel, tag in enumerate((0x00281201, 0x00281202, 0x00281203)):
        ds.add_new(tag - 0x100, "US", [256, 0, 8])  # each LUT descriptor sits 0x100 before its data
        ds.add_new(tag, "OW", lut[channel].astype("<u2").tobytes())
    image = read_image(save(ds, tmp_path / "palette.dcm"))
    assert image.pixels.dtype == np.uint8 and image.pixels.shape == (6, 6, 3)
    assert image.pixels[0, 3].tolist() == [255, 0, 0] and image.pixels[3, 3].tolist() == [0, 0, 255]


def test_file_without_preamble_named_dcm(tmp_path):
    stored = RNG.integers(0, 100, (5, 5), dtype=np.uint16)
    ds = image_dataset(stored)
    del ds.file_meta
    path = tmp_path / "raw.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM"
    assert np.array_equal(read_image(path).pixels, stored)


# --- multi-frame ---------------------------------------------------------------------------------------------------

def enhanced_ct(stored: np.ndarray, positions: list[float]) -> Dataset:
    """An Enhanced CT multi-frame whose frames lie at ``positions`` (z, mm) in the order given."""
    ds = image_dataset(stored, sop_class=EnhancedCTImageStorage, NumberOfFrames=len(stored))
    measures, orientation, transform = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [0.5, 0.6], "2"
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = "2", "-1000", "HU"
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for z in positions:
        position, frame = Dataset(), Dataset()
        position.ImagePositionPatient = [-10.0, 20.0, z]
        frame.PlanePositionSequence = Sequence([position])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    return ds


def test_enhanced_multi_frame_is_sorted_rescaled_and_placed(tmp_path):
    stored = RNG.integers(0, 2000, (4, 6, 5), dtype=np.uint16)
    positions = [4.0, 0.0, 6.0, 2.0]
    path = save(enhanced_ct(stored, positions), tmp_path / "enhanced.dcm")
    volume = read_volume(path)
    order = np.argsort(positions)
    assert volume.meta["frame_order"] == order.tolist()
    expected = (stored[order].astype(np.float32) * 2 - 1000).transpose(2, 1, 0)
    assert volume.voxels.dtype == np.float32 and np.array_equal(volume.voxels, expected)
    assert np.allclose(volume.affine, [[-0.6, 0, 0, 10.0], [0, -0.5, 0, -20.0], [0, 0, 2.0, 0.0], [0, 0, 0, 1]])
    assert volume.hounsfield and volume.shape == (5, 6, 4) and "PixelData" not in volume.source[0]
    raises_for(path, read_image, path, match="multi-frame")


def test_multi_frame_without_geometry_keeps_frame_order(tmp_path):
    cine = RNG.integers(0, 255, (3, 8, 7), dtype=np.uint8)
    path = save(image_dataset(cine, modality="US", sop_class=UltrasoundImageStorage, NumberOfFrames=3),
                tmp_path / "cine.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        volume = read_volume(path)
    assert np.array_equal(volume.voxels, cine.transpose(2, 1, 0)) and volume.meta["geometry"] == "assumed"


# --- series --------------------------------------------------------------------------------------------------------

def test_shuffled_series_folder_is_sorted_with_spacing_and_ras_affine(tmp_path):
    volume = oblique_volume()
    written = write_dicom_series(tmp_path / "written", volume)
    shuffled = tmp_path / "shuffled" / "nested"
    shuffled.mkdir(parents=True)
    for n, i in enumerate(RNG.permutation(len(written))):
        shutil.copy(written[i], shuffled / f"{n:08x}")  # hospital exports often have no extension
    (shuffled / "notes.txt").write_text("not DICOM")
    (shuffled / "thumb.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    read = read_volume(tmp_path / "shuffled")
    assert np.array_equal(read.voxels, volume.voxels)
    assert np.allclose(read.affine, volume.affine, atol=1e-6)
    assert np.allclose(read.spacing, (0.75, 0.6, 2.5))
    assert read.hounsfield and read.modality == "ct" and read.window == (40.0, 400.0)
    uids = [ds.SOPInstanceUID for ds in read.source]
    assert uids == [pydicom.dcmread(p).SOPInstanceUID for p in written]


def test_series_without_positions_falls_back_to_instance_numbers(tmp_path):
    volume = oblique_volume((6, 5, 4))
    folder = tmp_path / "series"
    for path in write_dicom_series(folder, volume):
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        ds.save_as(folder / f"z{99 - int(ds.InstanceNumber)}.dcm")
        path.unlink()
    read = read_volume(folder)
    assert np.array_equal(read.voxels, volume.voxels) and read.meta["geometry"] == "assumed"
    assert np.allclose(read.spacing, (0.75, 0.6, 2.5))


def test_several_series_in_one_folder_are_listed_and_one_is_picked(tmp_path):
    write_dicom_series(tmp_path / "mixed" / "a", oblique_volume((6, 5, 5)))
    small = write_dicom_series(tmp_path / "mixed" / "b", oblique_volume((6, 5, 2)), "MR")
    raises_for(tmp_path / "mixed", read_volume, tmp_path / "mixed", match="holds 2 series")
    chosen = read_dicom_series(tmp_path / "mixed", series=pydicom.dcmread(small[0]).SeriesInstanceUID)
    assert chosen.shape == (6, 5, 2) and chosen.modality == "mr" and not chosen.hounsfield
    assert len(chosen.meta["other_series"]) == 1
    raises_for(tmp_path / "mixed", read_volume, tmp_path / "mixed", series="1", match="2 series have the number 1")


def test_series_errors(tmp_path):
    paths = write_dicom_series(tmp_path / "sizes", oblique_volume((6, 5, 3)))
    odd = pydicom.dcmread(paths[0])
    odd.Rows, odd.Columns = 4, 4
    odd.PixelData = np.zeros((4, 4), np.int16).tobytes()
    odd.save_as(paths[0])
    raises_for(tmp_path / "sizes", read_volume, tmp_path / "sizes", match="mixes image sizes")
    paths = write_dicom_series(tmp_path / "dupes", oblique_volume((6, 5, 3)))
    twin = pydicom.dcmread(paths[1])
    twin.SOPInstanceUID = generate_uid()
    twin.save_as(paths[1].with_name("twin.dcm"))
    raises_for(tmp_path / "dupes", read_volume, tmp_path / "dupes", match="share a slice position")
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "a.txt").write_text("x")
    raises_for(tmp_path / "none", read_volume, tmp_path / "none", match="no DICOM images")


def test_truncated_slice_in_a_series_names_the_file(tmp_path):
    paths = write_dicom_series(tmp_path / "cut", oblique_volume((16, 16, 3)))
    paths[2].write_bytes(paths[2].read_bytes()[:-100])
    raises_for(paths[2], read_volume, tmp_path / "cut", match="cannot be decoded")


def test_series_over_the_voxel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    write_dicom_series(tmp_path / "big", oblique_volume((10, 10, 4)))
    monkeypatch.setenv("EDGE_MEDSAM_MAX_VOXELS", "300")
    monkeypatch.setattr(Dataset, "pixel_array", property(lambda self: pytest.fail("decoded before the check")))
    raises_for(tmp_path / "big", read_volume, tmp_path / "big", match="over the limit")


# --- zips ----------------------------------------------------------------------------------------------------------

def test_zip_of_a_series(tmp_path):
    volume = oblique_volume((6, 5, 3))
    paths = write_dicom_series(tmp_path / "series", volume)
    with zipfile.ZipFile(tmp_path / "series.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for p in paths:
            zf.write(p, f"export/CT/{p.name}")
        zf.writestr("README.txt", "exported")
    read = read_volume(tmp_path / "series.zip")
    assert np.array_equal(read.voxels, volume.voxels) and read.path == tmp_path / "series.zip"


def test_unsafe_and_oversized_zips(tmp_path, monkeypatch):
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("../../escape.dcm", b"x" * 10)
    raises_for(tmp_path / "evil.zip", read_volume, tmp_path / "evil.zip", match="outside the archive")
    assert not (tmp_path.parent / "escape.dcm").exists()
    link = zipfile.ZipInfo("link.dcm")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        zf.writestr(link, "/etc/passwd")
    raises_for(tmp_path / "link.zip", read_volume, tmp_path / "link.zip", match="symbolic link")
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", b"\0" * 2_000_000)
    monkeypatch.setenv("EDGE_MEDSAM_MAX_VOXELS", "1000")
    raises_for(tmp_path / "bomb.zip", read_volume, tmp_path / "bomb.zip", match="expands to more than")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04" + b"\0" * 50)
    raises_for(tmp_path / "broken.zip", read_volume, tmp_path / "broken.zip")


# --- bad single files ----------------------------------------------------------------------------------------------

def test_truncated_and_non_image_dicom(tmp_path):
    path = save(image_dataset(RNG.integers(0, 100, (32, 32), dtype=np.uint16)), tmp_path / "ct.dcm")
    (tmp_path / "cut.dcm").write_bytes(path.read_bytes()[:-300])
    raises_for(tmp_path / "cut.dcm", read_image, tmp_path / "cut.dcm", match="cannot be decoded")
    (tmp_path / "head.dcm").write_bytes(path.read_bytes()[:200])
    raises_for(tmp_path / "head.dcm", read_image, tmp_path / "head.dcm", match="not a readable image")
    report = image_dataset(np.zeros((2, 2), np.uint16), modality="SR")
    del report.PixelData
    raises_for(tmp_path / "sr.dcm", read_image, save(report, tmp_path / "sr.dcm"), match="Structured Report")


def test_nan_in_float_pixel_data_is_rejected(tmp_path):
    ds = image_dataset(np.zeros((4, 4), np.uint16), modality="MR")
    del ds.PixelData
    values = np.ones((4, 4), np.float32)
    values[1, 1] = np.nan
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    del ds.PixelRepresentation
    ds.FloatPixelData = values.tobytes()
    raises_for(tmp_path / "nan.dcm", read_image, save(ds, tmp_path / "nan.dcm"), match="NaN")


# --- writer --------------------------------------------------------------------------------------------------------

def test_written_series_is_valid_ct(tmp_path):
    volume = oblique_volume((6, 5, 3))
    paths = write_dicom_series(tmp_path / "out", volume)
    datasets = [pydicom.dcmread(p) for p in paths]
    first = datasets[0]
    assert first.SOPClassUID == CTImageStorage and first.Modality == "CT" and first.RescaleType == "HU"
    assert first.PixelRepresentation == 1 and first.BitsAllocated == 16 and first.file_meta.TransferSyntaxUID
    assert len({ds.SOPInstanceUID for ds in datasets}) == 3 and len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert [int(ds.InstanceNumber) for ds in datasets] == [1, 2, 3]
    assert [float(v) for v in first.PixelSpacing] == [0.6, 0.75] and float(first.SliceThickness) == 2.5
    assert datasets[1].pixel_array.dtype == np.int16


def test_writer_scales_fractional_values_and_writes_mr(tmp_path):
    volume = Volume(voxels=RNG.random((5, 4, 2)).astype(np.float32) * 1000, affine=np.diag([-1.0, -1.0, 3.0, 1.0]))
    paths = write_dicom_series(tmp_path / "mr", volume, "MR")
    read = read_volume(tmp_path / "mr")
    slope = float(pydicom.dcmread(paths[0]).RescaleSlope)
    assert np.abs(read.voxels - volume.voxels).max() <= slope / 2 + 1e-3 and read.modality == "mr"


def test_writer_refuses_what_dicom_cannot_hold(tmp_path):
    sheared = Volume(voxels=np.zeros((3, 3, 2), np.int16), affine=np.array(
        [[1.0, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    raises_for(tmp_path / "s", write_dicom_series, tmp_path / "s", sheared, match="perpendicular")
    plain = Volume(voxels=np.zeros((3, 3, 2), np.int16), affine=np.eye(4))
    raises_for(tmp_path / "p", write_dicom_series, tmp_path / "p", plain, "PET")
