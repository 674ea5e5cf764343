"""One contract for every registered model-file kind (``models.files.KINDS``): a tiny model describes itself by a
spec, that spec rebuilds the same architecture, a saved file loads back strictly with the same weights, and one image
with one box encodes and decodes to masks; and one for every teacher family (``training.families.TEACHER_FAMILIES``): its
model file is taken as the teacher by ``distill_student``. A kind or family without a tiny model here fails."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable

import pytest
import torch
from test_reference_models import TINY as TINY_REFERENCES
from test_teacher_ka2er import TASKS as KA2ER_TASKS
from test_teacher_ka2er import TINY as TINY_KA2ER
from test_teacher_sam3d import TINY as TINY_SAM3D
from test_teacher_syncsam import TINY_CNN

from edge_medsam.data.layouts import open_dataset
from edge_medsam.data.synth import write_corpus
from edge_medsam.models.files import KINDS, build_from_spec, load_model, model_spec, save_model
from edge_medsam.models.reference import build_reference
from edge_medsam.models.student import EdgeStudent, StudentConfig
from edge_medsam.models.teachers import build_sam
from edge_medsam.models.teachers.ka2er import build_ka2er
from edge_medsam.models.teachers.sam3d import build_sam3d
from edge_medsam.models.teachers.syncsam import build_syncsam
from edge_medsam.prompt_labels import BOX_LABELS
from edge_medsam.recipes import DistillStageSection, StudentSection
from edge_medsam.training.families import TEACHER_FAMILIES
from edge_medsam.training.jobs import distill_student

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

# The model-file kind each teacher family's training job writes.
FAMILY_KINDS = {"sam": "sam_teacher", "syncsam": "syncsam_teacher", "sam3d": "sam3d_teacher",
                "ka2er": "ka2er_teacher", "reference": "reference"}


def test_every_registered_kind_and_family_is_covered_here():
    assert set(TINY) == set(KINDS)
    assert set(FAMILY_KINDS) == set(TEACHER_FAMILIES) and set(FAMILY_KINDS.values()) <= set(KINDS)


def _box_masks(model: torch.nn.Module) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(input size, masks, IoU) of one random image with one box, through the model's own encode and decode."""
    student = isinstance(model, EdgeStudent)
    size = model.config.image_size if student else model.profile.preprocess.size
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    box = torch.tensor([[0.2, 0.25, 0.7, 0.8]]) * size
    with torch.no_grad():
        if student:
            features, self_prompt = model.encode(image, torch.tensor([-1]))
            return size, *model.decode(features, self_prompt, points=box.view(1, 2, 2),
                                       labels=torch.tensor([BOX_LABELS]))
        return size, *model.decode(model.encode(image), boxes=box)


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


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_one_image_with_a_box_encodes_and_decodes_to_masks(kind):
    torch.manual_seed(0)
    size, masks, iou = _box_masks(TINY[kind]().eval())
    assert masks.ndim == 4 and masks.shape[:2] == iou.shape and iou.shape[0] == 1 and iou.shape[1] >= 1
    assert masks.shape[2] == masks.shape[3] and size % masks.shape[-1] == 0
    assert torch.isfinite(masks).all() and torch.isfinite(iou).all() and masks.std() > 0


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds_corpus")
    write_corpus(root, per_modality=2, size=SIZE, seed=0, modalities=["mr", "fundus"], volumes=0, progress=False)
    return open_dataset(root).samples


@pytest.mark.parametrize("family", sorted(TEACHER_FAMILIES))
def test_distill_student_takes_each_familys_model_as_teacher(family, samples, tmp_path):
    torch.manual_seed(0)
    teacher = save_model(TINY[FAMILY_KINDS[family]]().eval(), tmp_path / "teacher.pt")
    quick = {"steps": 2, "batch_size": 2, "warmup_steps": 1, "tensorboard": False, "log_every": 1}
    stages = [DistillStageSection("general", train=quick),
              DistillStageSection("decoder", losses={"max_objects": 2}, train=quick)]
    student = load_model(distill_student(StudentSection("tiny", {"image_size": SIZE}), stages, teacher, samples,
                                         tmp_path / "student", seed=0, cache_embeddings=False))
    assert isinstance(student, EdgeStudent) and student.config.image_size == SIZE
    logged = {}
    for stage in ("stage0_general", "stage1_decoder"):
        with open(tmp_path / "student" / stage / "metrics.csv", newline="") as handle:
            logged.update(next(csv.DictReader(handle)))
    assert math.isfinite(float(logged["embed"])) and math.isfinite(float(logged["kd_mask"]))  # the teacher's losses


def test_every_teacher_family_has_a_training_job():
    import importlib

    for family, target in TEACHER_FAMILIES.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), family
