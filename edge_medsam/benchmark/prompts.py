"""Decoder feeds for a model's graph pair: from one image's encoder outputs and N boxes (or the self-prompt).

``ContractPrompter`` speaks the bundle contract of our students (``edge_medsam.runtime.manifest``).
``ExamplePrompter`` serves any other exported decoder (the anchors): it starts from the decoder's example
inputs, takes each encoder output it recognises (by name, else by a unique shape), encodes boxes as SAM's two
corner points (labels 2 and 3) where the decoder has ``point_coords`` / ``point_labels`` (SAM's ONNX
convention, which the references in ``edge_medsam.models.reference`` follow), and grows or shrinks the inputs
whose first dimension is dynamic to N objects. Prompt values do not change a graph's latency; the
shapes do, and those are the real ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_medsam.prompt_labels import BOX_LABELS
from edge_medsam.runtime.decoder_feed import best_of_k, decoder_feed, self_prompt_points


def box_corners(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, 4] boxes → corner points [N, 2, 2] and their labels [N, 2]."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = np.tile(np.asarray(BOX_LABELS, np.float32), (len(boxes), 1))
    return boxes.reshape(-1, 2, 2), labels


class ContractPrompter:
    """Our students: boxes as corner points; no box = the self-prompt alone (one padding point)."""

    objects_dynamic = True

    def feed(self, encoded: dict[str, np.ndarray], boxes: np.ndarray | None) -> dict[str, np.ndarray]:
        """Decoder inputs for N boxes (model-frame pixels), or for the self-prompt when ``boxes`` is None."""
        return decoder_feed(encoded, *(self_prompt_points() if boxes is None else box_corners(boxes)))

    @staticmethod
    def best_logits(outputs: dict[str, np.ndarray]) -> np.ndarray:
        """[N, h, w]: each object's mask with the highest predicted IoU."""
        return best_logits(outputs)


def _resize_first(value: np.ndarray, count: int) -> np.ndarray:
    """``value`` with its first dimension repeated or cut to ``count``."""
    reps = -(-count // value.shape[0])
    return np.ascontiguousarray(np.concatenate([value] * reps, axis=0)[:count])


def best_logits(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """[N, h, w]: each object's mask with the highest predicted IoU (the first mask without an IoU output)."""
    masks = outputs["masks"] if "masks" in outputs else next(v for v in outputs.values() if v.ndim == 4)
    if "iou_predictions" not in outputs:
        return masks[:, 0]
    return best_of_k(masks, outputs["iou_predictions"])[0]


class ExamplePrompter:
    """Any exported decoder, fed from its example inputs plus the encoder outputs it takes.

    ``dynamic`` names each input's symbolic axes (from the ONNX graph): axis 0 is the object count, and boxes
    replace the example's points where ``point_coords`` / ``point_labels`` may have two points per object.
    """

    def __init__(self, example: dict[str, np.ndarray], dynamic: dict[str, set[int]], encoder_shapes: dict[str, tuple]):
        self.example = example
        self.dynamic = dynamic
        self.objects_dynamic = any(0 in axes for axes in dynamic.values())
        self.sources = self._sources(encoder_shapes)

    def _sources(self, encoder_shapes: dict[str, tuple]) -> dict[str, str]:
        """Decoder input → the encoder output that feeds it (same name, else the only one of its shape)."""
        found = {}
        for name, value in self.example.items():
            if name in encoder_shapes and tuple(encoder_shapes[name]) == value.shape:
                found[name] = name
                continue
            same = [out for out, shape in encoder_shapes.items() if tuple(shape) == value.shape]
            if len(same) == 1 and value.dtype.kind == "f":
                found[name] = same[0]
        return found

    def _takes_boxes(self, count: int) -> bool:
        coords, labels = self.example.get("point_coords"), self.example.get("point_labels")
        if coords is None or labels is None or coords.ndim != 3 or labels.ndim != 2:
            return False
        fits = [(coords.shape[axis] == size or axis in self.dynamic.get("point_coords", set()))
                for axis, size in ((0, count), (1, 2))]
        return all(fits)

    def feed(self, encoded: dict[str, np.ndarray], boxes: np.ndarray | None) -> dict[str, np.ndarray]:
        """Decoder inputs for N boxes (N = 1 without boxes: an anchor has no self-prompt)."""
        count = 1 if boxes is None else len(boxes)
        feeds: dict[str, Any] = {}
        for name, value in self.example.items():
            if name in self.sources:
                value = encoded[self.sources[name]]
            elif 0 in self.dynamic.get(name, set()):
                value = _resize_first(value, count)
            feeds[name] = value
        if boxes is not None and self._takes_boxes(count):
            coords, labels = box_corners(boxes)
            feeds["point_coords"] = coords.astype(self.example["point_coords"].dtype)
            feeds["point_labels"] = labels.astype(self.example["point_labels"].dtype)
        return feeds

    @staticmethod
    def best_logits(outputs: dict[str, np.ndarray]) -> np.ndarray:
        """[N, h, w]: each object's best mask."""
        return best_logits(outputs)
