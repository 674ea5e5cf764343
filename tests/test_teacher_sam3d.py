"""3D SAM adapter teacher: SAM's 2D weights reused and frozen, training on synthetic CT volumes beats the untrained
model on held-out volumes, sliding-window inference, the 2D Teacher interface, strict files, distillation.

One tiny configuration (ViT-tiny, 16x32x32 crops of 32x64x64 volumes) is trained once per module on CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")
pytest.importorskip("nibabel")

from edge_medsam.data.layouts import open_dataset  # noqa: E402
from edge_medsam.data.synth import generate_volume, write_corpus  # noqa: E402
from edge_medsam.data.volume_crops import VolumeCropDataset, find_volume_cases, load_volume_case  # noqa: E402
from edge_medsam.errors import EdgeMedSAMError, InputError  # noqa: E402
from edge_medsam.io import write_nifti, write_nifti_labels  # noqa: E402
from edge_medsam.io.types import Volume  # noqa: E402
from edge_medsam.models.files import load_model, save_model  # noqa: E402
from edge_medsam.models.teachers import TeacherFeatures, build_sam  # noqa: E402
from edge_medsam.models.teachers.sam3d import SAM_BLOCK_KEYS, Sam3DTeacher, build_sam3d, load_sam_weights  # noqa: E402
from edge_medsam.models.teachers.sam3d_inference import ABSTAIN_LOGIT, evaluate_volumes, segment_volume  # noqa: E402
from edge_medsam.recipes import DistillStageSection, StudentSection, TeacherSection, load_recipe  # noqa: E402
from edge_medsam.training.jobs import distill_student, train_teacher  # noqa: E402
from edge_medsam.training.sam3d_job import Sam3DTask, split_options  # noqa: E402

TINY = {"crop_size": [16, 32, 32], "sam_image_size": 64, "feature_blocks": [0, 1]}
QUIET = {"tensorboard": False, "log_every": 10}


def tiny_sam(seed: int = 0):
    """A SAM ViT-tiny with random, non-zero weights everywhere (positional and relative-position tables too)."""
    torch.manual_seed(seed)
    sam = build_sam("vit_tiny", image_size=64, adapter=None).eval()
    with torch.no_grad():
        for parameter in sam.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return sam


def tiny_model(**changes) -> Sam3DTeacher:
    torch.manual_seed(0)
    return build_sam3d("vit_tiny", **{**TINY, **changes}).eval()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sam3d")
    write_corpus(root / "train", per_modality=2, size=64, modalities=["ct"], volumes=3, volume_slices=32, seed=0)
    write_corpus(root / "held", per_modality=1, size=64, modalities=["ct"], volumes=2, volume_slices=32, seed=1)
    sam_path = root / "sam_vit_tiny.pth"
    torch.save(tiny_sam().state_dict(), sam_path)
    held = [load_volume_case(case) for case in find_volume_cases(open_dataset(root / "held").samples)]
    return {"root": root, "sam": sam_path, "samples": open_dataset(root / "train").samples, "held": held}


@pytest.fixture(scope="module")
def trained(data):
    section = TeacherSection(family="sam3d", arch="vit_tiny", checkpoint=str(data["sam"]),
                             options={**TINY, "min_voxels": 100},
                             train={"steps": 40, "batch_size": 2, "lr": 0.002, "warmup_steps": 5, **QUIET})
    path = train_teacher(section, data["samples"], data["root"] / "teacher", seed=0)
    return path, load_model(path)


def test_sam_weights_fill_the_frozen_2d_parts():
    sam = tiny_sam()
    model = tiny_model()
    copied = load_sam_weights(model, sam)
    own, ref = model.encoder.state_dict(), sam.image_encoder.state_dict()
    for key in ("patch_embed.proj.weight", "pos_embed", *(f"blocks.{i}.{k}" for i in (0, 1) for k in SAM_BLOCK_KEYS)):
        assert key in copied and torch.equal(own[key], ref[key]), key
    attn = model.encoder.blocks[1].attn
    assert torch.equal(attn.rel_pos_d, (attn.rel_pos_h + attn.rel_pos_w) / 2)
    neck = model.encoder.necks[0]
    assert torch.equal(neck[2].weight[:, :, 1], ref["neck.2.weight"]) and not neck[2].weight[:, :, 0].any()
    # Each slice of a stack of equal slices gets exactly SAM's patch embedding of the (upsampled) slice.
    image = torch.randn(1, 3, 32, 32)
    volume = image[:, :, None].expand(-1, -1, 16, -1, -1)
    tokens = model.encoder.tokens(volume) - model.encoder.positions(4, 8, 8)
    upsampled = torch.nn.functional.interpolate(image, scale_factor=4, mode="bilinear", align_corners=False)
    expected = sam.image_encoder.patch_embed(upsampled)[0]
    assert all(torch.allclose(tokens[0, d], expected, atol=1e-5) for d in range(4))
    with pytest.raises(EdgeMedSAMError, match="do not fit"):
        load_sam_weights(build_sam3d("vit_mini", **TINY), sam)


def test_training_beats_untrained_on_held_out_volumes_and_keeps_sam_frozen(data, trained):
    _, model = trained
    untrained = build_sam3d("vit_tiny", checkpoint=data["sam"], **TINY)
    before = evaluate_volumes(untrained, data["held"], points=3, max_objects=4)
    after = evaluate_volumes(model, data["held"], points=3, max_objects=4)
    assert after["objects"] == before["objects"] >= 6
    assert after["dice"] > before["dice"] + 0.12, (before, after)
    sam = tiny_sam().image_encoder.state_dict()
    trained_state = model.encoder.state_dict()
    frozen = ["patch_embed.proj.weight", "pos_embed", *(f"blocks.{i}.{k}" for i in (0, 1) for k in SAM_BLOCK_KEYS
                                                          if not k.startswith("norm"))]
    assert all(torch.equal(trained_state[key], sam[key]) for key in frozen)
    assert not torch.equal(trained_state["blocks.0.adapter.linear1.weight"],
                           untrained.encoder.state_dict()["blocks.0.adapter.linear1.weight"])


def test_model_file_round_trips_strictly(trained, tmp_path):
    path, model = trained
    assert torch.load(path, weights_only=True)["spec"]["kind"] == "sam3d_teacher"
    again = load_model(save_model(model, tmp_path / "copy.pt"))
    volume = model.normalise_volume(torch.rand(1, 16, 32, 32))
    points, labels = torch.tensor([[[10.0, 12.0, 7.0]]]), torch.tensor([[1]])
    with torch.no_grad():
        assert torch.equal(model.segment(volume, points, labels), again.segment(volume, points, labels))
    state = torch.load(path, weights_only=True)
    state["model"]["encoder.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "tampered.pt")
    with pytest.raises(EdgeMedSAMError, match="do not match"):
        load_model(tmp_path / "tampered.pt")


def test_sliding_window_segments_a_whole_volume(data, trained):
    _, model = trained
    unit, labels = data["held"][0]
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    largest = np.argwhere(labels == ids[counts.argmax()])
    clicks = largest[:: len(largest) // 6][:, ::-1].astype(np.float32)  # clicks spread over the largest organ
    logits = segment_volume(model, unit, clicks)
    assert logits.shape == unit.shape
    foreground = logits.numpy() > 0
    assert foreground.any() and foreground[labels == 0].mean() < 0.1
    # A volume of exactly one window is one call of the model.
    crop, click = unit[:16, :32, :32], torch.tensor([[[20.0, 20.0, 8.0]]])
    with torch.no_grad():
        direct = model.segment(model.normalise_volume(torch.from_numpy(crop)[None]), click, torch.tensor([[1]]))[0, 0]
    assert torch.allclose(segment_volume(model, crop, click[0]), direct, atol=1e-4)
    # Windows without a positive click abstain.
    far = segment_volume(model, unit, np.array([[2.0, 2.0, 2.0]]), overlap=0.0)
    assert (far[16:, 32:, 32:] == ABSTAIN_LOGIT).all()
    with pytest.raises(InputError, match="outside"):
        segment_volume(model, unit, np.array([[70.0, 2.0, 2.0]]))
    with pytest.raises(InputError, match="positive"):
        segment_volume(model, unit, np.array([[2.0, 2.0, 2.0]]), labels=np.array([0]))


def test_2d_interface_maps_images_and_prompts_onto_a_thin_volume():
    model = tiny_model()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.encode(images)
        assert features.embedding.shape == (2, 2 * 32, 8, 8)
        coords = torch.tensor([[[5.0, 6.0], [20.0, 21.0]], [[9.0, 9.0], [0.0, 0.0]]])
        labels = torch.tensor([[1, 0], [1, -1]])
        logits, score = model.decode(TeacherFeatures(features.embedding, []), points=(coords[:, None], labels[:, None]),
                                     multimask=True)
        assert logits.shape == (2, 1, 32, 32) and score.shape == (2, 1)
        # The 3D decoder on the embedding repeated over 3 token slices (12 voxel slices), points on the middle
        # slice, gives its middle slice.
        levels = [level[:, :, None].expand(-1, -1, 3, -1, -1) for level in features.embedding.split(32, dim=1)]
        points3d = torch.cat([coords, torch.full((2, 2, 1), 5.5)], dim=-1)
        volume_logits = model.decode_volume(levels, points3d, labels, (12, 32, 32))
        assert torch.allclose(logits, volume_logits[:, :, 6], atol=1e-5)
        box_points = torch.tensor([[[4.0, 5.0, 0.0], [20.0, 24.0, 11.0]]]).expand(2, -1, -1)
        box_logits = model.decode_volume(levels, box_points, torch.tensor([[2, 3], [2, 3]]), (12, 32, 32))
        # A box is its two corner points (labels 2, 3), spanning the thin volume's depth.
        box = torch.tensor([[4.0, 5.0, 20.0, 24.0], [4.0, 5.0, 20.0, 24.0]])
        by_box, _ = model.decode(features, boxes=box)
        assert torch.allclose(by_box, box_logits[:, :, 6], atol=1e-5)
        corners = (box.view(2, 2, 2), torch.tensor([[2, 3], [2, 3]]))
        assert torch.allclose(by_box, model.decode(features, points=corners)[0], atol=1e-5)
    with pytest.raises(InputError, match="no mask prompts"):
        model.decode(features, points=(coords, labels), mask_input=torch.zeros(2, 1, 8, 8))
    with pytest.raises(InputError, match="point or box"):
        model.decode(features)


def test_distill_accepts_the_3d_teacher(data, trained, tmp_path):
    path, _ = trained
    stages = [DistillStageSection("general", train={"steps": 1, "batch_size": 2, "warmup_steps": 1, **QUIET}),
              DistillStageSection("decoder", losses={"max_objects": 2},
                                  train={"steps": 1, "batch_size": 2, "warmup_steps": 1, **QUIET})]
    student = distill_student(StudentSection("tiny", {"image_size": 64}), stages, path, data["samples"],
                              tmp_path / "student")
    assert load_model(student).config.image_size == 64


def test_volumes_are_found_read_and_cropped(data, tmp_path):
    raw = tmp_path / "Dataset001_Synth"
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    for number in range(2):
        synth = generate_volume(number, size=32, slices=16)
        write_nifti(raw / "imagesTr" / f"case{number}_0000.nii.gz", synth.hounsfield, synth.affine)
        write_nifti_labels(raw / "labelsTr" / f"case{number}.nii.gz", synth.labels,
                           Volume(synth.hounsfield, synth.affine, hounsfield=True))
    (raw / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1},
                                                  "file_ending": ".nii.gz"}))
    cases = find_volume_cases([], raw)
    assert [case.case for case in cases] == ["case0", "case1"]
    unit, labels = load_volume_case(cases[0])
    assert unit.shape == labels.shape == (16, 32, 32) and unit.min() >= 0 and unit.max() <= 1 and labels.max() > 0
    # The corpus's 2D samples lead to the corpus's volumes.
    assert len(find_volume_cases(data["samples"])) == 3
    with pytest.raises(EdgeMedSAMError, match="no labelled volumes"):
        find_volume_cases([])
    crops = VolumeCropDataset(cases, (8, 16, 16), crops_per_volume=4, seed=3)
    item = crops[5]
    assert len(crops) == 8 and item["image"].shape == (1, 8, 16, 16) and item["labels"].shape == (8, 16, 16)
    assert item["labels"].max() > 0 and torch.equal(crops[5]["image"], item["image"])


def test_recipe_and_options():
    recipe = load_recipe("recipes/sam3d.yaml")
    assert recipe.teacher.family == "sam3d" and recipe.teacher.arch == "vit_b"
    model_options, data, prompts = split_options(dict(recipe.teacher.options))
    assert tuple(model_options["crop_size"]) == (128, 128, 128) and data and "objects_per_crop" in prompts
    with pytest.raises(EdgeMedSAMError, match=r"unknown key 'crop' in teacher.options \(sam3d\)"):
        split_options({"crop": [1, 2, 3]})


def test_interrupted_training_resumes_exactly(data, tmp_path, monkeypatch):
    section = TeacherSection(family="sam3d", arch="vit_tiny", options=TINY,
                             train={"steps": 4, "batch_size": 2, "warmup_steps": 1, "ckpt_every": 2, **QUIET})
    straight = load_model(train_teacher(section, data["samples"], tmp_path / "a"))
    step = Sam3DTask.training_step

    def interrupted(self, model, batch, ctx):
        if ctx.step == 3:
            raise KeyboardInterrupt
        return step(self, model, batch, ctx)

    monkeypatch.setattr(Sam3DTask, "training_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(section, data["samples"], tmp_path / "b")
    monkeypatch.setattr(Sam3DTask, "training_step", step)
    resumed = load_model(train_teacher(section, data["samples"], tmp_path / "b", resume=True))
    expected = straight.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in resumed.state_dict().items())
