"""Pictures and masks: round trips for every pixel format hospitals and datasets use, and bad input."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from input_errors import raises_for
from PIL import Image, ImageFile

from edge_medsam.io import Image2D, ReadLimits, read_image, read_mask, read_volume, write_mask_png

RNG = np.random.default_rng(7)


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, raw: bytes) -> bytes:
    """A minimal PNG written by hand (for what Pillow will not write: 16-bit RGB, 0x0)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# --- round trips -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_grey_png_round_trips_8_and_16_bit(tmp_path, dtype):
    pixels = RNG.integers(0, np.iinfo(dtype).max, (24, 31), dtype=dtype)
    Image.fromarray(pixels).save(tmp_path / "grey.png")
    image = read_image(tmp_path / "grey.png")
    assert image.pixels.dtype == dtype and np.array_equal(image.pixels, pixels)
    assert image.path == tmp_path / "grey.png" and image.modality is None and not image.hounsfield


def test_rgb_and_rgba_png_keep_colour_and_drop_alpha(tmp_path):
    rgb = RNG.integers(0, 255, (20, 18, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    rgba = np.dstack([rgb, np.full((20, 18), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(read_image(tmp_path / "rgb.png").pixels, rgb)
    assert np.array_equal(read_image(tmp_path / "rgba.png").pixels, rgb)


def test_grey_with_alpha_and_1_bit_png(tmp_path):
    grey = RNG.integers(0, 255, (10, 12), dtype=np.uint8)
    Image.fromarray(np.dstack([grey, grey]), "LA").save(tmp_path / "la.png")
    assert np.array_equal(read_image(tmp_path / "la.png").pixels, grey)
    bits = RNG.integers(0, 2, (9, 11)).astype(bool)
    Image.fromarray(bits).convert("1").save(tmp_path / "bits.png")
    assert np.array_equal(read_image(tmp_path / "bits.png").pixels, bits.astype(np.uint8) * 255)
    assert np.array_equal(read_mask(tmp_path / "bits.png"), bits.astype(np.uint8))


def test_palette_png_is_colour_as_image_and_indices_as_mask(tmp_path):
    indices = RNG.integers(0, 4, (16, 16), dtype=np.uint8)
    palette = [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12)
    im = Image.fromarray(indices, "P")
    im.putpalette(palette)
    im.save(tmp_path / "palette.png")
    colours = np.array(palette[:12], np.uint8).reshape(4, 3)
    assert np.array_equal(read_image(tmp_path / "palette.png").pixels, colours[indices])
    assert np.array_equal(read_mask(tmp_path / "palette.png"), indices)


def test_grey_palette_png_reads_as_grey(tmp_path):
    im = Image.fromarray(RNG.integers(0, 255, (8, 8), dtype=np.uint8)).convert("P")
    im.putpalette([v for i in range(256) for v in (i, i, i)])
    im.save(tmp_path / "greypal.png")
    assert read_image(tmp_path / "greypal.png").pixels.ndim == 2


def test_16_bit_rgb_png_is_read_as_8_bit_with_a_warning(tmp_path):
    rgb16 = RNG.integers(0, 65535, (6, 5, 3), dtype=np.uint16)
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)
    (tmp_path / "rgb16.png").write_bytes(png_bytes(5, 6, 16, 2, raw))
    with pytest.warns(UserWarning, match="16-bit colour PNG"):
        image = read_image(tmp_path / "rgb16.png")
    assert np.array_equal(image.pixels, (rgb16 >> 8).astype(np.uint8))
    assert image.meta["reduced_from_bits"] == 16


def test_jpeg_grey_rgb_and_cmyk(tmp_path):
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (24, 1))
    rgb = np.dstack([smooth, smooth[:, ::-1], np.full_like(smooth, 90)])
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=95)
    Image.fromarray(smooth).save(tmp_path / "grey.jpeg", quality=95)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    colour = read_image(tmp_path / "rgb.jpg")
    assert colour.pixels.shape == (24, 32, 3) and np.abs(colour.pixels.astype(int) - rgb).mean() < 3
    assert "exif_transposed" not in colour.meta
    assert read_image(tmp_path / "grey.jpeg").pixels.shape == (24, 32)
    assert read_image(tmp_path / "cmyk.jpg").pixels.shape == (24, 32, 3)


def test_jpeg_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90° clockwise when displayed
    Image.fromarray(RNG.integers(0, 255, (10, 30, 3), dtype=np.uint8)).save(tmp_path / "cam.jpg", exif=exif)
    image = read_image(tmp_path / "cam.jpg")
    assert image.pixels.shape == (30, 10, 3) and image.meta["exif_transposed"]


def test_bmp_round_trips(tmp_path):
    rgb = RNG.integers(0, 255, (7, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.bmp")
    assert np.array_equal(read_image(tmp_path / "x.bmp").pixels, rgb)


def test_tiff_16_bit_grey_rgb_planar_and_float(tmp_path):
    grey16 = RNG.integers(0, 65535, (12, 10), dtype=np.uint16)
    rgb16 = RNG.integers(0, 65535, (12, 10, 3), dtype=np.uint16)
    floats = RNG.normal(size=(12, 10)).astype(np.float32)
    tifffile.imwrite(tmp_path / "grey16.tif", grey16)
    tifffile.imwrite(tmp_path / "rgb16.tiff", rgb16, photometric="rgb")
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb16, -1, 0), photometric="rgb", planarconfig="separate")
    tifffile.imwrite(tmp_path / "float.tif", floats)
    assert np.array_equal(read_image(tmp_path / "grey16.tif").pixels, grey16)
    assert np.array_equal(read_image(tmp_path / "rgb16.tiff").pixels, rgb16)
    assert np.array_equal(read_image(tmp_path / "planar.tif").pixels, rgb16)
    image = read_image(tmp_path / "float.tif")
    assert image.pixels.dtype == np.float32 and np.array_equal(image.pixels, floats)
    Image.fromarray((rgb16 >> 8).astype(np.uint8)).convert("CMYK").save(tmp_path / "cmyk.tif")  # left to Pillow
    assert read_image(tmp_path / "cmyk.tif").pixels.shape == (12, 10, 3)


def test_multi_page_tiff_reads_the_first_page_and_says_so(tmp_path):
    pages = RNG.integers(0, 255, (3, 8, 9), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", pages, photometric="minisblack")
    with pytest.warns(UserWarning, match="3 pages"):
        image = read_image(tmp_path / "stack.tif")
    assert np.array_equal(image.pixels, pages[0]) and image.meta["pages"] == 3


def test_palette_and_min_is_white_tiff(tmp_path):
    indices = np.array([[0, 1], [2, 1]], np.uint8)
    colormap = np.zeros((3, 256), np.uint16)
    colormap[:, 1] = (65535, 0, 0)
    colormap[:, 2] = (0, 0, 65535)
    tifffile.imwrite(tmp_path / "pal.tif", indices, photometric="palette", colormap=colormap)
    assert np.array_equal(read_image(tmp_path / "pal.tif").pixels[0, 1], [255, 0, 0])
    assert np.array_equal(read_mask(tmp_path / "pal.tif"), indices)
    tifffile.imwrite(tmp_path / "white.tif", np.array([[0, 200], [255, 10]], np.uint8), photometric="miniswhite")
    assert np.array_equal(read_image(tmp_path / "white.tif").pixels, [[255, 55], [0, 245]])
    bilevel = np.array([[True, False], [False, False]])  # a set bit is black in a min-is-white fax-style mask
    tifffile.imwrite(tmp_path / "fax.tif", bilevel, photometric="miniswhite")
    assert np.array_equal(read_image(tmp_path / "fax.tif").pixels, [[0, 255], [255, 255]])


# --- masks ---------------------------------------------------------------------------------------------------------

def test_binary_0_255_mask_becomes_0_1_and_labels_stay(tmp_path):
    binary = (RNG.random((10, 10)) > 0.5).astype(np.uint8) * 255
    Image.fromarray(binary).save(tmp_path / "bin.png")
    assert set(np.unique(read_mask(tmp_path / "bin.png"))) <= {0, 1}
    labels = RNG.integers(0, 4, (10, 10), dtype=np.uint8)
    Image.fromarray(labels).save(tmp_path / "labels.png")
    assert np.array_equal(read_mask(tmp_path / "labels.png"), labels)


@pytest.mark.parametrize("top", [3, 300])
def test_write_mask_png_round_trips_8_and_16_bit(tmp_path, top):
    labels = RNG.integers(0, top + 1, (14, 9))
    labels[0, 0] = top
    path = write_mask_png(tmp_path / "out" / "mask.png", labels)
    assert Image.open(path).mode == ("L" if top <= 255 else "I;16")
    back = read_mask(path)
    assert np.array_equal(back, labels) and back.dtype == (np.uint8 if top <= 255 else np.uint16)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]


def test_colour_coded_and_jpeg_masks(tmp_path):
    labels = np.zeros((12, 12), np.uint8)
    labels[2:5, 2:5], labels[7:10, 6:11] = 1, 2
    colours = np.array([[0, 0, 0], [0, 0, 255], [255, 0, 0]], np.uint8)  # sorted colour order: blue, then red
    Image.fromarray(colours[labels]).save(tmp_path / "colour.png")
    assert np.array_equal(read_mask(tmp_path / "colour.png"), labels)
    big = np.kron(labels > 0, np.ones((4, 4), np.uint8)) * 255
    Image.fromarray(big.astype(np.uint8)).save(tmp_path / "mask.jpg", quality=75)
    assert np.array_equal(read_mask(tmp_path / "mask.jpg"), (big > 0).astype(np.uint8))


def test_mask_of_another_shape_names_both_shapes(tmp_path):
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "mask.png")
    image = Image2D(pixels=np.zeros((10, 13), np.uint8), path=tmp_path / "scan.png")
    err = raises_for(tmp_path / "mask.png", read_mask, tmp_path / "mask.png", like=image)
    assert "12x10" in str(err) and "13x10" in str(err) and "scan.png" in str(err)
    raises_for(tmp_path / "mask.png", read_mask, tmp_path / "mask.png", like=(11, 12))
    assert read_mask(tmp_path / "mask.png", like=(10, 12)).shape == (10, 12)


def test_bad_masks_and_labels(tmp_path):
    tifffile.imwrite(tmp_path / "soft.tif", np.full((4, 4), 0.3, np.float32))
    raises_for(tmp_path / "soft.tif", read_mask, tmp_path / "soft.tif", match="fractional")
    raises_for(tmp_path / "neg.png", write_mask_png, tmp_path / "neg.png", np.array([[-1, 0], [0, 1]]))
    raises_for(tmp_path / "many.png", write_mask_png, tmp_path / "many.png", np.full((2, 2), 70000))
    raises_for(tmp_path / "3d.png", write_mask_png, tmp_path / "3d.png", np.zeros((2, 2, 2), np.uint8))


# --- bad input -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["empty.png", "empty.dcm", "empty.nii.gz", "empty.tif"])
def test_zero_byte_files(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    raises_for(tmp_path / name, read_image, tmp_path / name, match="not a readable image")


@pytest.mark.parametrize("name", ["noise.png", "noise.jpg", "noise.tif", "noise.bmp", "noise.dcm", "noise.nii.gz",
                                  "noise.nii", "noise.bin", "noise"])
def test_random_bytes_with_any_name(tmp_path, name):
    (tmp_path / name).write_bytes(np.random.default_rng(1).bytes(3000))
    raises_for(tmp_path / name, read_image, tmp_path / name, match="not a readable image")


def test_text_file_renamed_png(tmp_path):
    (tmp_path / "notes.png").write_text("patient notes, not an image\n" * 20)
    raises_for(tmp_path / "notes.png", read_image, tmp_path / "notes.png", match="not a readable image")


@pytest.mark.parametrize("suffix", ["png", "jpg", "tif"])
def test_truncated_pictures(tmp_path, suffix):
    pixels = RNG.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    full = tmp_path / f"full.{suffix}"
    Image.fromarray(pixels).save(full)
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    raises_for(cut, read_image, cut, match="not a readable image")


def test_pillow_truncated_switch_stays_off_and_is_refused(tmp_path, monkeypatch):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "ok.png")
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    raises_for(tmp_path / "ok.png", read_image, tmp_path / "ok.png", match="LOAD_TRUNCATED_IMAGES")


def test_zero_and_one_pixel_wide_images(tmp_path):
    (tmp_path / "zero.png").write_bytes(png_bytes(0, 0, 8, 0, b""))
    raises_for(tmp_path / "zero.png", read_image, tmp_path / "zero.png")
    Image.fromarray(np.zeros((1, 40), np.uint8)).save(tmp_path / "line.png")
    raises_for(tmp_path / "line.png", read_image, tmp_path / "line.png", match="too small")
    tifffile.imwrite(tmp_path / "column.tif", np.zeros((40, 1), np.uint16))
    raises_for(tmp_path / "column.tif", read_image, tmp_path / "column.tif", match="too small")


def test_size_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((80, 100), np.uint8)).save(tmp_path / "big.png")
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((80, 100), np.uint16))

    def never(*args, **kwargs):
        raise AssertionError("decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", never)
    monkeypatch.setattr(tifffile.TiffPage, "asarray", never)
    monkeypatch.setenv("EDGE_MEDSAM_MAX_SIDE", "64")
    raises_for(tmp_path / "big.png", read_image, tmp_path / "big.png", match="over the limit")
    raises_for(tmp_path / "big.tif", read_image, tmp_path / "big.tif", match="over the limit")
    monkeypatch.delenv("EDGE_MEDSAM_MAX_SIDE")
    limits = ReadLimits(max_side=1000, max_pixels=4000)
    raises_for(tmp_path / "big.png", read_image, tmp_path / "big.png", limits, match="over the limit")


def test_nan_in_float_tiff_is_rejected_by_the_reader(tmp_path):
    floats = np.ones((6, 6), np.float32)
    floats[2, 3] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", floats)
    raises_for(tmp_path / "nan.tif", read_image, tmp_path / "nan.tif", match="NaN")


def test_missing_file_folder_and_picture_as_volume(tmp_path):
    raises_for(tmp_path / "nope.png", read_image, tmp_path / "nope.png", match="does not exist")
    (tmp_path / "dir").mkdir()
    raises_for(tmp_path / "dir", read_image, tmp_path / "dir", match="folder")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "flat.png")
    raises_for(tmp_path / "flat.png", read_volume, tmp_path / "flat.png", match="not a volume")


def test_input_errors_are_value_errors_with_one_line(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(os.urandom(10))
    with pytest.raises(ValueError) as info:
        read_image(path)
    assert "\n" not in str(info.value)


def test_pictures_need_no_optional_readers_and_missing_ones_say_how_to_install(tmp_path):
    import subprocess
    import sys

    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    script = (
        "import sys\n"
        "sys.modules['nibabel'] = None\n"
        "import edge_medsam.io as io\n"
        f"io.read_image({str(tmp_path / 'a.png')!r})\n"
        "assert not {'pydicom', 'highdicom'} & set(sys.modules), 'optional readers imported eagerly'\n"
        "try:\n"
        "    io.write_nifti\n"
        "except Exception as err:\n"
        "    print(type(err).__name__, err)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert "EdgeMedSAMError" in result.stdout and "edge-medsam[runtime]" in result.stdout, result.stdout
