"""The banded pre/postprocessing gives the model what the dense weight matrices define, and the same masks.

The reference is the definition: ``Wy @ img @ Wx.T`` with ``resize_weights`` / ``unpad_weights`` (the matrices the
torch side applies), in float64, and the former float32 dense products. The banded sums run over the same
non-zero weights in another order, so they differ from either by float32 rounding only: ``INPUT_ATOL`` on the
normalised model input (values up to ~2.6, float32 spacing 2.4e-7 there; measured ≤ 8.3e-7), ``LOGIT_RTOL`` of
the largest logit on the upsampled logits. Masks are compared exactly, except at pixels whose reference logit
lies within ``NEAR_THRESHOLD`` of the threshold, where rounding may decide the side (none did in these cases).
"""

import numpy as np
import pytest

from edge_medsam.data.synth import generate_sample
from edge_medsam.modalities import normalise_intensity
from edge_medsam.preprocess import (
    PreprocessConfig,
    geometry_for,
    logits_to_original,
    resize_image,
    resize_weights,
    to_model_input,
    unpad_weights,
)

INPUT_ATOL = 2e-6
LOGIT_RTOL = 1e-6
NEAR_THRESHOLD = 1e-3
# synthetic CT (HU), synthetic dermoscopy (RGB uint8), MR (uint8 grey): square, non-square, odd and extreme shapes
SHAPES = [(512, 512), (301, 517), (97, 640), (640, 33), (7, 5), (255, 255)]
IMAGES = [("ct", True), ("dermoscopy", False), ("mr", False)]
CONFIGS = [PreprocessConfig(256), PreprocessConfig(512), PreprocessConfig(256, resize="stretch")]


def _image(modality: str, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    pixels = generate_sample(modality, seed, size=max(*shape, 32)).pixels
    return pixels[: shape[0], : shape[1]]


def _dense_input(image01: np.ndarray, config: PreprocessConfig, dtype: type) -> np.ndarray:
    """The model input as the weight matrices define it, computed densely in ``dtype``."""
    img = np.array(image01, dtype)
    geo = geometry_for(img.shape[0], img.shape[1], config.size, config.resize == "longest_side")
    new_h, new_w = geo.resized
    wy = resize_weights(img.shape[0], new_h).astype(dtype)
    wx = resize_weights(img.shape[1], new_w).astype(dtype)
    resized = np.stack([wy @ img[..., c] @ wx.T for c in range(3)])
    mean, std = (np.asarray(v, dtype)[:, None, None] for v in (config.mean, config.std))
    out = np.zeros((1, 3, config.size, config.size), dtype)
    out[0, :, :new_h, :new_w] = (resized - mean) / std
    return out


def _dense_logits(logits: np.ndarray, geometry, dtype: type) -> np.ndarray:
    wy = unpad_weights(geometry, logits.shape[-2], 0).astype(dtype)
    wx = unpad_weights(geometry, logits.shape[-1], 1).astype(dtype)
    return wy @ logits.astype(dtype) @ wx.T


@pytest.mark.parametrize("config", CONFIGS, ids=["256", "512", "stretch"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize(("modality", "hounsfield"), IMAGES, ids=[m for m, _ in IMAGES])
def test_model_input_equals_the_dense_definition(modality, hounsfield, shape, config):
    image01 = normalise_intensity(_image(modality, shape), modality, hounsfield=hounsfield)
    ours, geometry = to_model_input(image01, config)
    assert ours.dtype == np.float32 and ours.shape == (1, 3, config.size, config.size)
    exact = _dense_input(image01, config, np.float64)
    former = _dense_input(image01, config, np.float32)
    np.testing.assert_allclose(ours, exact, rtol=0, atol=INPUT_ATOL)
    np.testing.assert_allclose(ours, former, rtol=0, atol=INPUT_ATOL)
    new_h, new_w = geometry.resized
    assert not ours[..., new_h:, :].any() and not ours[..., :, new_w:].any()  # the padding stays exactly zero


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_a_broadcast_grey_image_is_resized_once_to_the_same_values(shape):
    grey = normalise_intensity(_image("ct", shape), "ct", hounsfield=True)
    assert grey.shape == (*shape, 3) and grey.strides[2] == 0 and not grey.flags.writeable
    for config in CONFIGS:
        np.testing.assert_array_equal(to_model_input(grey, config)[0], to_model_input(np.array(grey), config)[0])


def test_normalisation_is_bit_identical_to_the_former_formulas():
    hu = _image("ct", (301, 517))
    centre, width = 40.0, 400.0
    former = np.clip((hu.astype(np.float32) - np.float32(centre - width / 2)) / np.float32(width), 0.0, 1.0)
    np.testing.assert_array_equal(normalise_intensity(hu, "ct", hounsfield=True, window=(centre, width))[..., 0], former)
    mr = _image("mr", (301, 517)).astype(np.float32) * 7.3
    lo, hi = np.percentile(mr, (0.5, 99.5))
    former = np.clip((mr - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)
    np.testing.assert_array_equal(normalise_intensity(mr, "mr")[..., 1], former)
    rgb = _image("dermoscopy", (301, 517))
    np.testing.assert_array_equal(normalise_intensity(rgb, "dermoscopy"), rgb.astype(np.float32) / 255.0)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("low_res", [64, 128])
def test_upsampled_logits_and_masks_equal_the_dense_definition(shape, low_res):
    geometry = geometry_for(*shape, 256)
    rng = np.random.default_rng(low_res)
    smooth = resize_image(rng.standard_normal((low_res // 8, low_res // 8, 1)).astype(np.float32), low_res, low_res)
    logits = np.stack([smooth[..., 0] * 6, rng.standard_normal((low_res, low_res)).astype(np.float32) * 3])[None]
    ours = logits_to_original(logits, geometry)
    assert ours.shape == (1, 2, *shape) and ours.dtype == np.float32 and ours.flags.c_contiguous
    exact = _dense_logits(logits, geometry, np.float64)
    for reference in (exact, _dense_logits(logits, geometry, np.float32)):
        np.testing.assert_allclose(ours, reference, rtol=0, atol=LOGIT_RTOL * np.abs(logits).max())
    decided = np.abs(exact) >= NEAR_THRESHOLD
    np.testing.assert_array_equal((ours > 0)[decided], (exact > 0)[decided])
    assert decided.mean() > 0.95  # the exempt pixels are few: the comparison is not vacuous


@pytest.fixture(scope="module")
def predictor():
    from edge_medsam.runtime import Predictor
    from edge_medsam.runtime.bundle import DEMO_BUNDLE

    return Predictor.from_bundle(DEMO_BUNDLE, backend="onnxruntime", threads=1)


@pytest.mark.parametrize(("modality", "shape"), [("ct", (512, 512)), ("dermoscopy", (512, 512)), ("ct", (301, 517)),
                                                 ("dermoscopy", (97, 640))], ids=str)
def test_runtime_masks_equal_those_of_the_dense_definition(predictor, monkeypatch, modality, shape):
    """The shipped bundle on ONNX Runtime, self-prompted and boxed, against the same runtime with the dense
    float64 definition swapped in for its pre- and postprocessing."""
    import edge_medsam.runtime.predictor as runtime

    pixels = _image(modality, shape, seed=3)
    box = [[shape[1] * 0.2, shape[0] * 0.2, shape[1] * 0.7, shape[0] * 0.8]]
    predictor.set_image(pixels, modality=modality)
    ours = [predictor.predict(), predictor.predict(boxes=box, multimask=True)]

    def dense_input(image01, config):
        out = _dense_input(image01, config, np.float64).astype(np.float32)
        return out, geometry_for(image01.shape[0], image01.shape[1], config.size, config.resize == "longest_side")

    monkeypatch.setattr(runtime, "to_model_input", dense_input)
    monkeypatch.setattr(runtime, "logits_to_original", lambda lg, geo: _dense_logits(lg, geo, np.float64))
    predictor.set_image(pixels, modality=modality)
    dense = [predictor.predict(), predictor.predict(boxes=box, multimask=True)]
    for mine, theirs in zip(ours, dense, strict=True):
        np.testing.assert_allclose(mine.low_res_logits, theirs.low_res_logits, rtol=0, atol=2e-4)  # measured ≤ 4e-5
        logits = _dense_logits(theirs.low_res_logits, predictor.image.geometry, np.float64)
        decided = np.abs(logits - predictor.threshold) >= NEAR_THRESHOLD
        if mine.masks.ndim == 3:
            decided = decided[:, 0]
        assert mine.masks.shape == theirs.masks.shape == decided.shape
        np.testing.assert_array_equal(mine.masks[decided], theirs.masks[decided])
        assert decided.mean() > 0.95  # the exempt pixels are few: the comparison is not vacuous
