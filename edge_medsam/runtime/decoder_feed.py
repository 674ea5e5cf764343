"""The decoder contract's feed, written once: the inputs for N objects of one image, the self-prompt alone, and the
best of a decoder's K masks. Torch-free; the runtime, the export's parity gate and the benchmark all feed through it.
"""

from __future__ import annotations

import numpy as np

from edge_medsam.prompt_labels import PAD_LABEL
from edge_medsam.runtime.manifest import DECODER_IO, ENCODER_IO

# The decoder inputs that are the encoder's outputs (one per image), in contract order.
FROM_ENCODER = tuple(name for name, _, _ in DECODER_IO["inputs"]
                     if name in {out for out, _, _ in ENCODER_IO["outputs"]})


def self_prompt_points(count: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates [count, 1, 2] and labels [count, 1] of the self-prompt alone: one padding point per object
    (SAM's "not a point"; alone, it asks the decoder for the self-prompted foreground)."""
    return np.zeros((count, 1, 2), np.float32), np.full((count, 1), PAD_LABEL, np.float32)


def decoder_feed(features: dict[str, np.ndarray], coords: np.ndarray, labels: np.ndarray,
                 self_prompt_weight: float | np.ndarray = 1.0,
                 mask_input: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Decoder inputs for N objects of one image: the encoder's per-image outputs, points [N, P, 2] (model-frame
    pixels) with SAM labels [N, P], the self-prompt weight (scalar or [N]) and an optional previous mask
    [N, 1, 4g, 4g] (low-res logits)."""
    n, side = coords.shape[0], features["skip4"].shape[-1]
    return {**{name: features[name] for name in FROM_ENCODER},
            "point_coords": np.ascontiguousarray(coords, np.float32),
            "point_labels": np.ascontiguousarray(labels, np.float32),
            "mask_input": (np.ascontiguousarray(mask_input, np.float32) if mask_input is not None
                           else np.zeros((n, 1, side, side), np.float32)),
            "has_mask_input": np.full(n, 0.0 if mask_input is None else 1.0, np.float32),
            "self_prompt_weight": np.broadcast_to(np.asarray(self_prompt_weight, np.float32), (n,)).copy()}


def best_of_k(masks: np.ndarray, iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each object's mask with the highest predicted IoU: masks [N, K, h, w] and IoU [N, K] → [N, h, w] and [N]."""
    rows, best = np.arange(iou.shape[0]), np.asarray(iou).argmax(axis=1)
    return masks[rows, best], iou[rows, best]

