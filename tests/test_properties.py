"""Property tests (hypothesis) for the model-frame inverses and prompt mappings, and fuzzing of every reader.

Preprocessing and prompts: whatever the image geometry (extreme aspect ratios, both resize rules, every input
size), mapping into the model frame and back returns what went in, constant signals stay constant, padding
stays empty, and the runtime's prompt packing agrees with the geometry. Readers: valid files of every format,
mutated by hypothesis (flipped bytes, cuts, insertions), and random bytes behind each format's magic number,
may only raise InputError, and quickly. Examples are derandomized so that CI runs are repeatable.
"""

from __future__ import annotations

import gzip
import io
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from edge_medsam.data.prompt_batch import pack_prompts
from edge_medsam.data.prompts import box_from_mask, mask_prompt
from edge_medsam.errors import EdgeMedSAMError, InputError
from edge_medsam.io import Volume, read_image, read_laptop_npz, read_mask, read_volume, write_dicom_series
from edge_medsam.preprocess import (
    Geometry,
    PreprocessConfig,
    labels_to_model,
    labels_to_original,
    logits_to_original,
    resize_weights,
    to_model_input,
)
from edge_medsam.prompt_labels import BOX_LABELS, PAD_LABEL
from edge_medsam.runtime.bundle import open_bundle
from edge_medsam.runtime.prompts import pack_user_prompts

pytestmark = pytest.mark.timeout(240)
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None)
FUZZ = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
READ_SECONDS = 5.0  # the most one read of a small damaged file may take on a loaded CI machine

sides = st.integers(2, 3000)
frame_sizes = st.sampled_from([16, 64, 256, 1024])


@st.composite
def geometries(draw: st.DrawFn) -> Geometry:
    """Any image placement the runtime accepts: 2 px to long strips, either resize rule, any model size.

    The runtime refuses slivers longer than 2 * size times their width, whose short side would round to zero
    model pixels (Predictor._check_fits; tests/bad_inputs.py "png-sliver").
    """
    size, keep = draw(frame_sizes), draw(st.booleans())
    height = draw(sides)
    width = draw(st.integers(max(2, -(-height // (2 * size))), min(3000, height * 2 * size)))
    return Geometry(height, width, size, keep)


# --- preprocessing inverses ----------------------------------------------------------------------------------------
@PROPERTY
@given(geometries(), st.data())
def test_boxes_map_to_the_model_frame_and_back(geo: Geometry, data: st.DataObject) -> None:
    x0, x1 = sorted(data.draw(st.lists(st.floats(0, geo.width), min_size=2, max_size=2)))
    y0, y1 = sorted(data.draw(st.lists(st.floats(0, geo.height), min_size=2, max_size=2)))
    box = np.array([x0, y0, x1, y1], np.float32)
    model = geo.boxes_to_model(box)
    new_h, new_w = geo.resized
    assert (model >= 0).all() and model[0::2].max() <= new_w * (1 + 1e-6) and model[1::2].max() <= new_h * (1 + 1e-6)
    np.testing.assert_allclose(geo.boxes_to_original(model), box, rtol=1e-5, atol=1e-3 * max(geo.height, geo.width))


@PROPERTY
@given(geometries())
def test_whole_image_maps_onto_the_unpadded_frame(geo: Geometry) -> None:
    new_h, new_w = geo.resized
    assert 1 <= new_h <= geo.size and 1 <= new_w <= geo.size and max(new_h, new_w) == geo.size
    if not geo.keep_aspect:
        assert (new_h, new_w) == (geo.size, geo.size)
    corner = geo.points_to_model(np.array([geo.width, geo.height], np.float32))
    np.testing.assert_allclose(corner, [new_w, new_h], rtol=1e-5)


@PROPERTY
@given(st.integers(1, 600), st.integers(1, 600))
def test_resize_weights_are_a_partition_of_unity(in_len: int, out_len: int) -> None:
    weights = resize_weights(in_len, out_len)
    assert weights.shape == (out_len, in_len) and (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-9)


@PROPERTY
@given(st.integers(2, 400), st.integers(2, 400), st.booleans(), st.floats(0, 1), st.sampled_from([16, 64]))
def test_model_input_is_normalised_content_and_zero_padding(h: int, w: int, keep: bool, value: float,
                                                            size: int) -> None:
    config = PreprocessConfig(size=size, resize="longest_side" if keep else "stretch")
    model, geo = to_model_input(np.full((h, w, 3), value, np.float32), config)
    new_h, new_w = geo.resized
    expected = (value - np.asarray(config.mean, np.float32)) / np.asarray(config.std, np.float32)
    np.testing.assert_allclose(model[0, :, :new_h, :new_w], np.broadcast_to(expected[:, None, None],
                                                                             (3, new_h, new_w)), atol=1e-5)
    assert not model[0, :, new_h:, :].any() and not model[0, :, :, new_w:].any()


@PROPERTY
@given(geometries(), st.sampled_from([4, 16, 64]), st.floats(-20, 20))
def test_constant_logits_stay_constant_in_the_original_geometry(geo: Geometry, low: int, value: float) -> None:
    if geo.height * geo.width > 600_000:  # keep each example small; the geometry still varies widely
        geo = Geometry(min(geo.height, 700), min(geo.width, 700), geo.size, geo.keep_aspect)
    back = logits_to_original(np.full((2, low, low), value, np.float32), geo)
    assert back.shape == (2, geo.height, geo.width)
    np.testing.assert_allclose(back, value, atol=1e-4 * max(1.0, abs(value)))


@PROPERTY
@given(geometries(), st.integers(0, 2**16))
def test_labels_to_model_keeps_only_input_values_and_an_empty_padding(geo: Geometry, seed: int) -> None:
    if geo.height * geo.width > 600_000:
        geo = Geometry(min(geo.height, 700), min(geo.width, 700), geo.size, geo.keep_aspect)
    labels = np.random.default_rng(seed).integers(0, 4, (geo.height, geo.width)).astype(np.uint8)
    model = labels_to_model(labels, geo)
    new_h, new_w = geo.resized
    assert model.shape == (geo.size, geo.size) and set(np.unique(model)) <= set(np.unique(labels)) | {0}
    assert not model[new_h:].any() and not model[:, new_w:].any()
    back = labels_to_original(model, geo)
    assert back.shape == labels.shape
    if new_h >= geo.height and new_w >= geo.width:  # upsampled: nearest neighbour is exactly invertible
        np.testing.assert_array_equal(back, labels)


# --- prompt transforms ---------------------------------------------------------------------------------------------
@st.composite
def prompts_in(draw: st.DrawFn, geo: Geometry) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Valid runtime prompts for an image of geo's size: boxes [N, 4] and/or points [N, P, 2] with labels."""
    objects = draw(st.integers(1, 4))
    boxes = points = labels = None
    if draw(st.booleans()):
        corners = [sorted(draw(st.lists(st.floats(0, limit), min_size=2, max_size=2, unique=True)))
                   for _ in range(objects) for limit in (geo.width, geo.height)]
        boxes = np.array([[xs[0], ys[0], xs[1], ys[1]] for xs, ys in zip(corners[::2], corners[1::2], strict=True)],
                         np.float32)
        boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]  # float32 may merge close corners
        if not len(boxes):
            boxes = None
    if boxes is None or draw(st.booleans()):
        count = len(boxes) if boxes is not None else objects
        per = draw(st.integers(1, 5))
        xs = draw(arrays(np.float32, (count, per), elements=st.floats(0, geo.width - 1, width=32)))
        ys = draw(arrays(np.float32, (count, per), elements=st.floats(0, geo.height - 1, width=32)))
        points = np.stack([xs, ys], axis=-1)
        labels = draw(arrays(np.int64, (count, per), elements=st.sampled_from([0, 1])))
    return boxes, points, labels


@PROPERTY
@given(geometries().flatmap(lambda g: st.tuples(st.just(g), prompts_in(g))))
def test_runtime_prompts_pack_and_map_like_the_geometry(case) -> None:
    geo, (boxes, points, labels) = case
    packed = pack_user_prompts(geo.height, geo.width, 64, points=points, labels=labels, boxes=boxes)
    count = len(boxes) if boxes is not None else len(points)
    assert packed is not None and packed.count == count
    used = packed.labels != PAD_LABEL
    if boxes is not None:  # each box becomes its two corners with SAM's labels 2 and 3, after any points
        for row, box in enumerate(boxes):
            corner_labels = packed.labels[row][np.isin(packed.labels[row], BOX_LABELS)]
            assert corner_labels.tolist() == list(BOX_LABELS)
            np.testing.assert_array_equal(packed.coords[row][np.isin(packed.labels[row], BOX_LABELS)].ravel(), box)
    if points is not None:
        for row in range(count):
            clicks = np.isin(packed.labels[row], (0, 1))
            np.testing.assert_array_equal(packed.coords[row][clicks], points[row])
            np.testing.assert_array_equal(packed.labels[row][clicks], labels[row])
    model = packed.coords_in_model(geo)
    assert not model[~used].any()
    np.testing.assert_allclose(model[used], geo.points_to_model(packed.coords[used]), rtol=1e-6)
    np.testing.assert_allclose(geo.points_to_original(model[used]), packed.coords[used], rtol=1e-5,
                               atol=1e-3 * max(geo.height, geo.width))


values = st.floats(allow_nan=True, allow_infinity=True, width=32) | st.floats(-10, 110)


@PROPERTY
@given(st.lists(values, min_size=0, max_size=9), st.lists(values, min_size=0, max_size=6),
       st.lists(st.integers(-2, 3), min_size=0, max_size=3))
def test_any_prompt_numbers_are_packed_or_refused_with_input_error(box: list[float], xy: list[float],
                                                                   labels: list[int]) -> None:
    boxes = np.array(box, np.float32).reshape(-1, 4) if box and len(box) % 4 == 0 else (box or None)
    points = np.array(xy, np.float32).reshape(-1, 2) if xy and len(xy) % 2 == 0 else (xy or None)
    try:
        packed = pack_user_prompts(80, 100, 64, points=points, labels=labels or None, boxes=boxes)
    except InputError as err:
        assert "fix:" in str(err)
        return
    if packed is not None:
        assert np.isfinite(packed.coords).all()
        used = packed.coords[packed.labels != PAD_LABEL]
        assert (used >= 0).all() and (used[:, 0] <= 100).all() and (used[:, 1] <= 80).all()


@PROPERTY
@given(st.lists(st.one_of(st.none(), arrays(np.float32, 4, elements=st.floats(0, 50, width=32))), min_size=1,
                max_size=4).flatmap(lambda bs: st.tuples(st.just(bs), st.lists(st.integers(0, 4), min_size=len(bs),
                                                                             max_size=len(bs)))))
def test_pack_prompts_keeps_every_object_row_for_row(case) -> None:
    boxes, counts = case
    points = [(np.full((n, 2), float(i)), np.ones(n, np.int64)) if n else None for i, n in enumerate(counts)]
    coords, labels = pack_prompts(boxes, points)
    assert coords.shape[:2] == labels.shape and len(labels) == len(boxes)
    for row, (box, n) in enumerate(zip(boxes, counts, strict=True)):
        assert (labels[row] == 1).sum() == n and np.isin(labels[row], BOX_LABELS).sum() == (0 if box is None else 2)
        assert (labels[row] == PAD_LABEL).sum() == labels.shape[1] - n - (0 if box is None else 2)


@PROPERTY
@given(arrays(np.bool_, st.tuples(st.integers(2, 40), st.integers(2, 40))).filter(lambda m: m.any()),
       st.sampled_from([64, 256]), st.booleans())
def test_box_of_a_mask_survives_the_model_frame_round_trip(mask: np.ndarray, size: int, keep: bool) -> None:
    geo = Geometry(*mask.shape, size, keep)
    box = box_from_mask(mask)
    back = geo.boxes_to_original(geo.boxes_to_model(box))
    np.testing.assert_allclose(back, box, atol=1e-3)
    model_mask = labels_to_model(mask.astype(np.uint8), geo).astype(bool)
    model_box = box_from_mask(model_mask)  # the box of the mapped mask is the mapped box, to a model pixel
    np.testing.assert_allclose(model_box, geo.boxes_to_model(box), atol=max(1.0, geo.scale) + 1e-3)


@PROPERTY
@given(st.integers(1, 64), st.sampled_from([16, 64, 256]), st.floats(-30, 30))
def test_mask_prompt_resampling_keeps_constant_logits(side: int, size: int, value: float) -> None:
    out = mask_prompt(np.full((side, side), value, np.float32), size)
    assert out.shape == (size, size)
    np.testing.assert_allclose(out, value, atol=1e-4 * max(1.0, abs(value)))


# --- reader fuzzing ------------------------------------------------------------------------------------------------
def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(48 * 40, dtype=np.uint16).reshape(48, 40) % 251).convert("L").save(buffer, "PNG")
    return buffer.getvalue()


def _picture(fmt: str, shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def _tiff() -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.linspace(-1, 1, 30 * 20, dtype=np.float32).reshape(30, 20))
    return buffer.getvalue()


def _nifti(compressed: bool) -> bytes:
    img = nib.Nifti1Image(np.arange(8 * 6 * 4, dtype=np.int16).reshape(8, 6, 4), np.diag([0.8, 0.8, 2.0, 1.0]))
    raw = img.to_bytes()
    return gzip.compress(raw, mtime=0) if compressed else raw


def _npz(shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, imgs=np.ones(shape, np.uint8), boxes=np.array([[1, 1, 5, 5]] if len(shape) == 3 and shape[-1] == 3
                                                                   else [[1, 1, 0, 5, 5, 2]]))
    return buffer.getvalue()


def _dicom_series_zip() -> tuple[bytes, bytes]:
    """A zip of a three-slice DICOM series, and one of its slices."""
    with tempfile.TemporaryDirectory() as tmp:
        volume = Volume(np.arange(12 * 10 * 3, dtype=np.float32).reshape(12, 10, 3), np.diag([-0.7, -0.7, 2.0, 1.0]))
        paths = write_dicom_series(Path(tmp) / "series", volume)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            for path in paths:
                zf.write(path, f"series/{path.name}")
        single = paths[0].read_bytes()
    return buffer.getvalue(), single


@cache
def seeds() -> dict[str, bytes]:
    """One small valid file per format the readers take (name → bytes); its suffix is the file's extension."""
    series_zip, single = _dicom_series_zip()
    return {"grey.png": _png(), "photo.jpg": _picture("JPEG", (32, 24, 3)), "float.tif": _tiff(),
            "colour.bmp": _picture("BMP", (10, 12, 3)), "slice.dcm": single, "volume.nii": _nifti(False),
            "volume.nii.gz": _nifti(True), "case2d.npz": _npz((16, 12, 3)), "case3d.npz": _npz((3, 16, 12)),
            "series.zip": series_zip}


READERS: list[Callable[[Path], object]] = [read_image, read_volume, read_mask, read_laptop_npz]
OWN_READER = {".png": read_image, ".jpg": read_image, ".tif": read_image, ".bmp": read_image, ".dcm": read_image,
              ".nii": read_volume, ".gz": read_volume, ".zip": read_volume, ".npz": read_laptop_npz}


def read_everything(path: Path) -> None:
    """Every reader on ``path``: each returns or raises InputError, within READ_SECONDS."""
    for reader in READERS:
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reader(path)
        except InputError as err:
            assert "\n" not in str(err) and err.fix, str(err)
        elapsed = time.perf_counter() - start
        assert elapsed < READ_SECONDS, f"{reader.__name__} took {elapsed:.1f} s on {path.name}"


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few bytes changed, a piece cut out or junk inserted, and maybe truncated."""
    data = bytearray(original)
    for _ in range(draw(st.integers(0, 6))):
        where = draw(st.integers(0, len(data) - 1))
        data[where] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        start = draw(st.integers(0, len(data)))
        data[start:start + draw(st.integers(0, 64))] = draw(st.binary(max_size=32))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@pytest.mark.parametrize("name", ["grey.png", "photo.jpg", "float.tif", "colour.bmp", "slice.dcm", "volume.nii",
                                  "volume.nii.gz", "case2d.npz", "case3d.npz", "series.zip"])
def test_damaged_files_of_every_format_raise_only_input_error(name: str) -> None:
    original = seeds()[name]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(original)
        OWN_READER[Path(name).suffix](path)  # the seed is valid: mutations start from a file that reads
        read_everything(path)

        @FUZZ
        @given(mutated(original))
        def damaged(data: bytes) -> None:
            path.write_bytes(data)
            read_everything(path)

        damaged()


MAGIC = {"x.png": b"\x89PNG\r\n\x1a\n", "x.jpg": b"\xff\xd8\xff", "x.tif": b"II*\x00", "x.bmp": b"BM",
         "x.dcm": b"\0" * 128 + b"DICM", "x.nii": b"\x5c\x01\0\0", "x.nii.gz": b"\x1f\x8b", "x.npz": b"PK\x03\x04",
         "x.zip": b"PK\x05\x06", "x.dat": b""}


@FUZZ
@given(st.sampled_from(sorted(MAGIC)), st.binary(max_size=600))
def test_random_bytes_behind_any_magic_number_raise_only_input_error(name: str, tail: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(MAGIC[name] + tail)
        read_everything(path)


@cache
def zipped_manifest() -> bytes:
    """A zip holding a valid manifest.json (the graphs left out: opening checks them only when they are used)."""
    from runtime_bundle import cached_bundle

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(cached_bundle() / "manifest.json", "model/manifest.json")
    return buffer.getvalue()


def test_damaged_zipped_bundles_raise_only_the_package_error() -> None:
    original = zipped_manifest()
    with tempfile.TemporaryDirectory() as tmp:
        archive, cache_dir = Path(tmp) / "bundle.zip", Path(tmp) / "cache"
        archive.write_bytes(original)
        open_bundle(archive, cache_dir=cache_dir)  # the seed opens

        @FUZZ
        @given(mutated(original))
        def damaged(data: bytes) -> None:
            archive.write_bytes(data)
            start = time.perf_counter()
            try:
                open_bundle(archive, cache_dir=cache_dir)
            except EdgeMedSAMError as err:
                assert "\n" not in str(err) and err.fix, str(err)
            assert time.perf_counter() - start < READ_SECONDS

        damaged()
