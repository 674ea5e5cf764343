"""A corpus of bad (and valid-but-odd) inputs, made by code into a folder: no committed binaries.

Each ``Kind`` writes one input (a file, a folder, or a good image plus bad prompt arguments) and says how the
package must take it: ``valid`` kinds (16-bit, RGBA, palette, CMYK, float, one-slice volumes, ...) are
segmented; every other kind is refused with an InputError that names the file and a fix. ``reader`` names
the Python API that must refuse it ("image", "volume", "npz", "mask", "predictor" for files that read but
cannot be segmented, or "prompt"); ``args`` are extra
``edge-medsam predict`` arguments (the bad prompt kinds); ``predict`` holds the Predictor keywords of a bad
prompt (``modality``/``window`` go to ``set_image`` or the VolumeSegmenter, ``boxes3d`` to
``VolumeSegmenter.segment``, the rest to ``Predictor.predict``). Prompt kinds without ``args`` exist only in
the Python API, those without ``predict`` only on the command line.
"""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import tifffile
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    SegmentationStorage,
    generate_uid,
)

from edge_medsam.io import Volume, write_dicom_series

GOOD_SHAPE = (80, 100)  # (H, W) of the good picture every batch and prompt kind uses
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OVER_LIMIT = 40_000  # pixels per side: over the readers' default 16384 limit


@dataclass(frozen=True)
class Kind:
    """One kind of input: how to make it and what the package must do with it."""

    name: str
    make: Callable[[Path], Path]
    reader: str
    valid: bool = False
    args: tuple[str, ...] = ()
    predict: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def good_image() -> np.ndarray:
    """An (H, W, 3) uint8 picture with a bright disc: something a model can segment."""
    yy, xx = np.mgrid[: GOOD_SHAPE[0], : GOOD_SHAPE[1]]
    disc = (yy - 40) ** 2 + (xx - 50) ** 2 < 20**2
    noise = np.random.default_rng(0).normal(0, 8, disc.shape)
    grey = np.clip(60 + 120 * disc + noise, 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def write_good_png(path: Path) -> Path:
    """Write the good picture as PNG."""
    Image.fromarray(good_image()).save(path)
    return path


# --- helpers that write or damage files ----------------------------------------------------------------------------
def _cut(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _flip_middle(path: Path, count: int = 64) -> Path:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, min(middle + count, len(data))):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height grey pixels but whose data holds one row."""
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    row = zlib.compress(b"\0" * (min(width, 4096) + 1))
    return PNG_SIGNATURE + header + _png_chunk(b"IDAT", row) + _png_chunk(b"IEND", b"")


def _tiff_claiming(width: int, height: int) -> bytes:
    """A little-endian TIFF whose one strip is a single byte but whose IFD claims width x height pixels."""
    count = 9
    data_offset = 8 + 2 + 12 * count + 4
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, data_offset),
               (277, 3, 1), (278, 4, height), (279, 4, 1)]
    ifd = struct.pack("<H", count) + b"".join(struct.pack("<HHII", tag, kind, 1, value) for tag, kind, value in entries)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\0"


def _picture(path: Path, pixels: np.ndarray, mode: str | None = None, **save: Any) -> Path:
    Image.fromarray(pixels, mode=mode).save(path, **save) if mode else Image.fromarray(pixels).save(path, **save)
    return path


def _dicom(pixels: np.ndarray, modality: str = "CT", **attrs: Any) -> Dataset:
    """A minimal DICOM image dataset holding ``pixels`` ((rows, cols) or (frames, rows, cols), grey)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.Modality, ds.PatientID = modality, "P1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.BitsAllocated = ds.BitsStored = pixels.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def _save_dicom(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def _ct_slice(path: Path, shape: tuple[int, int] = (48, 40), **attrs: Any) -> Path:
    stored = _rng(path.name).integers(0, 2000, shape, dtype=np.uint16)
    return _save_dicom(_dicom(stored, RescaleSlope="1", RescaleIntercept="-1024", **attrs), path)


def _series(folder: Path, shape: tuple[int, int, int] = (24, 20, 4)) -> list[Path]:
    voxels = _rng(folder.name).integers(-1000, 1000, shape).astype(np.float32)
    return write_dicom_series(folder, Volume(voxels, np.diag([-0.8, -0.8, 2.0, 1.0]), hounsfield=True))


def _multiframe(path: Path, frames: int = 3, positions: list[float] | None = None) -> Path:
    stored = _rng(path.name).integers(0, 2000, (frames, 24, 20), dtype=np.uint16)
    ds = _dicom(stored, NumberOfFrames=frames, RescaleSlope="1", RescaleIntercept="-1024",
                FrameOfReferenceUID=generate_uid())
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    if positions is not None:
        per_frame = []
        for z in positions:
            position, group = Dataset(), Dataset()
            position.ImagePositionPatient = [0.0, 0.0, z]
            group.PlanePositionSequence = Sequence([position])
            per_frame.append(group)
        orientation, measures, shared = Dataset(), Dataset(), Dataset()
        orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        measures.PixelSpacing, measures.SliceThickness = [0.7, 0.7], "2"
        shared.PlaneOrientationSequence = Sequence([orientation])
        shared.PixelMeasuresSequence = Sequence([measures])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    return _save_dicom(ds, path)


def _nifti(path: Path, data: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0])), path)
    return path


def _nifti_dims(path: Path, dims: tuple[int, ...]) -> Path:
    """Write a small NIfTI, then make its header claim ``dims`` (the data stays as it was)."""
    _nifti(path, np.zeros((4, 4, 4), np.int16))
    data = bytearray(path.read_bytes())
    struct.pack_into("<8h", data, 40, len(dims), *dims, *([1] * (7 - len(dims))))
    path.write_bytes(bytes(data))
    return path


def _npz(path: Path, **arrays: Any) -> Path:
    with open(path, "wb") as handle:  # a handle, so numpy does not append another .npz
        np.savez(handle, **arrays)
    return path


def _npz_claiming(path: Path, shape: tuple[int, ...]) -> Path:
    """An .npz whose imgs.npy header claims ``shape`` (uint8) over a few bytes of data."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros((2, 2, 3), np.uint8))
    header["shape"] = shape
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    buffer.write(b"\0" * 12)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("imgs.npy", buffer.getvalue())
    return path


class MarkerPayload:
    """Pickles into a call that writes ``marker``: code a hostile file would run if it were unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


def marker_for(folder: Path) -> Path:
    """Where a MarkerPayload written into ``folder`` would leave its trace."""
    return folder / "CODE_RAN.txt"


def _text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _random_bytes(path: Path, size: int = 4096) -> Path:
    path.write_bytes(_rng(path.name).bytes(size))
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


# --- the makers, one per kind ----------------------------------------------------------------------------------------
def _png_truncated(folder: Path) -> Path:
    return _cut(_picture(folder / "truncated.png", _rng("png").integers(0, 255, (64, 64, 3), dtype=np.uint8)), 0.6)


def _png_corrupt_data(folder: Path) -> Path:
    return _flip_middle(_picture(folder / "corrupt.png", _rng("png2").integers(0, 255, (64, 64), dtype=np.uint8)))


def _png_header_only(folder: Path) -> Path:
    path = folder / "header_only.png"
    path.write_bytes(PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 0, 0, 0, 0)))
    return path


def _png_zero_size(folder: Path) -> Path:
    path = folder / "zero_by_zero.png"
    path.write_bytes(_png_claiming(0, 0))
    return path


def _png_over_limit(folder: Path) -> Path:
    path = folder / "bomb.png"
    path.write_bytes(_png_claiming(OVER_LIMIT, OVER_LIMIT))
    return path


def _jpeg(folder: Path, name: str, shape: tuple[int, ...], **save: Any) -> Path:
    return _picture(folder / name, _rng(name).integers(0, 255, shape, dtype=np.uint8), **save)


def _jpeg_corrupt(folder: Path) -> Path:
    path = folder / "corrupt.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + _rng("jpeg").bytes(2000))
    return path


def _tiff(path: Path, data: np.ndarray, **kw: Any) -> Path:
    tifffile.imwrite(path, data, **kw)
    return path


def _tiff_bad_ifd(folder: Path) -> Path:
    path = folder / "bad_ifd.tif"
    path.write_bytes(b"II*\x00" + struct.pack("<I", 10_000_000) + b"\0" * 64)
    return path


def _tiff_over_limit(folder: Path) -> Path:
    path = folder / "bomb.tif"
    path.write_bytes(_tiff_claiming(OVER_LIMIT, OVER_LIMIT))
    return path


def _float_with(value: float) -> np.ndarray:
    data = _rng(str(value)).normal(100, 20, (40, 40)).astype(np.float32)
    data[5:9, 5:9] = value
    return data


def _dicom_no_pixels(folder: Path) -> Path:
    ds = _dicom(np.zeros((8, 8), np.uint16))
    del ds.PixelData
    return _save_dicom(ds, folder / "no_pixels.dcm")


def _dicom_garbage(folder: Path) -> Path:
    path = folder / "garbage.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + _rng("dicm").bytes(3000))
    return path


def _dicom_over_limit(folder: Path) -> Path:
    ds = _dicom(np.zeros((2, 2), np.uint16))
    ds.Rows = ds.Columns = OVER_LIMIT
    return _save_dicom(ds, folder / "bomb.dcm")


def _dicom_short_pixels(folder: Path) -> Path:
    ds = _dicom(np.zeros((64, 64), np.uint16))
    ds.PixelData = b"\0" * 10
    return _save_dicom(ds, folder / "short_pixels.dcm")


def _dicom_one_row(folder: Path) -> Path:
    return _ct_slice(folder / "one_row.dcm", shape=(1, 60))


def _dicom_segmentation(folder: Path) -> Path:
    ds = _dicom(np.zeros((16, 16), np.uint8), modality="SEG")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SegmentationStorage
    return _save_dicom(ds, folder / "segmentation.dcm")


def _dicom_compressed_junk(folder: Path) -> Path:
    ds = _dicom(np.zeros((32, 32), np.uint16))
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + _rng("j2k").bytes(200)])
    ds["PixelData"].VR = "OB"
    return _save_dicom(ds, folder / "jpeg2000_junk.dcm")


def _dicom_float_nan(folder: Path) -> Path:
    ds = _dicom(np.zeros((16, 16), np.uint16))
    del ds.PixelData
    del ds.PixelRepresentation
    ds.BitsAllocated = 32
    del ds.BitsStored
    del ds.HighBit
    ds.FloatPixelData = _float_with(np.nan)[:16, :16].astype("<f4").tobytes()
    return _save_dicom(ds, folder / "float_nan.dcm")


def _series_mixed_sizes(folder: Path) -> Path:
    paths = _series(folder / "mixed_sizes")
    odd = pydicom.dcmread(paths[1])
    odd.Rows, odd.Columns = 10, 12
    odd.PixelData = np.zeros((10, 12), "<i2").tobytes()
    odd.save_as(paths[1])
    return folder / "mixed_sizes"


def _series_duplicate_positions(folder: Path) -> Path:
    paths = _series(folder / "duplicates")
    twin = pydicom.dcmread(paths[1])
    twin.ImagePositionPatient = pydicom.dcmread(paths[0]).ImagePositionPatient
    twin.save_as(paths[1])
    return folder / "duplicates"


def _series_mixed_orientation(folder: Path) -> Path:
    paths = _series(folder / "orientations")
    tilted = pydicom.dcmread(paths[2])
    tilted.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    tilted.save_as(paths[2])
    return folder / "orientations"


def _series_truncated_slice(folder: Path) -> Path:
    paths = _series(folder / "cut_slice")
    _cut(paths[2], 0.7)
    return folder / "cut_slice"


def _series_split_multiframe(folder: Path) -> Path:
    series = folder / "split_multiframe"
    series.mkdir()
    first = _multiframe(series / "part1.dcm")
    second = pydicom.dcmread(first)
    second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    second.save_as(series / "part2.dcm")
    return series


def _series_one_slice(folder: Path) -> Path:
    _series(folder / "one_slice", shape=(24, 20, 1))
    return folder / "one_slice"


def _folder_of_text(folder: Path) -> Path:
    _text(_folder(folder / "notes") / "readme.txt", "not an image")
    return folder / "notes"


def _zip_of_text(folder: Path) -> Path:
    path = folder / "archive.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("notes.txt", "not an image")
    return path


def _nifti_truncated(folder: Path, name: str) -> Path:
    return _cut(_nifti(folder / name, _rng(name).integers(-1000, 1000, (32, 32, 8)).astype(np.int16)), 0.5)


def _gzip_of_random(folder: Path) -> Path:
    path = folder / "random.nii.gz"
    path.write_bytes(gzip.compress(_rng("gz").bytes(2000)))
    return path


def _nifti_complex(folder: Path) -> Path:
    return _nifti(folder / "complex.nii", np.ones((8, 8, 4), np.complex64))


def _nifti_nonfinite(folder: Path, value: float) -> Path:
    data = _rng(str(value)).normal(0, 1, (8, 8, 4)).astype(np.float32)
    data[2, 3, 1] = value
    return _nifti(folder / f"{'nan' if np.isnan(value) else 'inf'}.nii.gz", data)


def _nifti_badly_named(folder: Path) -> Path:
    path = _nifti(folder / "volume.nii", np.ones((8, 8, 4), np.int16))
    return path.rename(folder / "volume.dat")


def _npz_pickled(folder: Path) -> Path:
    return _npz(folder / "pickled.npz", imgs=np.array([MarkerPayload(marker_for(folder))], dtype=object))


def _mask_other_shape(folder: Path) -> Path:
    mask = np.zeros((GOOD_SHAPE[0] // 2, GOOD_SHAPE[1]), np.uint8)
    mask[10:20, 10:30] = 255
    return _picture(folder / "half_height_mask.png", mask)


def _mask_float(folder: Path, name: str, value: float) -> Path:
    mask = np.zeros(GOOD_SHAPE, np.float32)
    mask[10:20, 10:30] = value
    return _tiff(folder / name, mask)


def _mask_many_colours(folder: Path) -> Path:
    # More colours than a label map can number (65535): a photo saved where a mask belongs.
    return _picture(folder / "photo_as_mask.png", _rng("colours").integers(0, 255, (300, 300, 3), dtype=np.uint8))


def _mask_constant(folder: Path, name: str, value: int) -> Path:
    return _picture(folder / name, np.full(GOOD_SHAPE, value, np.uint8))


def _prompt_image(folder: Path) -> Path:
    return write_good_png(folder / "good_for_prompt.png")


def _volume_for_prompt(folder: Path) -> Path:
    return _nifti(folder / "volume_for_prompt.nii.gz", _rng("vol").integers(-1000, 1000, (40, 40, 6)).astype(np.int16))


def _image16(folder: Path) -> Path:
    return _picture(folder / "grey16.png", (_rng("16").integers(0, 65535, (60, 70))).astype(np.uint16))


def _palette(folder: Path) -> Path:
    image = Image.fromarray(_rng("pal").integers(0, 255, (60, 70, 3), dtype=np.uint8)).convert("P")
    image.save(folder / "palette.png")
    return folder / "palette.png"


def _cmyk(folder: Path) -> Path:
    Image.fromarray(_rng("cmyk").integers(0, 255, (60, 70, 3), dtype=np.uint8)).convert("CMYK").save(
        folder / "cmyk.jpg")
    return folder / "cmyk.jpg"


def _one_bit(folder: Path) -> Path:
    Image.fromarray(_rng("bit").integers(0, 2, (60, 70), dtype=np.uint8) * 255).convert("1").save(folder / "bits.png")
    return folder / "bits.png"


def _multipage(folder: Path) -> Path:
    return _tiff(folder / "pages.tif", _rng("pages").integers(0, 255, (3, 40, 50), dtype=np.uint8), photometric="minisblack")


def _monochrome1(folder: Path) -> Path:
    return _ct_slice(folder / "monochrome1.dcm", PhotometricInterpretation="MONOCHROME1", Modality="CR")


BAD: list[Kind] = [
    # pictures: damaged, empty, not pictures at all, degenerate or bomb-sized, non-finite
    Kind("png-truncated", _png_truncated, "image"),
    Kind("png-corrupt-data", _png_corrupt_data, "image"),
    Kind("png-header-only", _png_header_only, "image"),
    Kind("png-zero-byte", lambda f: _empty(f / "empty.png"), "image"),
    Kind("png-text", lambda f: _text(f / "error_page.png", "<html><body>404 Not Found</body></html>"), "image"),
    Kind("png-random-bytes", lambda f: _random_bytes(f / "random.png"), "image"),
    Kind("png-0x0", _png_zero_size, "image"),
    Kind("png-1xN", lambda f: _picture(f / "one_row.png", np.full((1, 50), 128, np.uint8)), "image"),
    Kind("png-Nx1", lambda f: _picture(f / "one_column.png", np.full((50, 1), 128, np.uint8)), "image"),
    Kind("png-over-limit", _png_over_limit, "image"),
    Kind("png-sliver", lambda f: _picture(f / "sliver.png", np.full((2, 1100), 128, np.uint8)), "predictor"),
    Kind("jpeg-truncated", lambda f: _cut(_jpeg(f, "truncated.jpg", (64, 64, 3)), 0.5), "image"),
    Kind("jpeg-corrupt", _jpeg_corrupt, "image"),
    Kind("jpeg-zero-byte", lambda f: _empty(f / "empty.jpg"), "image"),
    Kind("jpeg-random-bytes", lambda f: _random_bytes(f / "random.jpeg"), "image"),
    Kind("jpeg-1xN", lambda f: _jpeg(f, "one_row.jpg", (1, 40, 3)), "image"),
    Kind("tiff-truncated", lambda f: _cut(_tiff(f / "truncated.tif", _rng("t").integers(0, 255, (64, 64), np.uint8)),
                                        0.5), "image"),
    Kind("tiff-bad-ifd-offset", _tiff_bad_ifd, "image"),
    Kind("tiff-random-bytes", lambda f: _random_bytes(f / "random.tiff"), "image"),
    Kind("tiff-zero-byte", lambda f: _empty(f / "empty.tif"), "image"),
    Kind("tiff-over-limit", _tiff_over_limit, "image"),
    Kind("tiff-nan", lambda f: _tiff(f / "nan.tif", _float_with(np.nan)), "image"),
    Kind("tiff-inf", lambda f: _tiff(f / "inf.tif", _float_with(np.inf)), "image"),
    Kind("tiff-5-channels", lambda f: _tiff(f / "five_channels.tif", np.zeros((20, 20, 5), np.uint8),
                                          photometric="minisblack", planarconfig="contig"), "image"),
    Kind("text-as-bmp", lambda f: _text(f / "notes.bmp", "BM but not really a bitmap"), "image"),
    Kind("unknown-extension", lambda f: _random_bytes(f / "scan.xyz"), "image"),
    # DICOM files
    Kind("dicom-truncated", lambda f: _cut(_ct_slice(f / "truncated.dcm", shape=(64, 64)), 0.7), "image"),
    Kind("dicom-header-truncated", lambda f: _cut(_ct_slice(f / "header_cut.dcm"), 0.05), "image"),
    Kind("dicom-no-pixels", _dicom_no_pixels, "image"),
    Kind("dicom-garbage", _dicom_garbage, "image"),
    Kind("dicom-zero-byte", lambda f: _empty(f / "empty.dcm"), "image"),
    Kind("dicom-random-bytes", lambda f: _random_bytes(f / "random.dcm"), "image"),
    Kind("dicom-over-limit", _dicom_over_limit, "image"),
    Kind("dicom-short-pixel-data", _dicom_short_pixels, "image"),
    Kind("dicom-1xN", _dicom_one_row, "image"),
    Kind("dicom-segmentation-object", _dicom_segmentation, "image"),
    Kind("dicom-undecodable-jpeg2000", _dicom_compressed_junk, "image"),
    Kind("dicom-float-nan", _dicom_float_nan, "image"),
    Kind("dicom-multiframe-truncated", lambda f: _cut(_multiframe(f / "multiframe_cut.dcm", frames=4), 0.6), "volume"),
    # DICOM series folders and archives
    Kind("dicom-series-mixed-sizes", _series_mixed_sizes, "volume"),
    Kind("dicom-series-duplicate-positions", _series_duplicate_positions, "volume"),
    Kind("dicom-series-mixed-orientations", _series_mixed_orientation, "volume"),
    Kind("dicom-series-truncated-slice", _series_truncated_slice, "volume"),
    Kind("dicom-series-split-multiframe", _series_split_multiframe, "volume"),
    Kind("folder-without-images", _folder_of_text, "volume"),
    Kind("empty-folder", lambda f: _folder(f / "empty_folder"), "volume"),
    Kind("zip-without-dicom", _zip_of_text, "volume"),
    # NIfTI
    Kind("nifti-truncated", lambda f: _nifti_truncated(f, "truncated.nii"), "volume"),
    Kind("nifti-gz-truncated", lambda f: _nifti_truncated(f, "truncated.nii.gz"), "volume"),
    Kind("nifti-zero-byte", lambda f: _empty(f / "empty.nii.gz"), "volume"),
    Kind("nifti-random-bytes", lambda f: _random_bytes(f / "random.nii"), "volume"),
    Kind("nifti-gz-not-gzip", lambda f: _random_bytes(f / "not_gzip.nii.gz"), "volume"),
    Kind("gzip-not-nifti", _gzip_of_random, "volume"),
    Kind("nifti-over-limit", lambda f: _nifti_dims(f / "bomb.nii", (2000, 2000, 2000)), "volume"),
    Kind("nifti-zero-voxels", lambda f: _nifti_dims(f / "zero_voxels.nii", (0, 4, 4)), "volume"),
    Kind("nifti-negative-dims", lambda f: _nifti_dims(f / "negative_dims.nii", (-4, 4, 4)), "volume"),
    Kind("nifti-4d", lambda f: _nifti(f / "four_d.nii.gz", np.zeros((8, 8, 4, 3), np.int16)), "volume"),
    Kind("nifti-complex", _nifti_complex, "volume"),
    Kind("nifti-nan", lambda f: _nifti_nonfinite(f, np.nan), "volume"),
    Kind("nifti-inf", lambda f: _nifti_nonfinite(f, np.inf), "volume"),
    Kind("nifti-wrong-name", _nifti_badly_named, "volume"),
    # MedSAM-on-Laptop .npz
    Kind("npz-truncated", lambda f: _cut(_npz(f / "truncated.npz", imgs=_rng("npz").integers(0, 255, (40, 40, 3),
                                                                                           dtype=np.uint8)), 0.5),
       "npz"),
    Kind("npz-random-bytes", lambda f: _random_bytes(f / "random.npz"), "npz"),
    Kind("npz-zero-byte", lambda f: _empty(f / "empty.npz"), "npz"),
    Kind("npz-without-imgs", lambda f: _npz(f / "no_imgs.npz", gts=np.zeros((8, 8), np.uint8)), "npz"),
    Kind("npz-pickled-objects", _npz_pickled, "npz"),
    Kind("npz-strings", lambda f: _npz(f / "strings.npz", imgs=np.array([["a", "b"], ["c", "d"]])), "npz"),
    Kind("npz-4d", lambda f: _npz(f / "four_d.npz", imgs=np.zeros((2, 8, 8, 3, 2), np.uint8)), "npz"),
    Kind("npz-0x0", lambda f: _npz(f / "zero.npz", imgs=np.zeros((0, 0, 3), np.uint8)), "npz"),
    Kind("npz-over-limit", lambda f: _npz_claiming(f / "bomb.npz", (OVER_LIMIT, OVER_LIMIT, 3)), "npz"),
    Kind("npz-nan", lambda f: _npz(f / "nan.npz", imgs=np.full((20, 20, 3), np.nan, np.float32)), "npz"),
    Kind("npz-gts-other-shape", lambda f: _npz(f / "gts_shape.npz", imgs=np.zeros((20, 20, 3), np.uint8),
                                            gts=np.zeros((10, 20), np.uint8)), "npz"),
    Kind("npz-boxes-nan", lambda f: _npz(f / "boxes_nan.npz", imgs=np.zeros((20, 20, 3), np.uint8),
                                       boxes=np.array([[1.0, 2.0, np.nan, 9.0]])), "npz"),
    Kind("npz-boxes-inverted", lambda f: _npz(f / "boxes_inverted.npz", imgs=np.zeros((20, 20, 3), np.uint8),
                                            boxes=np.array([[10, 10, 2, 2]])), "npz"),
    Kind("npz-boxes-wrong-width", lambda f: _npz(f / "boxes_width.npz", imgs=np.zeros((20, 20, 3), np.uint8),
                                               boxes=np.array([[1, 2, 3]])), "npz"),
    Kind("npz-spacing-negative", lambda f: _npz(f / "spacing.npz", imgs=np.zeros((4, 20, 20), np.uint8),
                                              spacing=np.array([1.0, -1.0, 2.0])), "npz"),
    # masks
    Kind("mask-other-shape", _mask_other_shape, "mask"),
    Kind("mask-nan", lambda f: _mask_float(f, "nan_mask.tif", np.nan), "mask"),
    Kind("mask-negative", lambda f: _mask_float(f, "negative_mask.tif", -1.0), "mask"),
    Kind("mask-fractional", lambda f: _mask_float(f, "probability_mask.tif", 0.5), "mask"),
    Kind("mask-photo", _mask_many_colours, "mask"),
    Kind("mask-truncated", lambda f: _cut(_mask_constant(f, "cut_mask.png", 1), 0.5), "mask"),
    # prompts and options given with a good picture or volume
    Kind("box-outside-image", _prompt_image, "prompt", args=("--box", "0", "0", "500", "500"),
       predict={"boxes": [[0, 0, 500, 500]]}),
    Kind("point-outside-image", _prompt_image, "prompt", args=("--point", "10", "-3", "1"),
       predict={"points": [[10, -3]], "labels": [1]}),
    Kind("box-empty", _prompt_image, "prompt", args=("--box", "20", "30", "20", "60"),
       predict={"boxes": [[20, 30, 20, 60]]}),
    Kind("box-inverted", _prompt_image, "prompt", args=("--box", "60", "60", "10", "10"),
       predict={"boxes": [[60, 60, 10, 10]]}),
    Kind("box-nan", _prompt_image, "prompt", args=("--box", "nan", "0", "10", "10"),
       predict={"boxes": [[np.nan, 0, 10, 10]]}),
    Kind("box-inf", _prompt_image, "prompt", args=("--box", "0", "0", "inf", "10"),
       predict={"boxes": [[0, 0, np.inf, 10]]}),
    Kind("point-nan", _prompt_image, "prompt", args=("--point", "nan", "10", "1"),
       predict={"points": [[np.nan, 10]], "labels": [1]}),
    Kind("point-label-2", _prompt_image, "prompt", args=("--point", "10", "10", "2"),
       predict={"points": [[10, 10]], "labels": [2]}),
    Kind("point-without-label", _prompt_image, "prompt", args=("--point", "10", "10"),
       predict={"points": [[10, 10]]}),
    Kind("too-many-boxes", _prompt_image, "prompt", args=tuple(v for _ in range(65) for v in ("--box", "1", "1", "9", "9")),
       predict={"boxes": [[1, 1, 9, 9]] * 65}),
    Kind("box3d-on-picture", _prompt_image, "prompt", args=("--box3d", "1", "1", "0", "9", "9", "0")),
    Kind("box-on-volume", _volume_for_prompt, "prompt", args=("--box", "1", "1", "9", "9")),
    Kind("box3d-outside-volume", _volume_for_prompt, "prompt", args=("--box3d", "1", "1", "0", "9", "9", "50"),
         predict={"boxes3d": [[1, 1, 0, 9, 9, 50]]}),
    Kind("point-z-between-slices", _volume_for_prompt, "prompt", args=("--point", "5", "5", "2.5", "1")),
    Kind("modality-unknown", _prompt_image, "prompt", args=("--modality", "sonar"), predict={"modality": "sonar"}),
    Kind("modality-index-out-of-range", _prompt_image, "prompt", args=("--modality", "99"), predict={"modality": 99}),
    Kind("ct-window-unknown", _volume_for_prompt, "prompt", args=("--modality", "ct", "--window", "nope"),
         predict={"modality": "ct", "window": "nope"}),
    Kind("mask-prompt-other-shape", _prompt_image, "prompt", predict={"mask": np.zeros((1, 1, 32, 32), np.float32)}),
]

VALID: list[Kind] = [
    Kind("png-16-bit", _image16, "image", valid=True),
    Kind("png-rgba", lambda f: _picture(f / "rgba.png", _rng("rgba").integers(0, 255, (60, 70, 4), dtype=np.uint8)),
       "image", valid=True),
    Kind("png-grey-alpha", lambda f: _picture(f / "grey_alpha.png", _rng("la").integers(0, 255, (60, 70, 2),
                                                                                     dtype=np.uint8), mode="LA"),
       "image", valid=True),
    Kind("png-palette", _palette, "image", valid=True),
    Kind("png-1-bit", _one_bit, "image", valid=True),
    Kind("png-2x2", lambda f: _picture(f / "tiny.png", np.array([[0, 255], [255, 0]], np.uint8)), "image", valid=True),
    Kind("jpeg-cmyk", _cmyk, "image", valid=True),
    Kind("jpeg-grey", lambda f: _jpeg(f, "grey.jpg", (60, 70)), "image", valid=True),
    Kind("tiff-float32", lambda f: _tiff(f / "float.tif", _rng("f").normal(0, 1, (60, 70)).astype(np.float32)),
       "image", valid=True),
    Kind("tiff-16-bit", lambda f: _tiff(f / "grey16.tif", _rng("t16").integers(0, 65535, (60, 70), dtype=np.uint16)),
       "image", valid=True),
    Kind("tiff-multipage", _multipage, "image", valid=True),
    Kind("bmp", lambda f: _picture(f / "picture.bmp", _rng("bmp").integers(0, 255, (60, 70, 3), dtype=np.uint8)),
       "image", valid=True),
    Kind("dicom-monochrome1", _monochrome1, "image", valid=True),
    Kind("nifti-one-slice", lambda f: _nifti(f / "one_slice.nii.gz", _rng("one").integers(-1000, 1000, (40, 30, 1))
                                           .astype(np.int16)), "image", valid=True),
    Kind("npz-3d-one-slice", lambda f: _npz(f / "3DBox_CT_0001.npz", imgs=np.full((1, 30, 40), 100, np.uint8)),
       "volume", valid=True),
    Kind("dicom-series-one-slice", _series_one_slice, "volume", valid=True),
    Kind("dicom-multiframe", lambda f: _multiframe(f / "multiframe.dcm", positions=[4.0, 0.0, 2.0]), "volume",
       valid=True),
    Kind("mask-empty", lambda f: _mask_constant(f, "empty_mask.png", 0), "mask", valid=True),
    Kind("mask-full", lambda f: _mask_constant(f, "full_mask.png", 255), "mask", valid=True),
]

KINDS = BAD + VALID
