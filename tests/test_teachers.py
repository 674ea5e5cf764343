"""SAM-family teachers: strict loading of official-layout checkpoints, detection by content, numerics against
the reference ``segment_anything.Sam``, geometry resizing, profiles, prompt batching and the trainable split.

Numerics run on a tiny encoder; ViT-B/L/H and SAM-Med2D files are written with stride-0 tensors of the real
shapes (a few hundred kB each), so strict loading at real sizes never allocates the 0.4-2.5 GB of weights.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

import torch.nn.functional as F  # noqa: E402
from segment_anything.modeling import (  # noqa: E402
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from segment_anything.modeling.image_encoder import get_rel_pos  # noqa: E402
from torch import nn  # noqa: E402

from edge_medsam.errors import InputError  # noqa: E402
from edge_medsam.models import build_sam, load_teacher, sanitise_checkpoint  # noqa: E402
from edge_medsam.models.teachers import MEDSAM, SAM, SAM_MED2D, TeacherFeatures, best_mask  # noqa: E402

TOL = {"atol": 1e-5, "rtol": 1e-5}


def official_tiny_sam(image_size: int, seed: int = 0) -> Sam:
    """The reference: segment_anything's own Sam with a tiny encoder and random (non-zero) weights."""
    torch.manual_seed(seed)
    grid = image_size // 16
    sam = Sam(
        image_encoder=ImageEncoderViT(img_size=image_size, embed_dim=64, depth=2, num_heads=2, out_chans=32,
                                      norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True, window_size=14,
                                      global_attn_indexes=(1,)),
        prompt_encoder=PromptEncoder(embed_dim=32, image_embedding_size=(grid, grid),
                                     input_image_size=(image_size, image_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(transformer_dim=32, iou_head_hidden_dim=32,
                                 transformer=TwoWayTransformer(depth=2, embedding_dim=32, mlp_dim=64, num_heads=4)),
    ).eval()
    with torch.no_grad():
        for parameter in sam.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return sam


def stride0_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's keys and shapes with one-element storages: a ViT-H file in kilobytes."""
    return {key: torch.zeros((), dtype=value.dtype, device="cpu").expand(value.shape)
            for key, value in model.state_dict().items()}


def shaped_like(arch: str, image_size: int, adapter: str | None = None) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return stride0_state(build_sam(arch, image_size, adapter))


@pytest.fixture(scope="module")
def reference() -> Sam:
    return official_tiny_sam(256)


@pytest.fixture(scope="module")
def tiny_file(reference: Sam, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "sam_tiny.pth"
    torch.save(reference.state_dict(), path)
    return path


def _prompts(seed: int = 3) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    corners = torch.rand(2, 3, 2, 2, generator=gen) * 255
    return {"coords": torch.rand(2, 3, 4, 2, generator=gen) * 255,
            "labels": torch.tensor([1, 0, 1, -1]).repeat(2, 3, 1),
            "boxes": torch.cat([corners.amin(2), corners.amax(2)], dim=-1),
            "masks": torch.randn(2, 3, 1, 64, 64, generator=gen) * 4}


def _reference_outputs(sam: Sam, images01: torch.Tensor, multimask: bool, **prompt_keys: str
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run segment_anything's end-to-end Sam.forward, one record per image, and stack objects image-major."""
    prompts = _prompts()
    records = []
    for index in range(images01.shape[0]):
        record = {"image": images01[index] * 255, "original_size": (256, 256)}
        for key, source in prompt_keys.items():
            record[key] = prompts[source][index]
        records.append(record)
    outputs = sam(records, multimask_output=multimask)
    return (torch.cat([o["low_res_logits"] for o in outputs]), torch.cat([o["iou_predictions"] for o in outputs]))


def test_tiny_checkpoint_loads_strictly_and_matches_reference_sam(reference: Sam, tiny_file: Path) -> None:
    teacher = load_teacher(tiny_file)
    assert (teacher.arch.name, teacher.image_size, teacher.adapter, teacher.profile.name) == ("vit_tiny", 256, None,
                                                                                                "sam")
    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    prepared, geometry = teacher.prepare(images)
    assert geometry.resized == (256, 256)
    torch.testing.assert_close(prepared, torch.stack([reference.preprocess(im * 255) for im in images]), **TOL)
    prompts = _prompts()
    with torch.no_grad():
        features = teacher.encode(prepared)
        torch.testing.assert_close(features.embedding, reference.image_encoder(prepared), **TOL)
        assert [tuple(m.shape) for m in features.multiscale] == [(2, 64, 16, 16)]
        cases = [
            ({"points": (prompts["coords"], prompts["labels"])}, {"point_coords": "coords", "point_labels": "labels"}),
            ({"boxes": prompts["boxes"]}, {"boxes": "boxes"}),
            ({"points": (prompts["coords"], prompts["labels"]), "boxes": prompts["boxes"],
              "mask_input": prompts["masks"]},
             {"point_coords": "coords", "point_labels": "labels", "boxes": "boxes", "mask_inputs": "masks"}),
        ]
        for ours_kwargs, reference_keys in cases:
            for multimask in (True, False):
                logits, iou = teacher.decode(features, multimask=multimask, **ours_kwargs)
                ref_logits, ref_iou = _reference_outputs(reference, images, multimask, **reference_keys)
                assert logits.shape == (6, 3 if multimask else 1, 64, 64)
                torch.testing.assert_close(logits, ref_logits, **TOL)
                torch.testing.assert_close(iou, ref_iou, **TOL)
        end_to_end, _ = teacher(prepared, boxes=prompts["boxes"][:, 0])
        ref_single = reference([{"image": im * 255, "original_size": (256, 256), "boxes": prompts["boxes"][i, :1]}
                                for i, im in enumerate(images)], multimask_output=True)
        torch.testing.assert_close(end_to_end, torch.cat([o["low_res_logits"] for o in ref_single]), **TOL)


def test_mask_prompts_are_logits_for_sam_and_probabilities_for_sam_med2d(reference: Sam, tiny_file: Path) -> None:
    images = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    logits = _prompts()["masks"][0]
    sam_teacher, med2d_teacher = load_teacher(tiny_file), load_teacher(tiny_file, profile="sam_med2d")
    assert (SAM.mask_prompt, MEDSAM.mask_prompt, med2d_teacher.profile.mask_prompt) == ("logits", "logits",
                                                                                         "probabilities")
    with torch.no_grad():
        embedding = reference.image_encoder(reference.preprocess(images[0] * 255)[None])
        features = TeacherFeatures(embedding)

        def reference_with(mask_prompt: torch.Tensor) -> torch.Tensor:
            sparse, dense = reference.prompt_encoder(points=None, boxes=None, masks=mask_prompt)
            return reference.mask_decoder(embedding, reference.prompt_encoder.get_dense_pe(), sparse, dense, True)[0]

        as_logits, _ = sam_teacher.decode(features, mask_input=logits)
        as_probabilities, _ = med2d_teacher.decode(features, mask_input=logits)
        torch.testing.assert_close(as_logits, reference_with(logits), **TOL)
        torch.testing.assert_close(as_probabilities, reference_with(logits.sigmoid()), **TOL)
        assert not torch.allclose(as_logits, as_probabilities)


def test_no_prompt_and_ragged_inputs(reference: Sam, tiny_file: Path) -> None:
    teacher = load_teacher(tiny_file)
    with torch.no_grad():
        features = teacher.encode(torch.randn(2, 3, 256, 256))
        logits, iou = teacher.decode(features)
        assert logits.shape == (2, 3, 64, 64) and iou.shape == (2, 3)
        sparse, dense = reference.prompt_encoder(points=None, boxes=None, masks=None)
        expected, _ = reference.mask_decoder(features.embedding[1:], reference.prompt_encoder.get_dense_pe(), sparse,
                                             dense, True)
        torch.testing.assert_close(logits[1:], expected, **TOL)
        boxes = torch.tensor([[[0.0, 0, 9, 9]] * 3] * 2)
        with pytest.raises(InputError, match="objects per image"):
            teacher.decode(features, boxes=boxes, mask_input=torch.zeros(4, 1, 64, 64))
        with pytest.raises(InputError, match="do not fit 2 image"):
            teacher.decode(features, boxes=torch.zeros(3, 4))
        with pytest.raises(InputError, match="64x64"):
            teacher.decode(features, mask_input=torch.zeros(2, 1, 32, 32))
        with pytest.raises(InputError, match="do not match"):
            teacher.decode(features, points=(torch.zeros(2, 3, 2), torch.zeros(2, 2)))
        with pytest.raises(InputError, match=r"teacher\.prepare"):
            teacher.encode(torch.zeros(1, 3, 200, 200))
    chosen, score = best_mask(logits, iou)
    assert chosen.shape == (2, 1, 64, 64)
    torch.testing.assert_close(score[:, 0], iou.max(dim=1).values)


def test_official_checkpoints_are_told_apart_by_content(tmp_path: Path) -> None:
    vit_b = shaped_like("vit_b", 1024)
    torch.save(vit_b, tmp_path / "sam_vit_b_01ec64.pth")
    torch.save(vit_b, tmp_path / "medsam_vit_b.pth")
    torch.save({"state_dict": shaped_like("vit_l", 1024)}, tmp_path / "sam_vit_l_0b3195.pth")
    torch.save(shaped_like("vit_h", 1024), tmp_path / "sam_vit_h_4b8939.pth")
    med2d = shaped_like("vit_b", 256, "med2d")
    torch.save({"model": {f"module.{k}": v for k, v in med2d.items()}, "epoch": 14}, tmp_path / "sam-med2d_b.pth")
    assert max(p.stat().st_size for p in tmp_path.iterdir()) < 2_000_000

    def summary(name: str, **kwargs: object) -> tuple:
        teacher = load_teacher(tmp_path / name, **kwargs)
        return teacher.arch.name, teacher.image_size, teacher.adapter, teacher.profile.name

    assert summary("sam_vit_b_01ec64.pth") == ("vit_b", 1024, None, "sam")
    assert summary("medsam_vit_b.pth") == ("vit_b", 1024, None, "medsam")
    assert summary("medsam_vit_b.pth", profile="sam") == ("vit_b", 1024, None, "sam")
    assert summary("sam_vit_l_0b3195.pth", arch="vit_l") == ("vit_l", 1024, None, "sam")
    assert summary("sam_vit_h_4b8939.pth") == ("vit_h", 1024, None, "sam")
    assert summary("sam-med2d_b.pth") == ("vit_b", 256, "med2d", "sam_med2d")
    with pytest.raises(InputError, match="vit_b encoder, not vit_h"):
        load_teacher(tmp_path / "sam_vit_b_01ec64.pth", arch="vit_h")

    at_256 = load_teacher(tmp_path / "sam_vit_b_01ec64.pth", image_size=256)
    shapes = {k: tuple(v.shape) for k, v in at_256.state_dict().items()}
    assert shapes["image_encoder.pos_embed"] == (1, 16, 16, 768)
    assert shapes["image_encoder.blocks.11.attn.rel_pos_h"] == (31, 64)
    assert shapes["image_encoder.blocks.10.attn.rel_pos_h"] == (27, 64)
    assert (at_256.profile.preprocess.size, at_256.low_res_size) == (256, 64)
    assert not any(t.is_meta for t in at_256.state_dict().values())


def test_a_1024_checkpoint_runs_at_256_with_sam_med2d_style_resizing(tmp_path: Path) -> None:
    big = official_tiny_sam(1024, seed=5)
    torch.save(big.state_dict(), tmp_path / "tiny_1024.pth")
    teacher = load_teacher(tmp_path / "tiny_1024.pth", image_size=256)
    original = big.state_dict()
    expected_pos = F.interpolate(original["image_encoder.pos_embed"].permute(0, 3, 1, 2), (16, 16), mode="bilinear",
                                 align_corners=False).permute(0, 2, 3, 1)
    torch.testing.assert_close(teacher.image_encoder.pos_embed, expected_pos)
    table = original["image_encoder.blocks.1.attn.rel_pos_h"]
    resized = teacher.image_encoder.blocks[1].attn.rel_pos_h
    assert (table.shape, resized.shape) == ((127, 32), (31, 32))
    # The load-time table equals what SAM's attention would interpolate on the fly.
    torch.testing.assert_close(get_rel_pos(16, 16, resized), get_rel_pos(16, 16, table), **TOL)
    torch.testing.assert_close(teacher.image_encoder.blocks[0].attn.rel_pos_h,
                               original["image_encoder.blocks.0.attn.rel_pos_h"])
    with torch.no_grad():
        features = teacher.encode(torch.randn(1, 3, 256, 256))
        logits, iou = teacher.decode(features, boxes=torch.tensor([[[10.0, 10, 90, 90], [50, 60, 200, 220]]]))
    assert features.embedding.shape == (1, 32, 16, 16)
    assert (logits.shape, iou.shape) == ((2, 3, 64, 64), (2, 3))


def test_pickled_objects_are_refused_with_a_fix_and_sanitise_repairs(reference: Sam, tmp_path: Path) -> None:
    path = tmp_path / "sam-med2d_b.pth"
    torch.save({"model": reference.state_dict(), "optimizer": torch.optim.Adam(reference.parameters())}, path)
    with pytest.raises(InputError) as caught:
        load_teacher(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "torch.optim.adam.Adam" in message
    assert "sanitise_checkpoint" in message and "trust" in message
    repaired = sanitise_checkpoint(path)
    assert repaired == tmp_path / "sam-med2d_b_weights.pth"
    teacher = load_teacher(repaired)
    torch.testing.assert_close(teacher.mask_decoder.iou_token.weight, reference.mask_decoder.iou_token.weight)


def test_unusable_files_raise_input_errors_naming_the_file(reference: Sam, tmp_path: Path) -> None:
    state = reference.state_dict()
    valid = tmp_path / "valid.pth"
    torch.save(state, valid)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(valid.read_bytes()[:4000])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    three_d = tmp_path / "best.pth.tar"
    torch.save({"epoch": 3, "encoder_dict": {"pos_embed": torch.zeros(1)}, "decoder_dict": {}}, three_d)
    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, foreign)
    extra = tmp_path / "extra.pth"
    torch.save({**state, "image_encoder.blocks.0.lora.weight": torch.zeros(2)}, extra)
    missing = tmp_path / "missing.pth"
    torch.save({k: v for k, v in state.items() if "iou_prediction_head" not in k}, missing)
    cases = [(tmp_path / "absent.pth", "not found"), (truncated, "not a readable PyTorch"),
             (garbage, "not a readable PyTorch"),
             (three_d, "3DSAM-adapter"), (foreign, "no SAM image encoder"), (extra, "unexpected keys"),
             (missing, "missing keys")]
    for path, problem in cases:
        with pytest.raises(InputError, match=problem) as caught:
            load_teacher(path)
        assert str(caught.value).startswith(str(path))


def test_sam_med2d_checkpoint_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(4)
    model = build_sam("vit_tiny", 256, adapter="med2d").eval()
    torch.save({"model": model.state_dict(), "epoch": 1}, tmp_path / "tiny_med2d.pth")
    loaded = load_teacher(tmp_path / "tiny_med2d.pth")
    images, boxes = torch.randn(1, 3, 256, 256), torch.tensor([[5.0, 5, 200, 180]])
    with torch.no_grad():
        expected, loaded_out = model(images, boxes=boxes), loaded(images, boxes=boxes)
    torch.testing.assert_close(loaded_out, expected, atol=0, rtol=0)


def test_sam_med2d_from_sam_weights_and_its_trainable_split(reference: Sam, tiny_file: Path) -> None:
    teacher = load_teacher(tiny_file, adapter="med2d")
    assert (teacher.adapter, teacher.profile.name) == ("med2d", "sam_med2d")
    adapter = teacher.image_encoder.blocks[0].Adapter
    assert not adapter.spatial[0].weight.is_meta and adapter.spatial[0].weight.abs().sum() > 0
    torch.testing.assert_close(teacher.image_encoder.blocks[0].attn.qkv.weight,
                               reference.image_encoder.blocks[0].attn.qkv.weight)

    trainable = set(teacher.freeze_for_training())
    names = {name for name, _ in teacher.named_parameters()}
    expected = {n for n in names if ".Adapter." in n or n.startswith(("prompt_encoder.", "mask_decoder."))}
    assert trainable == expected and any(".Adapter." in n for n in trainable)
    assert {id(p) for p in teacher.trainable_parameters()} == {
        id(p) for n, p in teacher.named_parameters() if n in expected}
    images = torch.randn(1, 3, 256, 256)
    logits, iou = teacher(images, boxes=torch.tensor([[20.0, 30, 150, 160]]))
    (logits.mean() + iou.mean()).backward()
    grads = dict(teacher.named_parameters())
    assert grads["image_encoder.blocks.1.Adapter.spatial.2.weight"].grad is not None
    assert grads["image_encoder.blocks.1.mlp.lin1.weight"].grad is None
    assert grads["image_encoder.pos_embed"].grad is None

    medsam = build_sam("vit_tiny", 256, profile="medsam")
    trainable = set(medsam.freeze_for_training())
    assert trainable and all(n.startswith(("image_encoder.", "mask_decoder.")) for n in trainable)
    assert medsam.profile.multimask is False


def test_profiles_prepare_images_the_way_each_teacher_was_trained() -> None:
    image = np.zeros((30, 60, 3), np.float32)
    image[..., 0], image[..., 1] = 1.0, 0.5
    sam_input, geometry = SAM.at_size(64).prepare(image)
    assert sam_input.shape == (1, 3, 64, 64) and geometry.resized == (32, 64)
    np.testing.assert_allclose(sam_input[0, :, 0, 0].numpy(), [(1 - 0.485) / 0.229, (0.5 - 0.456) / 0.224,
                                                               (0 - 0.406) / 0.225], rtol=1e-5)
    assert float(sam_input[0, :, 32:].abs().max()) == 0.0
    medsam_input, geometry = MEDSAM.at_size(64).prepare(image)
    assert geometry.resized == (64, 64)
    np.testing.assert_allclose(medsam_input[0, :, 40, 10].numpy(), [1.0, 0.5, 0.0], atol=1e-6)
    med2d_input, _ = SAM_MED2D.prepare(torch.from_numpy(image).permute(2, 0, 1))
    assert med2d_input.shape == (1, 3, 256, 256)
    np.testing.assert_allclose(med2d_input[0, :, 100, 100].numpy(), [(0 - 0.485) / 0.229, (0.5 - 0.456) / 0.224,
                                                                     (1 - 0.406) / 0.225], rtol=1e-5)
    teacher = build_sam("vit_tiny", 256, adapter="med2d")
    assert teacher.profile.preprocess.resize == "stretch" and teacher.profile.channel_order == "BGR"
    assert teacher.prepare(image)[0].shape == (1, 3, 256, 256)
    assert build_sam(**teacher.config()).config() == teacher.config()
