"""Prompt simulation: boxes, points, error clicks, mask prompts and the per-image object sampler."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edge_medsam.data.prompts import (
    MASK_LOGIT,
    box_from_mask,
    distance_to_edge,
    mask_prompt,
    points_from_error,
    points_from_errors,
    points_from_mask,
    simulate_prompts,
)
from edge_medsam.errors import InputError

shapes = st.tuples(st.integers(1, 24), st.integers(1, 24))
masks = shapes.flatmap(lambda shape: arrays(np.bool_, shape))
nonempty_masks = masks.filter(lambda m: m.any())
seeds = st.integers(0, 2**32 - 1)


def _inside(mask: np.ndarray, coords: np.ndarray) -> np.ndarray:
    return mask[coords[:, 1].astype(int), coords[:, 0].astype(int)]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(nonempty_masks)
def test_box_is_tight_around_the_mask(mask):
    x0, y0, x1, y1 = box_from_mask(mask)
    rows, cols = np.nonzero(mask)
    assert (x0, y0, x1, y1) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(nonempty_masks, st.floats(0.0, 0.45), st.floats(1.0, 30.0), seeds)
def test_jittered_box_stays_in_the_image_overlaps_and_moves_within_limits(mask, jitter, max_shift, seed):
    exact = box_from_mask(mask)
    box = box_from_mask(mask, np.random.default_rng(seed), jitter=jitter, max_shift=max_shift)
    height, width = mask.shape
    assert box.dtype == np.float32
    assert 0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height
    assert box[2] - box[0] >= 1 - 1e-5 and box[3] - box[1] >= 1 - 1e-5
    overlap_w = min(box[2], exact[2]) - max(box[0], exact[0])
    overlap_h = min(box[3], exact[3]) - max(box[1], exact[1])
    assert overlap_w > 0 and overlap_h > 0
    side = np.array([exact[2] - exact[0], exact[3] - exact[1]] * 2)
    reach = np.minimum(side * jitter, max_shift)
    collapsed = (exact[2] - exact[0] == 1) or (exact[3] - exact[1] == 1)  # re-centred to one pixel
    if not collapsed:
        assert np.all(np.abs(box - exact) <= reach + 1e-4)


def test_box_jitter_is_deterministic_for_a_seed_and_varies_between_seeds():
    mask = np.zeros((64, 64), bool)
    mask[10:40, 20:50] = True
    first = box_from_mask(mask, 7, jitter=0.2)
    assert np.array_equal(first, box_from_mask(mask, 7, jitter=0.2))
    assert not np.array_equal(first, box_from_mask(mask, 8, jitter=0.2))


def test_box_of_empty_mask_is_an_input_error():
    with pytest.raises(InputError, match="empty mask"):
        box_from_mask(np.zeros((5, 5), bool))
    with pytest.raises(InputError, match="2D"):
        box_from_mask(np.ones((2, 3, 3), bool))


def test_one_pixel_object_and_object_at_the_border():
    mask = np.zeros((6, 6), bool)
    mask[5, 5] = True
    assert box_from_mask(mask).tolist() == [5, 5, 6, 6]
    box = box_from_mask(mask, 0, jitter=0.9, max_shift=50)
    assert 0 <= box[0] < box[2] <= 6 and 0 <= box[1] < box[3] <= 6
    coords, labels = points_from_mask(mask, 3, 1, 0)
    assert labels.tolist() == [1, 0, -1, -1]  # positives, negatives, then padding
    assert coords[0].tolist() == [5, 5]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(masks, st.integers(0, 5), st.integers(0, 5), seeds)
def test_points_land_in_the_right_region_or_are_padding(mask, n_pos, n_neg, seed):
    coords, labels = points_from_mask(mask, n_pos, n_neg, np.random.default_rng(seed))
    assert coords.shape == (n_pos + n_neg, 2) and coords.dtype == np.float32
    assert labels.shape == (n_pos + n_neg,) and labels.dtype == np.int32
    assert (labels == 1).sum() == min(n_pos, int(mask.sum()))
    assert (labels == 0).sum() == min(n_neg, int((~mask).sum()))
    assert _inside(mask, coords[labels == 1]).all()
    assert not _inside(mask, coords[labels == 0]).any()
    assert (coords[labels == -1] == 0).all()
    real = coords[labels >= 0]
    assert len({tuple(p) for p in real.tolist()}) == len(real)  # no pixel twice


def test_negative_points_prefer_the_neighbourhood_of_the_object():
    mask = np.zeros((200, 200), bool)
    mask[90:110, 90:110] = True
    coords, labels = points_from_mask(mask, 0, 50, 0)
    assert (labels == 0).all()
    assert np.all(np.abs(coords - 100) <= 10 + 5 + 1)  # within the box grown by the default margin (5 px)


def test_full_mask_has_no_negatives_and_empty_mask_no_positives():
    _, labels = points_from_mask(np.ones((4, 4), bool), 2, 2, 0)
    assert labels.tolist() == [1, 1, -1, -1]
    _, labels = points_from_mask(np.zeros((4, 4), bool), 2, 2, 0)
    assert labels.tolist() == [0, 0, -1, -1]


def test_points_are_deterministic_for_a_seed():
    mask = np.zeros((32, 32), bool)
    mask[4:20, 8:30] = True
    a = points_from_mask(mask, 3, 3, 11)
    b = points_from_mask(mask, 3, 3, np.random.default_rng(11))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def _euclidean_to_outside(region: np.ndarray) -> np.ndarray:
    padded = np.pad(region, 1)
    outside = np.argwhere(~padded)
    out = np.zeros(region.shape)
    for r, c in np.argwhere(region):
        out[r, c] = np.sqrt(((outside - (r + 1, c + 1)) ** 2).sum(axis=1)).min()
    return out


@settings(max_examples=40, deadline=None, derandomize=True)
@given(masks)
def test_distance_to_edge_is_euclidean(region):
    np.testing.assert_allclose(distance_to_edge(region), _euclidean_to_outside(region), rtol=1e-6)


@st.composite
def prediction_pairs(draw):
    shape = draw(shapes)
    return draw(arrays(np.bool_, shape)), draw(arrays(np.bool_, shape))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(prediction_pairs(), st.integers(1, 4), st.sampled_from(["interior", "uniform", "center"]), seeds)
def test_error_points_land_in_the_error_region_with_the_right_label(pair, n, mode, seed):
    pred, target = pair
    coords, labels = points_from_error(pred, target, np.random.default_rng(seed), n, mode=mode)
    errors = int((pred != target).sum())
    assert len(coords) == len(labels) <= n
    if errors == 0:
        assert len(coords) == 0
        return
    expected = n if mode != "center" else min(n, errors)
    assert len(coords) == expected
    fn, fp = target & ~pred, pred & ~target
    assert _inside(fn, coords[labels == 1]).all()
    assert _inside(fp, coords[labels == 0]).all()


def test_error_points_empty_prediction_gives_positive_clicks_and_none_when_correct():
    target = np.zeros((30, 30), bool)
    target[5:25, 5:25] = True
    coords, labels = points_from_error(np.zeros_like(target), target, 0, 3)
    assert (labels == 1).all() and _inside(target, coords).all()
    coords, labels = points_from_error(target, target, 0, 3)
    assert coords.shape == (0, 2) and labels.shape == (0,)


def test_center_click_is_the_deepest_error_pixel_and_picks_the_bigger_error():
    target = np.zeros((41, 41), bool)
    target[10:31, 10:31] = True  # 21x21 missed square, centre (20, 20)
    pred = np.zeros_like(target)
    pred[0:3, 0:3] = True  # a small false positive
    coords, labels = points_from_error(pred, target, None, 1, mode="center")
    assert coords.tolist() == [[20, 20]] and labels.tolist() == [1]


def test_interior_mode_prefers_points_away_from_the_edge():
    target = np.zeros((64, 64), bool)
    target[8:56, 8:56] = True
    pred = np.zeros_like(target)
    interior, _ = points_from_error(pred, target, 0, 400, mode="interior")
    uniform, _ = points_from_error(pred, target, 0, 400, mode="uniform")
    depth = distance_to_edge(target)
    assert depth[interior[:, 1].astype(int), interior[:, 0].astype(int)].mean() > \
        depth[uniform[:, 1].astype(int), uniform[:, 0].astype(int)].mean() + 2


def test_error_points_choose_fn_or_fp_in_proportion_to_their_sizes():
    target = np.zeros((40, 40), bool)
    target[:, :30] = True  # FN: 3/4 of the image
    pred = np.zeros_like(target)
    pred[:, 30:] = True  # FP: 1/4
    _, labels = points_from_error(pred, target, 0, 2000, mode="uniform")
    assert abs((labels == 1).mean() - 0.75) < 0.05


def test_error_points_reject_bad_input():
    with pytest.raises(InputError, match="differ in shape"):
        points_from_error(np.zeros((3, 3), bool), np.zeros((3, 4), bool), 0)
    with pytest.raises(InputError, match="mode"):
        points_from_error(np.zeros((3, 3), bool), np.zeros((3, 3), bool), 0, mode="nearest")


def test_mask_prompt_from_logits_and_masks():
    logits = np.linspace(-5, 5, 64 * 64, dtype=np.float32).reshape(64, 64)
    assert mask_prompt(logits, 64) is not logits and np.array_equal(mask_prompt(logits, 64), logits)
    small = mask_prompt(logits, 16)
    assert small.shape == (16, 16) and small.dtype == np.float32
    mask = np.zeros((2, 128, 128), bool)
    mask[0, :64] = True
    prompt = mask_prompt(mask, 256)
    assert prompt.shape == (2, 256, 256)
    assert prompt[0, 10, 10] == pytest.approx(MASK_LOGIT) and prompt[0, 200, 10] == pytest.approx(-MASK_LOGIT)
    assert np.all(prompt[1] == pytest.approx(-MASK_LOGIT))


def test_mask_prompt_rejects_original_frame_and_non_finite_input():
    with pytest.raises(InputError, match="model frame"):
        mask_prompt(np.zeros((60, 80), np.float32))
    with pytest.raises(InputError, match="NaN"):
        mask_prompt(np.full((8, 8), np.nan, np.float32), 8)


def _label_map() -> np.ndarray:
    labels = np.zeros((48, 48), np.int32)
    labels[2:12, 2:12] = 1
    labels[20:30, 5:9] = 2
    labels[20:30, 30:40] = 2  # two pieces with one label (instances)
    labels[47, 47] = 3  # one pixel in the corner
    labels[40:48, 0:10] = 4  # touching the border
    return labels


def test_simulate_prompts_one_object_per_label_with_its_target():
    labels = _label_map()
    prompts = simulate_prompts(labels, 0, box_prob=1.0, names={1: "liver"})
    assert [p.label for p in prompts] == [1, 2, 3, 4]
    for p in prompts:
        assert np.array_equal(p.target, labels == p.label)
        assert p.box is not None and p.coords.shape == (0, 2) and p.point_labels.shape == (0,)
    assert prompts[0].name == "liver" and prompts[1].name is None


def test_simulate_prompts_points_components_and_limits():
    labels = _label_map()
    prompts = simulate_prompts(labels, 1, box_prob=0.0, n_pos=2, n_neg=1, components=True, min_pixels=2)
    assert [p.label for p in prompts] == [1, 2, 2, 4]  # label 2 split in two, the 1-pixel object left out
    for p in prompts:
        assert p.box is None and p.coords.shape == (3, 2)
        assert _inside(p.target, p.coords[p.point_labels == 1]).all()
        assert not _inside(p.target, p.coords[p.point_labels == 0]).any()
    assert sum(p.target.sum() for p in prompts) == (labels > 0).sum() - 1
    limited = simulate_prompts(labels, 1, max_objects=2)
    assert len(limited) == 2 and limited[0].label < limited[1].label


def test_simulate_prompts_components_are_8_connected_and_in_raster_order():
    labels = np.zeros((6, 6), np.int32)
    labels[0, 3] = labels[1, 2] = labels[4, 0] = 1  # a diagonal pair, then a lone pixel
    prompts = simulate_prompts(labels, 0, box_prob=1.0, components=True)
    assert [np.argwhere(p.target).tolist() for p in prompts] == [[[0, 3], [1, 2]], [[4, 0]]]


def test_simulate_prompts_box_and_points_and_count_ranges():
    labels = _label_map()
    prompts = simulate_prompts(labels, 3, box_prob=1.0, points_with_box_prob=1.0, n_pos=(1, 3), n_neg=(0, 2))
    sizes = {p.coords.shape[0] for p in prompts}
    assert all(p.box is not None for p in prompts) and len(sizes) == 1 and 1 <= sizes.pop() <= 5


@settings(max_examples=30, deadline=None, derandomize=True)
@given(arrays(np.int16, (16, 16), elements=st.integers(0, 4)), seeds)
def test_simulate_prompts_is_deterministic_for_a_seed(labels, seed):
    kwargs = {"max_objects": 2, "n_pos": (0, 2), "n_neg": 1, "jitter": 0.2}
    a = simulate_prompts(labels, seed, **kwargs)
    b = simulate_prompts(labels, np.random.default_rng(seed), **kwargs)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.label == y.label and np.array_equal(x.target, y.target)
        assert (x.box is None and y.box is None) or np.array_equal(x.box, y.box)
        assert np.array_equal(x.coords, y.coords) and np.array_equal(x.point_labels, y.point_labels)


def test_simulate_prompts_rejects_bad_label_maps():
    with pytest.raises(InputError, match="not integer"):
        simulate_prompts(np.zeros((4, 4), np.float32), 0)
    with pytest.raises(InputError, match="2D"):
        simulate_prompts(np.zeros((2, 4, 4), np.int32), 0)
    assert simulate_prompts(np.zeros((4, 4), np.uint8), 0) == []


def test_a_stack_of_errors_gives_the_clicks_of_one_call_per_object():
    rng = np.random.default_rng(3)
    targets = rng.random((5, 40, 48)) > 0.6
    preds = rng.random((5, 40, 48)) > 0.5
    preds[2] = targets[2]  # nothing to correct
    np.testing.assert_array_equal(distance_to_edge(targets), np.stack([distance_to_edge(t) for t in targets]))
    for mode in ("interior", "uniform", "center"):
        batched = points_from_errors(preds, targets, np.random.default_rng(0), 2, mode=mode)
        one_by_one = np.random.default_rng(0)
        for (coords, labels), pred, target in zip(batched, preds, targets, strict=True):
            expected = points_from_error(pred, target, one_by_one, 2, mode=mode)
            np.testing.assert_array_equal(coords, expected[0])
            np.testing.assert_array_equal(labels, expected[1])
        assert batched[2][1].size == 0


def test_coarse_distances_keep_clicks_on_error_pixels_and_favour_the_interior():
    target = np.zeros((1, 64, 64), bool)
    target[0, 8:56, 8:40] = True
    pred = np.zeros_like(target)
    pred[0, 8:56, 9:40] = True  # a one-pixel sliver missed on the left edge, and a missing block:
    pred[0, 30:50, 20:35] = False
    points = [points_from_errors(pred, target, seed, 1, mode="interior", coarse=2)[0] for seed in range(200)]
    xy = np.stack([p[0][0] for p in points]).astype(int)
    assert all(p[1][0] == 1 for p in points) and target[0, xy[:, 1], xy[:, 0]].all()
    assert not pred[0, xy[:, 1], xy[:, 0]].any()
    inside_block = (xy[:, 0] >= 21) & (xy[:, 0] <= 33) & (xy[:, 1] >= 31) & (xy[:, 1] <= 48)
    assert inside_block.mean() > 0.75  # uniform picks would give 0.67: the sliver sits at distance 1, the block deeper
