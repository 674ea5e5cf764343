"""The decoder stage: wrong self-prompts (an object dropped or a background blob added) and the self-prompt weight
that tells prompted objects from corrections of the automatic mask."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from edge_medsam.engine.distributed import DistInfo
from edge_medsam.engine.trainer import StepContext
from edge_medsam.models.student import EdgeStudent, StudentConfig
from edge_medsam.training.student_task import DistillationModel, DistillConfig, StudentDistillTask, spoil_masks


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


def test_decoder_stage_tells_prompted_objects_from_corrections_of_the_automatic_mask():
    """Prompted objects (and their refinement clicks) are decoded with the student's prompted self-prompt weight,
    the automatic mask and its corrections with weight 1: the signal that keeps a correcting click from turning
    the whole foreground into the clicked object."""
    torch.manual_seed(0)
    student = EdgeStudent(StudentConfig(image_size=64, embed_dim=32, decoder_mlp_dim=64, skip_dim=8))
    calls = []
    decode = student.decode

    def recording(*args, **kwargs):
        points = kwargs.get("points")
        calls.append((0 if points is None else points.shape[1], kwargs.get("self_prompt_weight")))
        return decode(*args, **kwargs)

    student.decode = recording
    labels = torch.zeros(2, 64, 64, dtype=torch.int64)
    labels[:, 8:24, 8:24] = 1
    labels[:, 36:56, 30:60] = 2
    batch = {"image": torch.rand(2, 3, 64, 64), "labels": labels, "modality": torch.tensor([0, 3])}
    ctx = StepContext(torch.device("cpu"), 0, np.random.default_rng(0), contextlib.nullcontext, DistInfo())
    task = StudentDistillTask(DistillConfig(stage="decoder", refine_rounds=2), teacher=None)
    out = task.training_step(DistillationModel(student, None), batch, ctx)
    assert torch.isfinite(out["loss"])
    automatic, corrections, prompted, refined = calls[0], calls[1:3], calls[3], calls[4:6]
    assert automatic == (0, None) and len(calls) == 6  # no points: the self-prompt at weight 1
    assert all(weight == 1.0 and points >= 1 for points, weight in corrections)
    assert prompted[1] is None and all(weight is None for _, weight in refined)  # the config's prompted weight
    assert student.config.prompted_self_prompt_weight == 0.0


def test_students_stored_before_the_setting_keep_the_self_prompt_on_prompted_objects():
    stored = StudentConfig().to_dict()
    assert StudentConfig.from_dict(stored).prompted_self_prompt_weight == 0.0
    del stored["prompted_self_prompt_weight"]
    assert StudentConfig.from_dict(stored).prompted_self_prompt_weight == 1.0
