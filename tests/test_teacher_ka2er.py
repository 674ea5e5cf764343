"""KA²ER teacher: both training stages on the synthetic corpus (experts, then amalgamation with the experts
frozen) beat the untrained model on held-out images; the common teacher interface; strict save/load; resume;
and use as the teacher of `distill_student`.

One tiny teacher (64 px, tiny widths, a few dozen steps) is trained once per module and shared.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")
pytest.importorskip("einops")
pytest.importorskip("segment_anything")

from edge_medsam.data.layouts import open_dataset, split_samples  # noqa: E402
from edge_medsam.data.synth import write_corpus  # noqa: E402
from edge_medsam.engine.checkpoint import LATEST, load_checkpoint  # noqa: E402
from edge_medsam.errors import EdgeMedSAMError, InputError  # noqa: E402
from edge_medsam.evaluation.runner import evaluate  # noqa: E402
from edge_medsam.evaluation.torch_segmenters import TeacherSegmenter  # noqa: E402
from edge_medsam.models.files import load_model, save_model  # noqa: E402
from edge_medsam.models.student import EdgeStudent  # noqa: E402
from edge_medsam.models.teachers import TeacherFeatures  # noqa: E402
from edge_medsam.models.teachers.ka2er import Ka2erTeacher, build_ka2er  # noqa: E402
from edge_medsam.recipes import DistillStageSection, StudentSection, TeacherSection  # noqa: E402
from edge_medsam.training.jobs import distill_student, train_teacher  # noqa: E402
from edge_medsam.training.ka2er_job import build_for_section, train_ka2er  # noqa: E402

SIZE = 64
TASKS = {"grey": ["mr", "ultrasound"], "colour": ["fundus"]}
TINY = {
    "tasks": TASKS,
    "expert_filters": [8, 8, 16, 16, 16, 16],
    "target_feature_size": 12,
    "target_depths": [1, 1, 1, 1],
    "dim": 32,
    "heads": 4,
    "reduce_to": 8,
    "prompt_dim": 64,
    "decoder_mlp_dim": 128,
    "decoder_heads": 2,
    "iou_hidden_dim": 32,
}
QUIET = {"tensorboard": False, "log_every": 10}


def tiny_section(**options) -> TeacherSection:
    return TeacherSection(
        family="ka2er", image_size=SIZE,
        options={**TINY, "expert_train": {"steps": 10, "batch_size": 4, "lr": 3e-3, "warmup_steps": 2, **QUIET},
                 **options},
        interactive={"iterations": 0, "objects_per_image": 8, "box_prob": 1.0},
        train={"steps": 40, "batch_size": 4, "lr": 5e-3, "warmup_steps": 3, **QUIET})


def tiny_teacher(**changes) -> Ka2erTeacher:
    return build_ka2er(TASKS, image_size=SIZE, **{**{k: v for k, v in TINY.items() if k != "tasks"}, **changes})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ka2er_corpus")
    write_corpus(root, per_modality=10, size=SIZE, seed=0, modalities=["mr", "fundus", "ultrasound"], volumes=0,
                 progress=False)
    train, test = split_samples(open_dataset(root).samples, (0.7, 0.3), seed=0)
    return train, test


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("ka2er_run")
    return out, train_teacher(tiny_section(), corpus[0], out, seed=0)  # through the family registry


def untrained(samples) -> Ka2erTeacher:
    torch.manual_seed(0)  # what train_ka2er starts from with seed 0
    return build_for_section(tiny_section(), samples)[0].eval()


def box_dice(model: Ka2erTeacher, samples) -> float:
    report = evaluate(TeacherSegmenter(model), samples, prompts=["box"], max_objects=4, progress=False)
    return report.overall()["box"]["dice"]


def test_two_stage_training_beats_the_untrained_model_on_held_out_images(corpus, trained) -> None:
    train, test = corpus
    out, path = trained
    assert [p.name for p in sorted(out.glob("stage*"))] == ["stage1_expert_colour", "stage1_expert_grey",
                                                           "stage2_amalgamation"]
    assert all((stage / "done.json").exists() for stage in out.glob("stage*"))
    after, before = box_dice(load_model(path), test), box_dice(untrained(train), test)
    assert after > before + 0.2, (after, before)


def test_experts_are_trained_first_and_frozen_while_amalgamating(corpus, trained) -> None:
    out, path = trained
    final, initial = load_model(path), untrained(corpus[0])
    for name in TASKS:
        stage1 = load_checkpoint(out / f"stage1_expert_{name}" / "checkpoints" / LATEST)["model"]
        expert = final.experts[name].state_dict()
        assert stage1.keys() == expert.keys()
        assert all(torch.equal(stage1[key], expert[key]) for key in stage1)  # stage 2 left them as stage 1 did
        assert not torch.equal(expert["net.input_block.conv1.conv.weight"],
                               initial.experts[name].state_dict()["net.input_block.conv1.conv.weight"])
    for part in ("target", "amalgamation", "spatial_prompts", "mask_decoder"):
        moved = [not torch.equal(a, b) for a, b in zip(getattr(final, part).parameters(),
                                                       getattr(initial, part).parameters(), strict=True)]
        assert sum(moved) > len(moved) // 2, part
    stage2 = load_checkpoint(out / "stage2_amalgamation" / "checkpoints" / LATEST)
    optimised = sum(len(group["params"]) for group in stage2["optimizer"]["param_groups"])
    names = initial.freeze_for_training()
    assert optimised == len(names) and not any(name.startswith("experts.") for name in names)
    initial.train()
    assert initial.target.training and not any(m.training for m in initial.experts.modules())


def test_a_finished_run_resumes_without_training_again(corpus, trained) -> None:
    out, path = trained
    metrics = {p: p.read_text() for p in out.glob("stage*/metrics.csv")}
    before = torch.load(path, weights_only=True)["model"]
    train_ka2er(tiny_section(), corpus[0], out, seed=0, resume=True)
    assert {p: p.read_text() for p in out.glob("stage*/metrics.csv")} == metrics
    after = torch.load(path, weights_only=True)["model"]
    assert all(torch.equal(before[key], after[key]) for key in before)


def test_common_teacher_interface(trained) -> None:
    teacher = load_model(trained[1])
    assert isinstance(teacher, Ka2erTeacher) and teacher.profile.preprocess.size == SIZE
    image = np.random.default_rng(0).random((48, 64, 3), dtype=np.float32)
    x, geometry = teacher.prepare(image)
    images = torch.cat([x, x.flip(-1)])
    with torch.no_grad():
        features = teacher.encode(images)
        grid, low = SIZE // 8, teacher.low_res_size
        assert features.embedding.shape == (2, 64, grid, grid) and low == 4 * grid
        assert [tuple(m.shape) for m in features.multiscale] == [(2, 32, 16, 16), (2, 32, 8, 8), (2, 32, 4, 4)]
        boxes = torch.tensor([[[4.0, 4, 30, 30], [20, 10, 60, 40], [1, 30, 20, 47]]] * 2)
        logits, iou = teacher.decode(features, boxes=boxes)
        assert logits.shape == (6, 3, low, low) and iou.shape == (6, 3)
        single, _ = teacher.decode(features, boxes=boxes[:, 0], multimask=False)
        assert single.shape == (2, 1, low, low)
        # distillation caches only the embedding: decoding must not need the multiscale maps
        alone, _ = teacher.decode(TeacherFeatures(features.embedding, []), boxes=boxes)
        assert torch.equal(alone, logits)
        # a box as two labelled corner points (the packed form trainers use) is the same prompt
        corners = (boxes.reshape(2, 3, 2, 2), torch.tensor([2, 3]).expand(2, 3, 2))
        assert torch.allclose(teacher.decode(features, points=corners)[0], logits, atol=1e-5)
        clicks = (torch.tensor([[[10.0, 12], [40, 30]]] * 2), torch.tensor([[1, 0]] * 2))
        refined, _ = teacher.decode(features, points=clicks, mask_input=logits[::3, :1])
        assert refined.shape == (2, 3, low, low) and torch.isfinite(refined).all()
        with pytest.raises(InputError, match="low-res"):
            teacher.decode(features, points=clicks, mask_input=torch.zeros(2, 1, 16, 16))
        with pytest.raises(InputError, match="prepare"):
            teacher.encode(torch.zeros(1, 3, 32, 32))
    assert geometry.size == SIZE


def test_save_and_load_round_trip_strictly(trained, tmp_path: Path) -> None:
    teacher = load_model(trained[1])
    copy = load_model(save_model(teacher, tmp_path / "copy.pt"))
    assert copy.model_spec() == teacher.model_spec() and copy.model_spec()["kind"] == "ka2er_teacher"
    state, again = teacher.state_dict(), copy.state_dict()
    assert state.keys() == again.keys() and any(key.startswith("experts.grey.") for key in state)
    assert all(torch.equal(state[key], again[key]) for key in state)
    x = torch.randn(1, 3, SIZE, SIZE)
    box = torch.tensor([[10.0, 10, 40, 50]])
    with torch.no_grad():
        assert torch.equal(teacher(x, boxes=box)[0], copy(x, boxes=box)[0])
    broken = torch.load(trained[1], weights_only=True)
    del broken["model"]["experts.colour.net.input_block.conv1.conv.weight"]
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(EdgeMedSAMError, match="do not match"):
        load_model(tmp_path / "broken.pt")


def test_distill_student_takes_it_as_teacher(corpus, trained, tmp_path: Path) -> None:
    quick = {"steps": 1, "batch_size": 2, "warmup_steps": 1, "tensorboard": False, "log_every": 1}
    stages = [DistillStageSection("general", train=quick),
              DistillStageSection("decoder", losses={"max_objects": 2}, train=quick)]
    student = distill_student(StudentSection("tiny", {"image_size": SIZE}), stages, trained[1], corpus[0][:4],
                              tmp_path, seed=0)
    assert isinstance(load_model(student), EdgeStudent)
    logged = {}
    for name in ("stage0_general", "stage1_decoder"):
        with open(tmp_path / name / "metrics.csv", newline="") as handle:
            logged.update(next(csv.DictReader(handle)))
    assert math.isfinite(float(logged["embed"])) and math.isfinite(float(logged["kd_mask"]))


def test_options_and_tasks_are_checked(corpus, tmp_path: Path) -> None:
    with pytest.raises(EdgeMedSAMError, match="unknown key 'widht' in KA²ER options"):
        tiny_teacher(widht=3)
    with pytest.raises(InputError, match="multiple of 32"):
        build_ka2er(TASKS, image_size=80, **{k: v for k, v in TINY.items() if k != "tasks"})
    with pytest.raises(InputError, match="modality"):
        build_ka2er({"grey": ["mri-ish"]})
    with pytest.raises(InputError, match="task name"):
        build_ka2er({"Grey.Scale": ["mr"]})
    with pytest.raises(EdgeMedSAMError, match="no training samples"):
        train_ka2er(tiny_section(tasks={"radiology": ["ct"]}), corpus[0], tmp_path)
