"""The decoder stage's wrong self-prompts: automatic masks with an object dropped or a background blob added."""

from __future__ import annotations

import numpy as np
import torch

from edge_medsam.training.student_task import spoil_masks


def _scene():
    labels = torch.zeros(1, 64, 64, dtype=torch.int64)
    labels[0, 8:24, 8:24] = 1
    labels[0, 40:56, 36:60] = 2
    logits = torch.where(labels[:, ::4, ::4] > 0, 5.0, -5.0)  # a right automatic mask on the 16x16 grid
    return labels, logits


def test_spoiled_masks_drop_an_object_or_add_a_blob_and_nothing_else():
    labels, logits = _scene()
    kinds = set()
    for seed in range(20):
        spoiled = spoil_masks(logits, labels, np.random.default_rng(seed), prob=1.0)
        changed = spoiled != logits
        assert changed.any()
        inside = labels[:, ::4, ::4] > 0
        if (changed & inside).any():  # an object dropped: all of it, made background, and only it
            kinds.add("dropped")
            assert not (changed & ~inside).any() and (spoiled[changed] < 0).all()
            ids = torch.unique(labels[:, ::4, ::4][changed])
            assert len(ids) == 1 and (spoiled[labels[:, ::4, ::4] == ids[0]] < 0).all()
        else:  # a blob added on background
            kinds.add("blob")
            assert (spoiled[changed] >= 1).all()
    assert kinds == {"dropped", "blob"}


def test_prob_zero_keeps_the_masks_and_the_input_is_never_modified():
    labels, logits = _scene()
    before = logits.clone()
    assert torch.equal(spoil_masks(logits, labels, np.random.default_rng(0), prob=0.0), logits)
    spoil_masks(logits, labels, np.random.default_rng(0), prob=1.0)
    assert torch.equal(logits, before)
