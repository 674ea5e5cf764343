"""Model-frame preprocessing: geometry, exact inverses, and torch/numpy agreement."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_medsam import InputError
from edge_medsam.data.torch_preprocess import logits_to_original_torch, resize_image_torch, to_model_input_torch
from edge_medsam.preprocess import (
    Geometry,
    PreprocessConfig,
    geometry_for,
    labels_to_model,
    labels_to_original,
    logits_to_original,
    resize_image,
    to_model_input,
)

sides = st.integers(min_value=2, max_value=700)


@pytest.mark.parametrize("size", [256, 512, 1024])
def test_torch_and_numpy_preprocessing_agree(size):
    rng = np.random.default_rng(size)
    image = rng.random((301, 517, 3), dtype=np.float32)
    config = PreprocessConfig(size=size)
    x_np, geo_np = to_model_input(image, config)
    x_t, geo_t = to_model_input_torch(torch.from_numpy(image).permute(2, 0, 1), config)
    assert geo_np == geo_t
    assert x_np.shape == (1, 3, size, size)
    np.testing.assert_allclose(x_np, x_t.numpy(), atol=2e-5)
    logits = rng.standard_normal((3, size // 4, size // 4)).astype(np.float32)
    np.testing.assert_allclose(
        logits_to_original(logits, geo_np), logits_to_original_torch(torch.from_numpy(logits), geo_np).numpy(), atol=2e-5
    )


@pytest.mark.parametrize(("shape", "out"), [((300, 200), (150, 100)), ((90, 70), (256, 199)), ((1000, 640), (256, 164))])
def test_resize_matches_torch_antialiased_bilinear(shape, out):
    image = np.random.default_rng(1).random((*shape, 3), dtype=np.float32)
    ours = resize_image(image, *out)
    reference = F.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None], size=out, mode="bilinear",
                              antialias=True, align_corners=False)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-4)
    np.testing.assert_allclose(resize_image_torch(torch.from_numpy(image).permute(2, 0, 1), *out).permute(1, 2, 0),
                               ours, atol=1e-5)


def test_padding_is_zero_and_content_is_normalised():
    config = PreprocessConfig(size=256)
    x, geo = to_model_input(np.ones((100, 50, 3), np.float32), config)
    assert geo.resized == (256, 128)
    assert np.all(x[0, :, :, 128:] == 0)
    expected = (1 - np.array(config.mean)) / np.array(config.std)
    np.testing.assert_allclose(x[0, :, 10, 10], expected, rtol=1e-5)


@settings(max_examples=60, deadline=None)
@given(h=sides, w=sides, size=st.sampled_from([256, 512, 1024]))
def test_geometry_keeps_aspect_and_fits(h, w, size):
    geo = geometry_for(h, w, size)
    new_h, new_w = geo.resized
    assert max(new_h, new_w) == size
    assert abs(new_h / new_w - h / w) <= 1.0 / min(new_h, new_w) * (h / w) + 1e-9


@settings(max_examples=60, deadline=None)
@given(h=st.integers(2, 256), w=st.integers(2, 256), seed=st.integers(0, 2**16))
def test_label_roundtrip_is_exact_when_upsampling(h, w, seed):
    labels = np.random.default_rng(seed).integers(0, 5, (h, w)).astype(np.uint8)
    geo = geometry_for(h, w, 256)
    model = labels_to_model(labels, geo)
    assert model.shape == (256, 256)
    np.testing.assert_array_equal(labels_to_original(model, geo), labels)


@settings(max_examples=60, deadline=None)
@given(h=sides, w=sides, x=st.floats(0, 1), y=st.floats(0, 1))
def test_point_transforms_invert(h, w, x, y):
    geo = geometry_for(h, w, 256)
    point = np.array([[x * w, y * h]], np.float32)
    np.testing.assert_allclose(geo.points_to_original(geo.points_to_model(point)), point, rtol=1e-5, atol=1e-3)
    box = np.array([0, 0, w, h], np.float32)
    model_box = geo.boxes_to_model(box)
    np.testing.assert_allclose(model_box[2:], [geo.resized[1], geo.resized[0]], rtol=1e-5)


def test_logits_return_to_original_geometry():
    h, w = 180, 300
    geo = geometry_for(h, w, 256)
    yy, xx = np.mgrid[:h, :w]
    disc = ((yy - 90) ** 2 + (xx - 150) ** 2 < 60**2).astype(np.float32)
    model = labels_to_model(disc, geo)
    low = resize_image(model, 64, 64)
    back = logits_to_original(low * 2 - 1, geo)
    assert back.shape == (h, w)
    agreement = ((back > 0) == (disc > 0)).mean()
    assert agreement > 0.99


def test_degenerate_and_bad_inputs_raise_package_error():
    with pytest.raises(InputError, match="too small"):
        geometry_for(1, 10, 256)
    with pytest.raises(InputError, match="multiple of 16"):
        PreprocessConfig(size=250)
    with pytest.raises(InputError, match="not \\(H, W, 3\\)"):
        to_model_input(np.zeros((10, 10)), PreprocessConfig())


def test_config_roundtrips_through_manifest_dict():
    config = PreprocessConfig(size=512)
    assert PreprocessConfig.from_dict(config.to_dict()) == config
    assert Geometry(10, 20, 256) == geometry_for(10, 20, 256)


def test_stretch_rule_fills_the_frame_and_inverts():
    config = PreprocessConfig(size=256, resize="stretch")
    image = np.random.default_rng(3).random((120, 300, 3), dtype=np.float32)
    x, geo = to_model_input(image, config)
    assert geo.resized == (256, 256) and not geo.keep_aspect
    x_t, _ = to_model_input_torch(torch.from_numpy(image).permute(2, 0, 1), config)
    np.testing.assert_allclose(x, x_t.numpy(), atol=2e-5)
    np.testing.assert_allclose(geo.points_to_model(np.array([300.0, 120.0])), [256, 256], rtol=1e-6)
    assert logits_to_original(np.zeros((64, 64), np.float32), geo).shape == (120, 300)
    with pytest.raises(InputError, match="resize rule"):
        PreprocessConfig(resize="crop")
