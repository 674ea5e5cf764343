"""Teacher → student on the synthetic corpus, on CPU: the trained teacher beats an untrained one, the student
reaches a fixed fraction of the teacher's Dice with boxes and by itself, and recognises modalities."""

from __future__ import annotations

import pytest
import torch

from edge_medsam.data.synth import write_corpus
from edge_medsam.evaluation import evaluate, segmenter_for
from edge_medsam.models.files import load_model
from edge_medsam.models.teachers import build_sam
from edge_medsam.recipes import DataSection, DistillStageSection, StudentSection, TeacherSection
from edge_medsam.training.jobs import data_splits, distill_student, train_teacher

SIZE = 64
MODALITIES = ["ct", "dermoscopy", "xray"]


def _train(steps: int) -> dict:
    return {"steps": steps, "batch_size": 8, "lr": 0.003, "warmup_steps": 5, "ckpt_every": 1000, "log_every": 50,
            "tensorboard": False}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    corpus = write_corpus(root / "corpus", per_modality=16, size=SIZE, seed=0, modalities=MODALITIES, volumes=0).parent
    train, test = data_splits(corpus, DataSection(test_fraction=0.25))
    teacher_section = TeacherSection(arch="vit_tiny", image_size=SIZE, adapter="med2d", train_all=True,
                                     spatial_prompts=True, interactive={"iterations": 1, "objects_per_image": 3},
                                     train=_train(150))
    teacher = train_teacher(teacher_section, train, root / "teacher")
    stages = [DistillStageSection("general", {}, _train(30)), DistillStageSection("decoupled", {}, _train(15)),
              DistillStageSection("decoder", {"encoder_lr_scale": 0.5, "max_objects": 3}, _train(120))]
    student = distill_student(StudentSection("tiny", {"image_size": SIZE}), stages, teacher, train, root / "student")
    return {"teacher": load_model(teacher), "student": load_model(student), "test": test}


@pytest.fixture(scope="module")
def scores(trained):
    teacher = evaluate(segmenter_for(trained["teacher"]), trained["test"], prompts=("box",), max_objects=4)
    student = evaluate(segmenter_for(trained["student"]), trained["test"], prompts=("box", "auto"), max_objects=4)
    torch.manual_seed(0)
    untrained = build_sam("vit_tiny", image_size=SIZE, adapter="med2d", spatial_prompts=True).eval()
    baseline = evaluate(segmenter_for(untrained), trained["test"], prompts=("box",), max_objects=4)
    return {"teacher": teacher.overall(), "student": student.overall(), "untrained": baseline.overall(),
            "recognition": student.recognition_summary()}


@pytest.mark.slow
def test_trained_teacher_follows_boxes_well_above_an_untrained_one(scores):
    assert scores["teacher"]["box"]["dice"] > scores["untrained"]["box"]["dice"] + 0.15
    assert scores["teacher"]["box"]["dice"] > 0.35


@pytest.mark.slow
def test_student_reaches_a_fixed_fraction_of_the_teacher(scores):
    teacher_box = scores["teacher"]["box"]["dice"]
    assert scores["student"]["box"]["dice"] >= 0.8 * teacher_box
    # Self-prompted: the student segments the annotated foreground with no prompt at all.
    assert scores["student"]["auto"]["dice"] >= 0.75


@pytest.mark.slow
def test_one_student_recognises_every_modality(scores, trained):
    recognition = scores["recognition"]
    assert recognition["n"] == len(trained["test"])
    assert set(recognition["per_modality"]) == set(MODALITIES)
    assert recognition["accuracy"] >= 0.9
