"""SAM building blocks: official key layout at real sizes (on the meta device), SAM-Med2D adapter numerics,
box-corner point labels and per-prompt decoder batching against the official modules."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

import torch.nn.functional as F  # noqa: E402
from segment_anything import sam_model_registry  # noqa: E402
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer  # noqa: E402
from segment_anything.modeling.image_encoder import Block  # noqa: E402

from edge_medsam.errors import InputError  # noqa: E402
from edge_medsam.models.sam import (  # noqa: E402
    AdaptedBlock,
    build_image_encoder,
    build_mask_decoder,
    build_prompt_encoder,
    get_arch,
)
from edge_medsam.models.teachers import build_sam  # noqa: E402


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


@pytest.mark.parametrize(("arch", "keys"), [("vit_b", 314), ("vit_l", 482), ("vit_h", 594)])
def test_layout_equals_official_sam(arch: str, keys: int) -> None:
    with torch.device("meta"):
        ours = build_sam(arch, 1024)
        official = sam_model_registry[arch]()
    assert _shapes(ours) == _shapes(official)
    assert len(_shapes(ours)) == keys


def test_sam_med2d_layout_has_the_released_adapter_keys_and_shapes() -> None:
    with torch.device("meta"):
        model = build_sam("vit_b", 256, adapter="med2d")
    shapes = _shapes(model)
    assert len(shapes) == 386
    assert shapes["image_encoder.pos_embed"] == (1, 16, 16, 768)
    assert shapes["image_encoder.blocks.2.attn.rel_pos_h"] == (31, 64)
    assert shapes["image_encoder.blocks.0.attn.rel_pos_w"] == (27, 64)
    adapter = {key.split(".Adapter.")[1]: shape for key, shape in shapes.items()
               if key.startswith("image_encoder.blocks.7.Adapter.")}
    assert adapter == {"norm.weight": (768,), "norm.bias": (768,), "channel.0.weight": (192, 768),
                       "channel.2.weight": (768, 192), "spatial.0.weight": (768, 768, 3, 3),
                       "spatial.2.weight": (768, 768, 4, 4)}
    adapter_params = sum(model.state_dict()[k].numel() for k in shapes if ".Adapter." in k)
    assert adapter_params == 180_504_576
    assert round(sum(v.numel() for v in model.state_dict().values()) / 1e6, 1) == 271.2
    with torch.device("meta"):
        plain = sam_model_registry["vit_b"]()
    trunk = {k: v for k, v in shapes.items() if ".Adapter." not in k and "pos_embed" not in k and "rel_pos" not in k}
    assert trunk == {k: v for k, v in _shapes(plain).items() if "pos_embed" not in k and "rel_pos" not in k}


def _reference_adapter(adapter: torch.nn.Module, y: torch.Tensor) -> torch.Tensor:
    """SAM-Med2D's Adapter_Layer written out: SE gate, conv s2 → ReLU → convT s2 → ReLU, skip, LayerNorm(eps 1e-5)."""
    maps = y.permute(0, 3, 1, 2)
    gate = torch.sigmoid(F.relu(maps.mean((2, 3)) @ adapter.channel[0].weight.T) @ adapter.channel[2].weight.T)
    gated = maps * gate[:, :, None, None]
    spatial = F.relu(F.conv2d(gated, adapter.spatial[0].weight, stride=2, padding=1))
    spatial = F.relu(F.conv_transpose2d(spatial, adapter.spatial[2].weight, stride=2, padding=1))
    return F.layer_norm((maps + spatial).permute(0, 2, 3, 1), (maps.shape[1],), adapter.norm.weight,
                        adapter.norm.bias, eps=1e-5)


@pytest.mark.parametrize("window_size", [0, 14])
def test_adapted_block_adds_the_adapter_in_parallel_with_the_mlp(window_size: int) -> None:
    torch.manual_seed(0)
    kwargs = {"norm_layer": torch.nn.LayerNorm, "use_rel_pos": True, "window_size": window_size,
              "input_size": (16, 16)}
    block = AdaptedBlock(64, 2, **kwargs).eval()
    with torch.no_grad():
        block.Adapter.norm.weight.normal_()
        block.Adapter.norm.bias.normal_()
        block.attn.rel_pos_h.normal_(std=0.1)
        block.attn.rel_pos_w.normal_(std=0.1)
    official = Block(64, 2, **kwargs).eval()
    official.load_state_dict({k: v for k, v in block.state_dict().items() if ".Adapter." not in f".{k}"})
    captured = {}
    official.norm2.register_forward_hook(lambda _m, _i, out: captured.update(normed=out))
    x = torch.randn(2, 16, 16, 64)
    with torch.no_grad():
        official_out = official(x)
        expected = official_out + _reference_adapter(block.Adapter, captured["normed"])
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)
        block.Adapter.norm.weight.zero_()
        block.Adapter.norm.bias.zero_()
        torch.testing.assert_close(block(x), official(x), atol=1e-6, rtol=1e-6)


def test_box_given_as_corner_points_embeds_like_a_box() -> None:
    torch.manual_seed(1)
    encoder = build_prompt_encoder(32, 256)
    with torch.no_grad():
        for embedding in encoder.point_embeddings:
            embedding.weight.normal_()
    clicks = torch.tensor([[[40.0, 50.0]], [[70.0, 20.0]]])
    boxes = torch.tensor([[10.0, 20.0, 120.0, 200.0], [0.0, 5.0, 60.0, 90.0]])
    as_box, _ = encoder(points=(clicks, torch.ones(2, 1)), boxes=boxes, masks=None)
    corner_points = torch.cat([clicks, boxes.reshape(2, 2, 2)], dim=1)
    as_points, _ = encoder(points=(corner_points, torch.tensor([[1, 2, 3], [1, 2, 3]])), boxes=None, masks=None)
    torch.testing.assert_close(as_points, as_box)
    official = PromptEncoder(embed_dim=32, image_embedding_size=(16, 16), input_image_size=(256, 256), mask_in_chans=16)
    official.load_state_dict(encoder.state_dict())
    plain_ours, _ = encoder(points=(clicks, torch.tensor([[0], [1]])), boxes=None, masks=None)
    plain_official, _ = official(points=(clicks, torch.tensor([[0], [1]])), boxes=None, masks=None)
    torch.testing.assert_close(plain_ours, plain_official)


def test_decoder_runs_many_images_and_prompts_in_one_batch_like_the_official_one() -> None:
    torch.manual_seed(2)
    ours = build_mask_decoder(32, 64, 4, 32).eval()
    official = MaskDecoder(transformer_dim=32, transformer=TwoWayTransformer(depth=2, embedding_dim=32, mlp_dim=64,
                           num_heads=4), iou_head_hidden_dim=32).eval()
    official.load_state_dict(ours.state_dict())
    embeddings, pe = torch.randn(2, 32, 16, 16), torch.randn(1, 32, 16, 16)
    sparse, dense = torch.randn(6, 4, 32), torch.randn(6, 32, 16, 16)
    with torch.no_grad():
        masks, iou = ours(embeddings.repeat_interleave(3, 0), pe, sparse, dense, multimask_output=True)
        for image in range(2):
            rows = slice(3 * image, 3 * image + 3)
            ref_masks, ref_iou = official(embeddings[image:image + 1], pe, sparse[rows], dense[rows], True)
            torch.testing.assert_close(masks[rows], ref_masks, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(iou[rows], ref_iou, atol=1e-5, rtol=1e-5)
        single, _ = ours(embeddings[:1], pe, sparse[:3], dense[:3], multimask_output=False)
        ref_single, _ = official(embeddings[:1], pe, sparse[:3], dense[:3], False)
        torch.testing.assert_close(single, ref_single, atol=1e-5, rtol=1e-5)


def test_builders_reject_what_cannot_work() -> None:
    with pytest.raises(InputError, match="multiple of 32"):
        build_image_encoder(get_arch("vit_tiny"), 272, adapter="med2d")
    with pytest.raises(InputError, match="unknown encoder adapter"):
        build_image_encoder(get_arch("vit_tiny"), 256, adapter="lora")
    with pytest.raises(InputError, match="unknown SAM encoder"):
        get_arch("vit_xl")
