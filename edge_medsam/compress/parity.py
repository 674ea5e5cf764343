"""Parity and accuracy of exported graphs against the PyTorch FP32 student, on real images with real prompts.

For a graph pair (encoder, decoder) on one back-end and precision this measures:
- the max absolute error of every encoder output (same image) and decoder output (fed the reference encoder
  outputs, so each graph is judged on its own), against PyTorch FP32;
- the Dice agreement of the final thresholded masks (best-IoU mask, mapped back to the original geometry) of
  the whole chain with PyTorch's, for box prompts and for the self-prompt;
- the Dice of those masks against the ground truth, and how often auto modality recognition agrees.
FP32 graphs must match tightly; ``check_fp32`` turns a mismatch into a ParityError that stops the export.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_medsam.compress.probes import Probe
from edge_medsam.compress.runners import Runner
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.metrics import dice
from edge_medsam.preprocess import logits_to_original
from edge_medsam.runtime.decoder_feed import best_of_k, decoder_feed, self_prompt_points
from edge_medsam.runtime.manifest import AUTO_MODALITY

MASK_THRESHOLD = 0.0
FP32_RTOL = 1e-4  # max |error| allowed per output, relative to max(1, max |reference|)
FP32_MIN_AGREEMENT = 0.99  # mean Dice of FP32 final masks with PyTorch's
PROMPT_KINDS = ("box", "self_prompt")


class ParityError(EdgeMedSAMError):
    """An exported graph does not reproduce the PyTorch model."""


@dataclass
class ChainOutputs:
    """Raw outputs of a graph pair on a list of probes, and the final masks they make."""

    encoder: list[dict[str, np.ndarray]]
    auto: list[dict[str, np.ndarray]]
    decoder: dict[str, list[dict[str, np.ndarray]]]  # prompt kind → per probe
    masks: dict[str, list[np.ndarray]]  # prompt kind → per probe [N, H, W] bool
    prompted_weight: float  # the self-prompt weight the box prompts were decoded with


def final_masks(outputs: dict[str, np.ndarray], probe: Probe) -> np.ndarray:
    """[N, H, W] bool: each object's highest-IoU mask, in the original geometry, thresholded at 0."""
    best, _ = best_of_k(outputs["masks"], outputs["iou_predictions"])
    return logits_to_original(best, probe.geometry) > MASK_THRESHOLD


def prompt_feeds(features: dict[str, np.ndarray], probe: Probe,
                 prompted_weight: float) -> dict[str, dict[str, np.ndarray]]:
    """The evaluated prompts of a probe: its exact boxes (decoded with the model's ``prompted_weight``), and the
    self-prompt alone (one padding point)."""
    return {"box": decoder_feed(features, probe.box_coords, probe.box_labels, prompted_weight),
            "self_prompt": decoder_feed(features, *self_prompt_points())}


def encoder_feed(probe: Probe, modality: int | None = None) -> dict[str, np.ndarray]:
    """Encoder feed of a probe with its own modality, or ``modality`` (-1 = recognise)."""
    index = probe.modality_index if modality is None else modality
    return {"image": probe.image, "modality": np.array([index], np.int64)}


def run_chain(encoder: Runner | None, decoder: Runner, probes: list[Probe], *, prompted_weight: float,
              features: list[dict[str, np.ndarray]] | None = None) -> ChainOutputs:
    """Run a graph pair on every probe; with ``features`` the decoder takes those instead of ``encoder``'s.
    ``prompted_weight``: the model's self-prompt weight for prompted objects (its manifest or config says)."""
    encoded, auto = [], []
    decoded: dict[str, list[dict[str, np.ndarray]]] = defaultdict(list)
    masks: dict[str, list[np.ndarray]] = defaultdict(list)
    for i, probe in enumerate(probes):
        if features is None:
            assert encoder is not None
            encoded.append(encoder(encoder_feed(probe)))
            auto.append(encoder(encoder_feed(probe, AUTO_MODALITY)))
        feed_from = features[i] if features is not None else encoded[-1]
        for kind, feed in prompt_feeds(feed_from, probe, prompted_weight).items():
            out = decoder(feed)
            decoded[kind].append(out)
            masks[kind].append(final_masks(out, probe))
    return ChainOutputs(encoded, auto, dict(decoded), dict(masks), prompted_weight)


def _max_abs(runs: list[dict[str, np.ndarray]], refs: list[dict[str, np.ndarray]]) -> dict[str, float]:
    errors: dict[str, float] = {}
    for run, ref in zip(runs, refs, strict=True):
        for name, value in ref.items():
            diff = np.abs(run[name].astype(np.float64) - value.astype(np.float64))
            errors[name] = max(errors.get(name, 0.0), float(diff.max()) if diff.size else 0.0)
    return errors


def _scale(refs: list[dict[str, np.ndarray]]) -> dict[str, float]:
    return {name: max(float(np.abs(r[name]).max()) for r in refs) for name in refs[0]}


def dice_scores(chain: ChainOutputs, probes: list[Probe]) -> dict[str, float]:
    """Mean Dice against the ground truth: per object for boxes, per image (all objects) for the self-prompt."""
    box = [dice(m, t) for masks, p in zip(chain.masks["box"], probes, strict=True)
           for m, t in zip(masks, p.box_targets, strict=True)]
    auto = [dice(masks[0], p.foreground) for masks, p in zip(chain.masks["self_prompt"], probes, strict=True)]
    return {"box": float(np.mean(box)), "self_prompt": float(np.mean(auto))}


def dice_by_modality(chain: ChainOutputs, probes: list[Probe]) -> dict[str, float]:
    """Mean box-prompt Dice per modality."""
    groups: dict[str, list[float]] = defaultdict(list)
    for masks, probe in zip(chain.masks["box"], probes, strict=True):
        groups[probe.modality] += [dice(m, t) for m, t in zip(masks, probe.box_targets, strict=True)]
    return {name: float(np.mean(v)) for name, v in sorted(groups.items())}


def measure(encoder: Runner, decoder: Runner, probes: list[Probe], reference: ChainOutputs) -> dict[str, Any]:
    """Parity and accuracy of a graph pair against the PyTorch reference on the same probes."""
    chain = run_chain(encoder, decoder, probes, prompted_weight=reference.prompted_weight)
    isolated = run_chain(None, decoder, probes, prompted_weight=reference.prompted_weight, features=reference.encoder)
    agreement = {kind: float(np.mean([dice(a, b) for run, ref in zip(chain.masks[kind], reference.masks[kind],
                                                                          strict=True)
                                      for a, b in zip(run, ref, strict=True)])) for kind in PROMPT_KINDS}
    auto_agree = [int(a["modality_index"][0] == r["modality_index"][0]) for a, r in zip(chain.auto, reference.auto,
                                                                                       strict=True)]
    return {
        "encoder_max_abs": _max_abs(chain.encoder + chain.auto, reference.encoder + reference.auto),
        "decoder_max_abs": _max_abs(isolated.decoder["box"] + isolated.decoder["self_prompt"],
                                    reference.decoder["box"] + reference.decoder["self_prompt"]),
        "mask_agreement": agreement,
        "auto_modality_agreement": float(np.mean(auto_agree)),
        "dice": dice_scores(chain, probes),
        "dice_by_modality": dice_by_modality(chain, probes),
    }


def fp32_problems(metrics: dict[str, Any], reference: ChainOutputs, rtol: float = FP32_RTOL,
                  min_agreement: float = FP32_MIN_AGREEMENT) -> list[str]:
    """What keeps FP32 graphs from matching PyTorch (empty when they do)."""
    scales = {**_scale(reference.encoder + reference.auto),
              **_scale(reference.decoder["box"] + reference.decoder["self_prompt"])}
    problems = [f"{name} max |error| {err:.3g} > {rtol * max(1.0, scales[name]):.3g}"
                for group in ("encoder_max_abs", "decoder_max_abs") for name, err in metrics[group].items()
                if err > rtol * max(1.0, scales[name])]
    problems += [f"{kind} mask agreement {value:.4f} < {min_agreement}"
                 for kind, value in metrics["mask_agreement"].items() if value < min_agreement]
    if metrics["auto_modality_agreement"] < 1.0:
        problems.append(f"auto modality agrees on {metrics['auto_modality_agreement']:.0%} of images, not all")
    return problems


def check_fp32(label: str, metrics: dict[str, Any], reference: ChainOutputs) -> None:
    """Raise ParityError naming every output that an FP32 graph pair gets wrong."""
    problems = fp32_problems(metrics, reference)
    if problems:
        raise ParityError(f"{label} FP32 graphs do not match PyTorch: {'; '.join(problems)}",
                          fix="the export is broken for this model: report it with the model file; no bundle "
                              "was written")
