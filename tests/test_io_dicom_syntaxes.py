"""Compressed DICOM: every transfer syntax pydicom has a decoder for decodes with the runtime extra's plugins.

The files are the ones pydicom and pydicom-data ship. Each is compared with its uncompressed twin (exactly for
lossless streams and for the J2KI files, whose twins hold their decoded values; within the loss for lossy ones).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from input_errors import raises_for
from pydicom.data import get_testdata_file
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import (
    JPEG2000,
    AllTransferSyntaxes,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from edge_medsam.io import read_image, read_volume

pytest.importorskip("data_store", reason="pydicom-data (the [real] extra) ships half of these files")

# (transfer syntax, file, uncompressed twin, largest and mean absolute difference allowed)
CASES = [
    (JPEGBaseline8Bit, "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb.dcm", 8, 1.0),
    (JPEGExtended12Bit, "JPGExtended.dcm", "JPEG-LL.dcm", 64, 4.0),  # a lossy 12-bit copy of the same NM image
    (JPEGLosslessSV1, "SC_rgb_jpeg_gdcm.dcm", "SC_rgb.dcm", 0, 0),
    (JPEGLSLossless, "MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm", 0, 0),
    (JPEGLSLossless, "emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm", 0, 0),
    (JPEGLSNearLossless, "SC_rgb_jls_lossy_line.dcm", "SC_rgb.dcm", 2, 1.0),  # NEAR=2: no error larger than 2
    (JPEG2000Lossless, "MR_small_jp2klossless.dcm", "MR_small.dcm", 0, 0),
    (JPEG2000Lossless, "emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm", 0, 0),
    (JPEG2000Lossless, "US1_J2KR.dcm", "US1_UNCR.dcm", 0, 0),  # YBR_RCT colour
    (JPEG2000, "693_J2KI.dcm", "693_UNCI.dcm", 0, 0),  # CT in Hounsfield units
    (JPEG2000, "US1_J2KI.dcm", "US1_UNCI.dcm", 0, 0),  # YBR_ICT colour
    (RLELossless, "MR_small_RLE.dcm", "MR_small.dcm", 0, 0),
    (RLELossless, "emri_small_RLE.dcm", "emri_small.dcm", 0, 0),
    (RLELossless, "SC_rgb_rle_16bit.dcm", "SC_rgb_16bit.dcm", 0, 0),
    (RLELossless, "OBXXXX1A_rle.dcm", "OBXXXX1A.dcm", 0, 0),  # palette colour ultrasound
    (ExplicitVRBigEndian, "MR_small_bigendian.dcm", "MR_small.dcm", 0, 0),
]
# Files without a twin: compared with pydicom's own decoding (none of them sets a rescale or MONOCHROME1).
ALONE = [
    (JPEGLosslessSV1, "JPGLosslessP14SV1_1s_1f_8b.dcm"),  # ultrasound, the most common lossless syntax
    (JPEGLSNearLossless, "JPEGLSNearLossless_16.dcm"),
    (DeflatedExplicitVRLittleEndian, "image_dfl.dcm"),
]


def pixels(path: str | Path) -> np.ndarray:
    """What the reader gives: an image's pixels, or a multi-frame file's voxels."""
    frames = pydicom.dcmread(path, stop_before_pixels=True).get("NumberOfFrames") or 1
    return read_volume(path).voxels if int(frames) > 1 else read_image(path).pixels


@pytest.mark.parametrize(("syntax", "name", "twin", "largest", "mean"), CASES, ids=[c[1] for c in CASES])
def test_compressed_file_decodes_to_its_uncompressed_twin(syntax, name, twin, largest, mean):
    path = get_testdata_file(name)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    got, expected = pixels(path), pixels(get_testdata_file(twin))
    assert got.shape == expected.shape
    error = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    assert error.max() <= largest and error.mean() <= mean, (error.max(), error.mean())


@pytest.mark.parametrize(("syntax", "name"), ALONE, ids=[c[1] for c in ALONE])
def test_compressed_file_decodes_as_pydicom_decodes_it(syntax, name):
    path = get_testdata_file(name)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(pixels(path), pydicom.dcmread(path).pixel_array)


def test_jpeg_lossless_process_14(tmp_path):
    """No shipped file uses 1.2.840.10008.1.2.4.57; a selection-value-1 stream is one of its streams."""
    ds = pydicom.dcmread(get_testdata_file("JPEG-LL.dcm"))
    ds.file_meta.TransferSyntaxUID = JPEGLossless
    ds.save_as(tmp_path / "p14.dcm")
    np.testing.assert_array_equal(read_image(tmp_path / "p14.dcm").pixels, pixel_array(get_testdata_file("JPEG-LL.dcm")))


def test_every_syntax_pydicom_decodes_has_a_decoder_installed():
    """HTJ2K is covered here only: no package ships an HTJ2K file and none installed here can write one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decodable = []
        for syntax in AllTransferSyntaxes:
            try:
                decodable.append((syntax, get_decoder(syntax)))
            except NotImplementedError:  # video (MPEG, HEVC), JPEG 2000 Part 2, JPIP: no decoder in pydicom
                continue
    missing = [syntax.name for syntax, decoder in decodable if not decoder.is_available]
    assert len(decodable) >= 16 and not missing, missing


def test_damaged_stream_names_the_syntax():
    path = Path(get_testdata_file("JPEG-lossy.dcm"))  # libjpeg: "a misplaced marker segment was found"
    raises_for(path, read_image, path, match="JPEG Extended (Process 2 and 4) stream is damaged")


def test_syntax_without_a_decoder_says_how_to_convert(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("JPEG2000.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.93"  # JPEG 2000 Part 2: pydicom has no decoder
    ds.save_as(tmp_path / "part2.dcm")
    raises_for(tmp_path / "part2.dcm", read_image, tmp_path / "part2.dcm", match="pydicom has no decoder")
