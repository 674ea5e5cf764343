"""Malformed DICOM header values: the element is named, and the file is read without it where the pixels allow."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from input_errors import raises_for
from pydicom.datadict import dictionary_VR, tag_for_keyword
from test_io_dicom import enhanced_ct, image_dataset, save

from edge_medsam.io import Volume, read_image, read_volume, write_dicom_series

RNG = np.random.default_rng(5)


def malformed(path: Path, keyword: str, value: bytes) -> Path:
    """Rewrite the element's bytes in the saved file, unchecked (as a faulty writer would).

    Inside a sequence the new value must keep the old length: pydicom writes sequences with explicit lengths.
    """
    tag = tag_for_keyword(keyword)
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + dictionary_VR(tag).encode()
    data = path.read_bytes()
    start = data.index(head)
    end = start + 8 + struct.unpack("<H", data[start + 6:start + 8])[0]
    path.write_bytes(data[:start] + head + struct.pack("<H", len(value)) + value + data[end:])
    return path


@pytest.mark.parametrize(("keyword", "value", "problem"), [
    ("SeriesNumber", b"AB", "SeriesNumber (0020,0011) holds 'AB', not an integer"),
    ("PixelSpacing", b"0.5\\x ", "PixelSpacing (0028,0030) holds '0.5\\x', not a decimal number"),
    ("WindowCenter", b"c ", "WindowCenter (0028,1050) holds 'c', not a decimal number"),
    ("AcquisitionMatrix", b"\x01\x00\x02", "AcquisitionMatrix (0018,1310) cannot be read as US"),
])
def test_element_the_pixels_do_not_need_is_named_and_dropped(tmp_path, keyword, value, problem):
    stored = RNG.integers(0, 4000, (6, 7), dtype=np.uint16)
    ds = image_dataset(stored, RescaleSlope="1", RescaleIntercept="-1024", SeriesNumber=1, PixelSpacing=[1, 1],
                       WindowCenter="40", WindowWidth="400", AcquisitionMatrix=[0, 6, 7, 0])
    path = malformed(save(ds, tmp_path / "odd.dcm"), keyword, value)
    with pytest.warns(UserWarning, match="read without it") as caught:
        image = read_image(path)
    assert np.array_equal(image.pixels, stored.astype(np.float32) - 1024)
    assert keyword not in image.source[0]
    assert image.spacing == (None if keyword == "PixelSpacing" else (1.0, 1.0))
    assert image.window == (None if keyword == "WindowCenter" else (40.0, 400.0))
    (line,) = [str(w.message) for w in caught]
    assert line.startswith(f"{path}: ") and problem in line


@pytest.mark.parametrize(("keyword", "value"), [("RescaleSlope", b"s "), ("NumberOfFrames", b"4A"),
                                                 ("Rows", b"\x06\x00\x00")])
def test_element_the_pixels_need_is_named_in_the_error(tmp_path, keyword, value):
    ds = image_dataset(RNG.integers(0, 4000, (6, 7), dtype=np.uint16), RescaleSlope="1", RescaleIntercept="0",
                       NumberOfFrames=1)
    path = malformed(save(ds, tmp_path / "bad.dcm"), keyword, value)
    for read in (read_image, read_volume):
        err = raises_for(path, read, path, match=f"the header element {keyword} ")
        assert "cannot be read without it" in str(err) and "dcmodify" in str(err)


def test_malformed_value_in_a_functional_group(tmp_path):
    path = save(enhanced_ct(RNG.integers(0, 2000, (3, 6, 5), dtype=np.uint16), [0.0, 2.0, 4.0]),
                tmp_path / "enhanced.dcm")
    malformed(path, "SliceThickness", b"x ")
    with pytest.warns(UserWarning, match=r"SliceThickness \(0018,0050\) in SharedFunctionalGroupsSequence"):
        volume = read_volume(path)
    assert volume.shape == (5, 6, 3) and np.isclose(volume.spacing[2], 2.0)  # the positions give the spacing
    malformed(path, "RescaleSlope", b"2x")
    raises_for(path, read_volume, path, match="RescaleSlope (0028,1053) in SharedFunctionalGroupsSequence")


def test_series_with_a_malformed_slice_header_is_read_with_one_warning(tmp_path):
    volume = Volume(RNG.integers(-1000, 1000, (8, 9, 4)).astype(np.float32), np.diag([0.7, 0.7, 2.5, 1.0]))
    files = write_dicom_series(tmp_path / "series", volume)
    malformed(files[2], "InstanceNumber", b"x1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read = read_volume(tmp_path / "series")
    assert np.array_equal(read.voxels, volume.voxels)
    assert [str(w.message) for w in caught] == [
        f"{files[2]}: the header element InstanceNumber (0020,0013) holds 'x1', not an integer; read without it"]
