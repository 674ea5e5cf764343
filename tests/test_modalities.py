"""Modality registry and per-modality intensity handling."""

import numpy as np
import pytest

from edge_medsam import InputError
from edge_medsam.modalities import (
    CT_WINDOWS,
    MODALITIES,
    get_modality,
    modality_from_dicom,
    modality_names,
    normalise_intensity,
    resolve_window,
)

# Indices are baked into exported graphs: this table may only ever grow.
STABLE_INDICES = {"ct": 0, "mr": 1, "pet": 2, "xray": 3, "ultrasound": 4, "dermoscopy": 5, "endoscopy": 6,
                  "fundus": 7, "microscopy": 8, "oct": 9, "mammography": 10}


def test_indices_are_stable_and_dense():
    assert {m.name: m.index for m in MODALITIES} == STABLE_INDICES
    assert [m.index for m in MODALITIES] == list(range(len(MODALITIES)))
    assert modality_names()[0] == "ct"


@pytest.mark.parametrize(("key", "name"), [("CT", "ct"), ("MRI", "mr"), ("x-ray", "xray"), ("US", "ultrasound"),
                                           (7, "fundus"), ("Fundus Photography", "fundus"), ("histology", "microscopy")])
def test_lookup_by_name_alias_and_index(key, name):
    assert get_modality(key).name == name


def test_unknown_modality_names_the_choices():
    with pytest.raises(InputError) as err:
        get_modality("xrey")
    assert "xrey" in str(err.value) and "fix:" in str(err.value) and "dermoscopy" in str(err.value)
    with pytest.raises(InputError):
        get_modality(11)


def test_dicom_codes():
    assert modality_from_dicom("PT").name == "pet"
    assert modality_from_dicom("DX").name == "xray"
    assert modality_from_dicom("SR") is None


def test_ct_windows_map_hounsfield_units():
    hu = np.array([[-1000, -160], [40, 240]], np.float32)
    out = normalise_intensity(hu, "ct", hounsfield=True, window="soft_tissue")
    assert out.shape == (2, 2, 3)
    np.testing.assert_allclose(out[..., 0], [[0, 0], [0.5, 1.0]], atol=1e-6)
    lung = normalise_intensity(hu, "ct", hounsfield=True, window="lung")
    assert 0 < lung[0, 1, 0] < 1
    assert set(CT_WINDOWS) >= {"soft_tissue", "lung", "bone", "brain"}
    assert resolve_window((40, 400)) == (40.0, 400.0)
    with pytest.raises(InputError):
        resolve_window("lungs")
    with pytest.raises(InputError):
        resolve_window((40, 0))


def test_windowed_ct_picture_is_not_windowed_again():
    picture = np.array([[0, 255], [128, 64]], np.uint8)
    np.testing.assert_allclose(normalise_intensity(picture, "ct")[..., 0], picture / 255.0, atol=1e-6)


def test_mr_is_robust_to_outliers():
    rng = np.random.default_rng(0)
    mr = rng.normal(500, 50, (64, 64)).astype(np.float32)
    mr[0, 0] = 1e6
    out = normalise_intensity(mr, "mr")
    assert out.max() == 1.0 and out.min() == 0.0
    assert 0.3 < np.median(out) < 0.7


def test_colour_kept_for_rgb_modalities_and_grey_replicated():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 255
    out = normalise_intensity(rgb, "dermoscopy")
    np.testing.assert_allclose(out[0, 0], [1, 0, 0])
    grey = normalise_intensity(rgb, "xray")
    assert np.allclose(grey[..., 0], grey[..., 1])
    rgba = np.concatenate([rgb, np.full((4, 4, 1), 7, np.uint8)], axis=2)
    assert normalise_intensity(rgba, "endoscopy").shape == (4, 4, 3)
    deep = np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000
    assert normalise_intensity(deep, "mammography").max() == 1.0


@pytest.mark.parametrize("bad", [np.full((4, 4), np.nan, np.float32), np.array([[np.inf, 0], [0, 0]]),
                                 np.zeros((1, 5)), np.zeros((4, 4, 5)), np.array([["a", "b"], ["c", "d"]])])
def test_bad_pixels_raise_package_error(bad):
    with pytest.raises(InputError):
        normalise_intensity(bad, "mr")
