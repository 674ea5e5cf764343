"""Accuracy per precision, so speed never hides a loss: Dice of every variant's masks against the FP32 reference's
masks (PyTorch FP32 where the run has the model, else the FP32 ONNX graphs), and against the ground truth, on
held-out synthetic images with box prompts and the self-prompt (``edge_medsam.compress.parity``'s chain).

Dice against the ground truth means something only for trained weights; for random weights the agreement with
FP32 is the figure (the report says which).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_medsam.benchmark.scenarios import Variant
from edge_medsam.compress.parity import PROMPT_KINDS, ChainOutputs, dice, dice_scores, run_chain


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
