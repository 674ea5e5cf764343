"""Dice / NSD with the challenge's conventions."""

import numpy as np
import pytest

from edge_medsam.metrics import Score, ScoreTable, score_labels, score_mask


def disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_identical_masks_score_one_and_disjoint_zero():
    a = disc((64, 64), (32, 32), 10)
    assert score_mask(a, a) == Score(1.0, 1.0)
    assert score_mask(a, disc((64, 64), (5, 5), 3)).dice == 0.0
    assert score_mask(np.zeros((8, 8)), np.zeros((8, 8))) == Score(1.0, 1.0)
    assert score_mask(a, np.zeros_like(a)) == Score(0.0, 0.0)


def test_nsd_tolerates_boundary_shifts_within_two_pixels_but_not_beyond():
    target = disc((96, 96), (48, 48), 20)
    near = disc((96, 96), (49, 48), 20)
    far = disc((96, 96), (54, 48), 20)
    assert score_mask(near, target).nsd > 0.99
    assert score_mask(far, target).nsd < 0.7
    assert score_mask(near, target).dice == pytest.approx(1 - 2 * 20 * 2 / (2 * np.pi * 400), abs=0.02)


def test_nsd_tolerance_is_inclusive_on_a_shifted_square():
    """DeepMind's surface elements: a square shifted by the tolerance keeps every boundary element; one pixel more
    loses both vertical sides."""
    target = np.zeros((64, 64), bool)
    target[20:40, 20:40] = True
    assert score_mask(np.roll(target, 2, axis=1), target).nsd == 1.0
    assert 0.5 < score_mask(np.roll(target, 3, axis=1), target).nsd < 0.6


def test_nsd_uses_spacing_in_3d_and_drops_to_zero_below_dice_threshold():
    target = np.zeros((20, 40, 40), bool)
    target[5:15, 10:30, 10:30] = True
    shifted = np.roll(target, 1, axis=0)
    assert score_mask(shifted, target, spacing=(1.0, 1.0, 1.0)).nsd > 0.95
    assert score_mask(shifted, target, spacing=(5.0, 1.0, 1.0)).nsd < 0.95
    sliver = np.zeros_like(target)
    sliver[5, 10:12, 10:12] = True
    assert score_mask(sliver, target).nsd == 0.0


def test_label_maps_and_table():
    target = np.zeros((32, 32), np.uint8)
    target[2:10, 2:10] = 1
    target[20:30, 20:30] = 2
    pred = target.copy()
    pred[20:30, 20:25] = 0
    scores = score_labels(pred, target)
    assert scores[1] == Score(1.0, 1.0) and 0.6 < scores[2].dice < 0.7
    table = ScoreTable()
    table.add("ct", "liver", scores[1])
    table.add("ct", "kidney", scores[2])
    summary = table.summary()
    assert summary["ct"]["all"]["n"] == 2 and summary["all"]["all"]["dice"] == pytest.approx((1 + scores[2].dice) / 2)
    assert "| ct | liver | 1.0000 | 1.0000 | 1 |" in table.markdown()
