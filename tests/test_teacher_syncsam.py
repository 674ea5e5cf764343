"""SyncSAM teacher: SAM equivalence at initialisation, the teacher interface, training on the synthetic corpus,
save/load, and use as a distillation source."""

from pathlib import Path

import pytest
import torch

from edge_medsam.data.dataset import SegmentationDataset, collate
from edge_medsam.data.layouts import open_dataset, split_samples
from edge_medsam.data.synth import write_corpus
from edge_medsam.errors import EdgeMedSAMError, InputError
from edge_medsam.evaluation.runner import evaluate
from edge_medsam.evaluation.torch_segmenters import TeacherSegmenter
from edge_medsam.models.files import load_model, save_model
from edge_medsam.models.teachers import TeacherFeatures, build_sam
from edge_medsam.models.teachers.syncsam import SyncSamTeacher, build_syncsam
from edge_medsam.preprocess import PreprocessConfig
from edge_medsam.recipes import DistillStageSection, StudentSection, TeacherSection, load_recipe
from edge_medsam.training.jobs import distill_student, train_teacher
from edge_medsam.training.syncsam_job import syncsam_from_section
from edge_medsam.training.teacher_view import TeacherView

SIZE = 64
TINY_CNN = {"cnn": "resnet10t", "cnn_kwargs": {"channels": [8, 16, 32, 64], "stem_width": 8}}
RECIPES = Path(__file__).parents[1] / "recipes"


def tiny(**kw) -> SyncSamTeacher:
    torch.manual_seed(0)
    return build_syncsam("vit_tiny", SIZE, **{**TINY_CNN, **kw})


def section(**changes) -> TeacherSection:
    base = dict(family="syncsam", arch="vit_tiny", image_size=SIZE, adapter=None,
                options={**TINY_CNN, "spatial_prompts": True},
                interactive={"iterations": 0, "objects_per_image": 4, "box_prob": 1.0},
                train={"steps": 100, "batch_size": 4, "lr": 0.005, "warmup_steps": 5, "tensorboard": False,
                       "ckpt_every": 1000, "log_every": 20})
    return TeacherSection(**{**base, **changes})


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    """Train/held-out samples of modalities whose objects are large enough to segment at 64 px."""
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root, per_modality=10, size=SIZE, seed=0, modalities=["xray", "dermoscopy", "mammography"], volumes=0)
    train, test = split_samples(open_dataset(root).samples, (0.7, 0.3), seed=0)
    return train, test


@pytest.fixture(scope="module")
def trained(splits, tmp_path_factory) -> Path:
    return train_teacher(section(), splits[0], tmp_path_factory.mktemp("syncsam"), seed=0)


def box_dice(model, samples) -> float:
    return evaluate(TeacherSegmenter(model), samples, prompts="box", max_objects=4, progress=False).overall()["box"]["dice"]


def test_zero_init_sync_embeds_exactly_like_sam_with_the_same_weights(tmp_path):
    torch.manual_seed(1)
    sam = build_sam("vit_tiny", SIZE, adapter=None).eval()
    sync = tiny().eval()
    sync.load_sam_state(sam.state_dict())
    images = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(sync.encode(images).embedding, sam.encode(images).embedding)
        sync.sync[0].project.weight.normal_()  # a trained projection makes the CNN branch count
        assert not torch.allclose(sync.encode(images).embedding, sam.encode(images).embedding)

    checkpoint = tmp_path / "sam_vit_tiny.pth"
    torch.save(sam.state_dict(), checkpoint)
    from_file = syncsam_from_section(section(checkpoint=str(checkpoint), options=TINY_CNN)).eval()
    with torch.no_grad():
        assert torch.equal(from_file.encode(images).embedding, sam.encode(images).embedding)

    torch.save(build_sam("vit_tiny", SIZE, adapter="med2d").state_dict(), checkpoint)
    with pytest.raises(InputError, match="SAM-Med2D adapters"):
        syncsam_from_section(section(checkpoint=str(checkpoint), options=TINY_CNN))
    with pytest.raises(EdgeMedSAMError, match=r"unknown key 'sam_arch' in teacher.options \(SyncSAM\)"):
        syncsam_from_section(section(options={"sam_arch": "vit_b"}))
    with pytest.raises(InputError, match="CNN branch 'no_such_cnn'"):
        build_syncsam("vit_tiny", SIZE, cnn="no_such_cnn")
    with pytest.raises(InputError, match=r"missing\.pth: CNN weight file not found"):
        tiny(cnn_weights=str(tmp_path / "missing.pth"))


def test_teacher_interface_shapes_prompts_and_frozen_vit():
    teacher = tiny().eval()
    images = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        features = teacher.encode(images)
        assert features.embedding.shape == (2, 32, 4, 4) and [m.shape for m in features.multiscale] == [(2, 4, 16, 16)]
        boxes = torch.tensor([[[4.0, 4, 40, 40], [10, 20, 60, 50]]] * 2)
        logits, iou = teacher.decode(features, boxes=boxes)
        assert logits.shape == (4, 3, 16, 16) and iou.shape == (4, 3)
        points = (torch.tensor([[[20.0, 30.0], [5.0, 5.0]]] * 2), torch.tensor([[1, 0]] * 2))
        single, single_iou = teacher.decode(features, points=points, mask_input=logits[::2, :1], multimask=False)
        assert single.shape == (2, 1, 16, 16) and single_iou.shape == (2, 1)
        assert teacher.decode(features)[0].shape == (2, 3, 16, 16)  # no prompt: one object per image
        embedding_only, _ = teacher.decode(TeacherFeatures(features.embedding, []), boxes=boxes)
        assert embedding_only.shape == logits.shape
        with pytest.raises(InputError, match="mask prompts of size"):
            teacher.decode(features, boxes=boxes[:, 0], mask_input=torch.zeros(2, 1, 8, 8))
        with pytest.raises(InputError, match="not \\[B, 3, 64, 64\\]"):
            teacher.encode(torch.zeros(1, 3, 32, 32))

    trainable = teacher.freeze_for_training()
    assert trainable and not any(name.startswith("image_encoder.") for name in trainable)
    for part in ("cnn.", "sync.", "neck_bridge.", "cnn_bridge.", "prompt_encoder.", "mask_decoder.med_token"):
        assert any(name.startswith(part) for name in trainable), part
    assert teacher.profile.name == "syncsam" and teacher.profile.preprocess.size == SIZE


def test_training_beats_the_untrained_model_on_held_out_images(splits, trained):
    untrained = syncsam_from_section(section(), seed=0).eval()
    before, after = box_dice(untrained, splits[1]), box_dice(load_model(trained), splits[1])
    assert after > before + 0.2, (before, after)  # measured: 0.17 -> 0.51


def test_model_file_round_trips_strictly_and_uses_the_detail_map(trained, tmp_path):
    teacher = load_model(trained)
    assert isinstance(teacher, SyncSamTeacher) and teacher.model_spec()["kind"] == "syncsam_teacher"
    copy = load_model(save_model(teacher, tmp_path / "copy.pt"))
    images = torch.randn(1, 3, SIZE, SIZE)
    boxes = torch.tensor([[8.0, 8, 48, 40]])
    with torch.no_grad():
        features = teacher.encode(images)
        logits, iou = teacher.decode(features, boxes=boxes)
        copied = copy.decode(copy.encode(images), boxes=boxes)
        assert torch.equal(logits, copied[0]) and torch.equal(iou, copied[1])
        fallback, _ = teacher.decode(TeacherFeatures(features.embedding, []), boxes=boxes)
        assert not torch.allclose(fallback, logits)  # trained bridges carry detail the embedding alone lacks

    state = torch.load(trained, weights_only=True)
    del state["model"]["sync.0.project.weight"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(EdgeMedSAMError, match="weights do not match the syncsam_teacher"):
        load_model(tmp_path / "broken.pt")


def test_distillation_takes_the_teacher_and_its_detail_map(splits, trained, tmp_path):
    teacher = load_model(trained)
    student_frame = PreprocessConfig(size=SIZE)
    view = TeacherView(teacher, student_frame)
    batch = collate([SegmentationDataset(splits[0], student_frame)[i] for i in range(2)])
    coords = torch.tensor([[[10.0, 10.0], [40.0, 40.0]], [[5.0, 8.0], [50.0, 30.0]]])
    labels = torch.tensor([[2, 3], [2, 3]])
    image_index = torch.tensor([0, 1])
    first = view.masks(batch, batch["image"], batch["modality"], image_index, coords, labels)
    cached = view.masks(batch, batch["image"], batch["modality"], image_index, coords, labels)
    with torch.no_grad():
        direct = [teacher.decode(teacher.encode(batch["image"][b : b + 1]), points=(coords[b : b + 1],
                                 labels[b : b + 1]), multimask=True) for b in range(2)]
    best = torch.stack([logits[0, iou[0].argmax()] for logits, iou in direct])[:, None]
    torch.testing.assert_close(first, best, atol=1e-5, rtol=0)
    torch.testing.assert_close(cached, best, atol=0.05, rtol=0)  # the cache holds float16

    steps = {"steps": 2, "batch_size": 2, "warmup_steps": 1, "tensorboard": False}
    student = distill_student(StudentSection(preset="tiny", overrides={"image_size": SIZE}),
                              [DistillStageSection(stage="general", train=steps),
                               DistillStageSection(stage="decoder", train=steps)],
                              trained, splits[0][:4], tmp_path / "distill")
    assert load_model(student).config.image_size == SIZE


def test_full_size_recipe_builds_vit_b_with_resnet50():
    recipe = load_recipe(RECIPES / "syncsam.yaml")
    assert recipe.teacher.family == "syncsam"
    options = {k: v for k, v in recipe.teacher.options.items() if k != "cnn_weights"}  # no download in tests
    with torch.device("meta"):
        teacher = syncsam_from_section(TeacherSection(**{**vars(recipe.teacher), "checkpoint": None, "options": options}))
    assert teacher.arch.name == "vit_b" and teacher.cnn_name == "resnet50"
    assert teacher.low_res_size == teacher.image_size // 4
