"""Accuracy per precision, so speed never hides a loss: Dice of every variant's masks against the FP32 reference's
masks (PyTorch FP32 where the run has the model, else the FP32 ONNX graphs), and against the ground truth, on
held-out synthetic images: our students with box prompts and the self-prompt (``edge_medsam.compress.parity``'s
chain), the anchors with box prompts through the benchmark's own pipeline (``measure_box_accuracy``).

Dice against the ground truth means something only for trained weights; for random weights the agreement with
FP32 is the figure (the report says which).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_medsam.benchmark.scenarios import Pipeline, Variant
from edge_medsam.compress.parity import PROMPT_KINDS, ChainOutputs, dice_scores, run_chain
from edge_medsam.metrics import dice


def agreement(chain: ChainOutputs, reference: ChainOutputs) -> dict[str, float]:
    """Mean Dice of each object's final mask with the reference's, per prompt kind."""
    return {kind: float(np.mean([dice(a, b) for run, ref in zip(chain.masks[kind], reference.masks[kind], strict=True)
                                 for a, b in zip(run, ref, strict=True)])) for kind in PROMPT_KINDS}


def measure_accuracy(reference: Variant, variants: list[Variant], probes: list[Any]) -> dict[str, Any]:
    """Ground-truth Dice of the reference, and per variant: agreement with it, its own Dice and the points lost."""
    weight = reference.subject.prompted_weight
    ref_chain = run_chain(reference.encoder.run, reference.decoder.run, probes, prompted_weight=weight)
    ref_dice = dice_scores(ref_chain, probes)
    rows = []
    for variant in variants:
        chain = run_chain(variant.encoder.run, variant.decoder.run, probes, prompted_weight=weight)
        own = dice_scores(chain, probes)
        rows.append({"variant": variant.id, "backend": variant.backend, "precision": variant.precision,
                     "agreement_dice": agreement(chain, ref_chain), "dice": own,
                     "dice_points_lost": {k: round(100.0 * (ref_dice[k] - own[k]), 3) for k in PROMPT_KINDS}})
    return {"reference": reference.id, "reference_dice": ref_dice, "images": len(probes),
            "modalities": sorted({p.modality for p in probes}), "variants": rows}


def _box_masks(variant: Variant, probes: list[Any]) -> list[np.ndarray]:
    """[O, H, W] masks of each probe's objects from their exact boxes, through the variant's graphs."""
    pipeline = Pipeline(variant)
    return [pipeline.postprocess(pipeline.decode(pipeline.encode(p.image), p.box_coords.reshape(-1, 4)), p.geometry)
            for p in probes]


def measure_box_accuracy(reference: Variant, variants: list[Variant], probes: list[Any]) -> dict[str, Any]:
    """The same figures as ``measure_accuracy`` for a model without a self-prompt (an anchor): box prompts only."""
    def ground_truth_dice(masks: list[np.ndarray]) -> float:
        return float(np.mean([dice(m, t) for run, p in zip(masks, probes, strict=True)
                              for m, t in zip(run, p.box_targets, strict=True)]))

    ref_masks = _box_masks(reference, probes)
    ref_dice = ground_truth_dice(ref_masks)
    rows = []
    for variant in variants:
        masks = _box_masks(variant, probes)
        own = ground_truth_dice(masks)
        agreement = float(np.mean([dice(a, b) for run, ref in zip(masks, ref_masks, strict=True)
                                   for a, b in zip(run, ref, strict=True)]))
        rows.append({"variant": variant.id, "backend": variant.backend, "precision": variant.precision,
                     "agreement_dice": {"box": agreement}, "dice": {"box": own},
                     "dice_points_lost": {"box": round(100.0 * (ref_dice - own), 3)}})
    return {"reference": reference.id, "reference_dice": {"box": ref_dice}, "images": len(probes),
            "modalities": sorted({p.modality for p in probes}), "variants": rows}
