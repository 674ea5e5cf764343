"""One contract for every registered model-file kind (``models.files.KINDS``): a tiny model describes itself by a
spec, that spec rebuilds the same architecture, and a saved file loads back strictly with the same weights."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from test_reference_models import TINY as TINY_REFERENCES
from test_teacher_ka2er import TASKS as KA2ER_TASKS
from test_teacher_ka2er import TINY as TINY_KA2ER
from test_teacher_sam3d import TINY as TINY_SAM3D
from test_teacher_syncsam import TINY_CNN

from edge_medsam.models.files import KINDS, build_from_spec, load_model, model_spec, save_model
from edge_medsam.models.reference import build_reference
from edge_medsam.models.student import EdgeStudent, StudentConfig
from edge_medsam.models.teachers import build_sam
from edge_medsam.models.teachers.ka2er import build_ka2er
from edge_medsam.models.teachers.sam3d import build_sam3d
from edge_medsam.models.teachers.syncsam import build_syncsam
from edge_medsam.training.jobs import TEACHER_FAMILIES

SIZE = 64
TINY: dict[str, Callable[[], torch.nn.Module]] = {
    "sam_teacher": lambda: build_sam("vit_tiny", image_size=SIZE, adapter="med2d", spatial_prompts=True),
    "student": lambda: EdgeStudent(StudentConfig(image_size=SIZE)),
    "syncsam_teacher": lambda: build_syncsam("vit_tiny", SIZE, **TINY_CNN),
    "sam3d_teacher": lambda: build_sam3d("vit_tiny", **TINY_SAM3D),
    "ka2er_teacher": lambda: build_ka2er(KA2ER_TASKS, image_size=SIZE,
                                         **{k: v for k, v in TINY_KA2ER.items() if k != "tasks"}),
    "reference": lambda: build_reference("litemedsam", **TINY_REFERENCES["litemedsam"]),
}


def test_every_registered_kind_is_covered_here():
    assert set(TINY) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_spec_rebuilds_the_model_and_the_file_loads_strictly(kind, tmp_path):
    torch.manual_seed(0)
    model = TINY[kind]().eval()
    spec = model_spec(model)
    assert spec["kind"] == kind
    rebuilt = build_from_spec(spec)
    assert type(rebuilt) is type(model) and model_spec(rebuilt) == spec
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    loaded = load_model(save_model(model, tmp_path / f"{kind}.pt"))
    assert model_spec(loaded) == spec and not loaded.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_every_teacher_family_has_a_training_job():
    import importlib

    for family, target in TEACHER_FAMILIES.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), family
