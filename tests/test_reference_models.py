"""Reference configurations (SAM ViT-B, LiteMedSAM, MobileSAM, EfficientViT-SAM-L0, ESP-MedSAM): tiny builds that
decode boxes and points, export graphs that reproduce the Teacher interface and ONNX Runtime, training through
``train_teacher`` with a save/load round trip, and the published sizes at full scale (built on the meta device).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from edge_medsam.compress.reference_export import export_reference_onnx  # noqa: E402
from edge_medsam.models.files import load_model  # noqa: E402
from edge_medsam.models.reference import (  # noqa: E402
    REFERENCE_NAMES,
    build_from_spec,
    build_reference,
    reference_graphs,
    reference_summary,
)
from edge_medsam.models.reference.graphs import embed_points  # noqa: E402

SIZE = 64
DECODER = {"prompt_dim": 32, "decoder_mlp_dim": 64, "decoder_heads": 4, "iou_hidden_dim": 32}
TINYVIT = {"embed_dims": (16, 32, 32, 48), "depths": (1, 1, 1, 1), "num_heads": (1, 2, 2, 3)}
TINY = {
    "sam_vit_b": {"arch": "vit_tiny", "image_size": SIZE},
    "litemedsam": {"image_size": SIZE, **TINYVIT, **DECODER},
    "mobilesam": {"image_size": SIZE, **TINYVIT, **DECODER},
    "efficientvit_sam_l0": {"image_size": SIZE, "widths": (8, 16, 16, 32, 32), "depths": (1, 1, 1, 1, 1),
                            "head_dim": 8, "neck_width": 16, "neck_depth": 1, **DECODER},
    "esp_medsam": {"image_size": SIZE, **TINYVIT, **DECODER, "controllers": 6, "modality": 2},
}
GRID = {"sam_vit_b": 4, "litemedsam": 16, "mobilesam": 4, "efficientvit_sam_l0": 8, "esp_medsam": 4}
MASKS = {"sam_vit_b": 1, "litemedsam": 1, "mobilesam": 3, "efficientvit_sam_l0": 3, "esp_medsam": 1}


def tiny(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_reference(name, **TINY[name])


def _boxes(images: int, per_image: int, seed: int = 1) -> torch.Tensor:
    corners = torch.rand(images, per_image, 2, 2, generator=torch.Generator().manual_seed(seed)) * SIZE
    return torch.cat([corners.amin(2), corners.amax(2)], dim=-1)


def test_the_five_references_are_registered() -> None:
    assert REFERENCE_NAMES == ("sam_vit_b", "litemedsam", "mobilesam", "efficientvit_sam_l0", "esp_medsam")


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_tiny_reference_decodes_boxes_and_points_and_rebuilds_from_its_spec(name: str) -> None:
    model = tiny(name)
    low, masks = 4 * GRID[name], MASKS[name]
    images = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = model.encode(images)
        assert tuple(features.embedding.shape) == (2, 32, GRID[name], GRID[name])
        logits, iou = model.decode(features, boxes=_boxes(2, 3))
        assert tuple(logits.shape) == (6, masks, low, low) and tuple(iou.shape) == (6, masks)
        coords = torch.rand(2, 4, 2, generator=torch.Generator().manual_seed(2)) * SIZE
        logits, iou = model.decode(features, points=(coords, torch.tensor([[1, 0, 1, 1], [1, 1, 0, -1]])),
                                   mask_input=torch.randn(2, 1, low, low))
        assert tuple(logits.shape) == (2, masks, low, low) and tuple(iou.shape) == (2, masks)
        assert torch.isfinite(logits).all() and logits.std() > 0
    spec = model.model_spec()
    assert spec["kind"] == "reference" and spec["name"] == name
    rebuilt = build_from_spec(spec)
    assert type(rebuilt) is type(model)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_esp_medsam_self_prompts_without_prompts_and_picks_the_modality_slot() -> None:
    model = tiny("esp_medsam")
    images = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    encoder, _, decoder, _ = reference_graphs(model)
    with torch.no_grad():
        logits, iou = model.decode(model.encode(images))  # the released mode: self-prompt only
        assert tuple(logits.shape) == (1, 1, 16, 16) and tuple(iou.shape) == (1, 1)
        coords, labels = torch.zeros(1, 1, 2), -torch.ones(1, 1)
        by_slot = []
        for slot in (0, 5):
            outputs = encoder(images, torch.tensor([slot]))
            by_slot.append(outputs[0])
            masks, _ = decoder(*outputs, coords, labels)
            slot_masks, _ = model.decode_objects(outputs[0], outputs[1], torch.tensor([0]),
                                                 embed_points(model.prompt_encoder, coords, labels))
            assert torch.equal(masks, slot_masks) is (slot == 0)
    # Six controller sets: the modality index changes the embedding inside the one graph.
    assert not torch.allclose(by_slot[0], by_slot[1])


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_export_graphs_reproduce_the_teacher_interface(name: str) -> None:
    model = tiny(name)
    encoder, encoder_inputs, decoder, decoder_inputs = reference_graphs(model)
    assert len(encoder_inputs) == len(encoder.input_names) and len(decoder_inputs) == len(decoder.input_names)
    coords, labels = decoder_inputs[-2:]
    assert coords.shape[0] > 1 and coords.shape[1] > 1 and {2.0, 3.0} <= set(labels.unique().tolist())
    with torch.no_grad():
        outputs = encoder(*encoder_inputs)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        features = model.encode(encoder_inputs[0])
        torch.testing.assert_close(outputs[0], features.embedding)
        # Box corners in the prompt: SAM's prompt encoder adds no padding point, as in the graph.
        masks, iou = decoder(*outputs, coords, labels)
        want_masks, want_iou = model.decode(features, points=(coords[None], labels[None]))
        torch.testing.assert_close(masks, want_masks)
        torch.testing.assert_close(iou, want_iou)
        all_labels = torch.tensor([[-1.0, 0.0, 1.0, 2.0, 3.0]])
        points = torch.rand(1, 5, 2, generator=torch.Generator().manual_seed(3)) * SIZE
        torch.testing.assert_close(embed_points(model.prompt_encoder, points, all_labels),
                                   model.prompt_encoder._embed_points(points, all_labels, pad=False), rtol=0, atol=0)


# Each graph export takes seconds on a 2-core machine, so each reference exports what is its own: the SAM ViT,
# TinyViT (the pointwise variant; MobileSAM's differs only in two convs) and EfficientViT encoders, one SAM decoder
# graph (the same class serves the four SAM-decoder references; MobileSAM's is the multimask one) and ESP-MedSAM's two.
EXPORTS = [("sam_vit_b", ("encoder",)), ("litemedsam", ("encoder",)), ("mobilesam", ("decoder",)),
           ("efficientvit_sam_l0", ("encoder",)), ("esp_medsam", ("encoder", "decoder"))]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "graphs"), EXPORTS)
def test_onnx_export_runs_in_onnxruntime_like_pytorch(name: str, graphs: tuple[str, ...], tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = tiny(name)
    paths = export_reference_onnx(model, tmp_path, graphs=graphs)
    assert sorted(paths) == sorted(graphs)
    for path in paths.values():
        proto = onnx.load(str(path))
        assert next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 18
    encoder, encoder_inputs, decoder, _ = reference_graphs(model)
    boxes = _boxes(1, 4, seed=5)
    with torch.no_grad():
        outputs = encoder(*encoder_inputs)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        features = model.encode(encoder_inputs[0])
        want, _ = model.decode(features, boxes=boxes)
    if "encoder" in paths:
        session = ort.InferenceSession(str(paths["encoder"]), providers=["CPUExecutionProvider"])
        got = session.run(None, {n: t.numpy() for n, t in zip(encoder.input_names, encoder_inputs, strict=True)})
        np.testing.assert_allclose(got[0], features.embedding.numpy(), atol=1e-4, rtol=1e-4)
    if "decoder" in paths:
        proto = onnx.load(str(paths["decoder"]))
        dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
        assert dims["point_coords"] == ["objects", "points", 2] and dims["point_labels"] == ["objects", "points"]
        # Four boxes of one image as corner points through ORT, against the Teacher interface's box prompts.
        session = ort.InferenceSession(str(paths["decoder"]), providers=["CPUExecutionProvider"])
        feed = {n: t.numpy() for n, t in zip(decoder.input_names, outputs, strict=False)}
        labels = np.tile(np.array([[2.0, 3.0]], np.float32), (4, 1))
        masks, _ = session.run(None, {**feed, "point_coords": boxes.reshape(4, 2, 2).numpy(), "point_labels": labels})
        np.testing.assert_allclose(masks, want.numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_tiny_litemedsam_trains_through_train_teacher_and_round_trips(tmp_path) -> None:
    from edge_medsam.data.layouts import open_dataset
    from edge_medsam.data.synth import write_corpus
    from edge_medsam.recipes import TeacherSection
    from edge_medsam.training.jobs import train_teacher

    write_corpus(tmp_path / "corpus", per_modality=2, size=SIZE, seed=3, modalities=["fundus", "xray"], volumes=0)
    samples = list(open_dataset(tmp_path / "corpus").samples)
    section = TeacherSection(family="reference", options={"name": "litemedsam", **TINY["litemedsam"]},
                             interactive={"iterations": 1, "objects_per_image": 2},
                             train={"steps": 3, "batch_size": 2, "lr": 1e-3, "warmup_steps": 1, "ckpt_every": 3,
                                    "log_every": 1, "tensorboard": False})
    path = train_teacher(section, samples, tmp_path / "run", seed=4)
    loaded = load_model(path)
    torch.manual_seed(4)
    initial = build_reference("litemedsam", **TINY["litemedsam"])
    assert type(loaded) is type(initial) and loaded.model_spec() == initial.model_spec()
    changed = [k for k, v in loaded.state_dict().items() if not torch.equal(v, initial.state_dict()[k])]
    assert any(k.startswith("image_encoder.") for k in changed) and any(k.startswith("mask_decoder.") for k in changed)
    images = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        again = load_model(path)
        first = loaded.decode(loaded.encode(images), boxes=_boxes(1, 2))
        second = again.decode(again.encode(images), boxes=_boxes(1, 2))
    torch.testing.assert_close(first, second, rtol=0, atol=0)


# Published totals (SAM ViT-B checkpoint; MobileSAM README; EfficientViT-SAM README / MedficientSAM), LiteMedSAM's
# encoder (Rep-MedSAM README: 5.7M) and ESP-MedSAM's released parts counted from its model.py (notes/esp-medsam.md).
PUBLISHED_TOTALS = {"sam_vit_b": 93.7e6, "mobilesam": 9.66e6, "efficientvit_sam_l0": 34.79e6}


def _meta(name: str, **overrides):
    with torch.device("meta"):
        return build_reference(name, **overrides)


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", sorted(PUBLISHED_TOTALS))
def test_full_size_totals_match_the_published_counts(name: str) -> None:
    assert _count(_meta(name)) == pytest.approx(PUBLISHED_TOTALS[name], rel=0.02)


def test_full_size_litemedsam_and_esp_medsam_parts_match_their_releases() -> None:
    lite = _meta("litemedsam")
    assert _count(lite.image_encoder) == pytest.approx(5.7e6, rel=0.02)
    assert lite.image_size == 256 and lite.low_res_size == 256  # 1x1 patch embedding keeps 1024-sized maps
    esp = _meta("esp_medsam")
    med = sum(p.numel() for n, p in esp.image_encoder.named_parameters() if ".med." in n)
    assert med == 3_144_202 and _count(esp.image_encoder) - med == 5_743_892
    assert _count(esp.patch_decoder) == 65_793 and _count(esp.dense_prompter) == 1_024
    assert _count(esp.prompt_encoder) == 6_220 and esp.mask_decoder.mask_query.num_embeddings == 7
    # The release (12.47M without its unused classifier) plus the IoU head on the spare query.
    assert _count(esp) == 12_467_947 + _count(esp.mask_decoder.iou_prediction_head)
    shared = _meta("esp_medsam", controllers=6)
    assert _count(shared) - _count(esp) == 5 * 3_144_202


# Published encoder compute in GMACs (papers' "GFLOPs" count MACs): LiteMedSAM's TinyViT 38.1 (Rep-MedSAM; as
# much as MobileSAM's 38.2 at 1024), EfficientViT-SAM-L0 35 (its README), ESP-MedSAM 113.4 GFLOPs measured = 56.7.
PUBLISHED_GMACS = {"litemedsam": 38.1, "efficientvit_sam_l0": 35.0, "esp_medsam": 56.7}


@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS))
def test_summary_counts_native_size_compute(name: str) -> None:
    summary = reference_summary(name)
    total = summary["encoder_gmacs"] + (summary["decoder_gmacs"] if name == "esp_medsam" else 0.0)
    assert total == pytest.approx(PUBLISHED_GMACS[name], rel=0.05)
    assert summary["decoder_gmacs"] == pytest.approx(1.8, rel=0.1)  # SAM's decoder, one box
    assert summary["params"] == summary["encoder_params"] + summary["decoder_params"] == _count(_meta(name))
