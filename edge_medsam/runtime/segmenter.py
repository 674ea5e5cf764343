"""The runtime predictor as an evaluation Segmenter, so exported bundles are scored like the torch models.

A thin adapter: ``Predictor.predict`` checks the prompts and decodes; this module only converts its
``SegmentationResult`` into the protocol's ``Prediction``.
"""

from __future__ import annotations

import numpy as np

from edge_medsam.modalities import Modality, get_modality
from edge_medsam.runtime.images import bundle_index
from edge_medsam.runtime.manifest import AUTO_MODALITY
from edge_medsam.runtime.predictor import Predictor, SegmentationResult
from edge_medsam.runtime.protocol import Prediction


def as_prediction(result: SegmentationResult) -> Prediction:
    """A best-of-K ``Predictor.predict(..., return_logits=True)`` result as the evaluation protocol's Prediction."""
    return Prediction(result.masks, result.low_res_logits, result.scores)


class RuntimeSegmenter:
    """``edge_medsam.evaluation.Segmenter`` over a bundle: [0, 1] images in, best-of-K masks out.

    Like the torch student's segmenter it always ranks the K masks by predicted IoU, whatever ``multimask`` says.
    """

    supports_auto = True

    def __init__(self, predictor: Predictor, name: str | None = None):
        self.predictor = predictor
        self.name = name or predictor.name
        self.detected_modality: Modality | None = None

    def set_image(self, image01: np.ndarray, modality: Modality | None) -> None:
        """Encode an (H, W, 3) [0, 1] image with its modality, or recognise it (``detected_modality``) for None."""
        index = AUTO_MODALITY if modality is None else bundle_index(self.predictor.bundle, modality)
        encoded = self.predictor.encode_normalised(np.asarray(image01, np.float32), index,
                                                   "model" if modality is None else "given")
        self.predictor.set_encoded(encoded)
        self.detected_modality = get_modality(encoded.modality) if encoded.modality is not None else None

    def predict(self, boxes: np.ndarray | None = None, points: np.ndarray | None = None,
                point_labels: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                multimask: bool = True) -> Prediction:
        """Best-of-K masks for N objects from boxes [N, 4], points [N, P, 2] + labels [N, P], low-res logits;
        no prompt at all is N = 0."""
        if boxes is None and points is None and point_labels is None and mask_input is None:
            boxes = np.zeros((0, 4), np.float32)
        return as_prediction(self.predictor.predict(points, point_labels, boxes, mask_input, auto=False,
                                                    return_logits=True))

    def predict_auto(self, points: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                     mask_input: np.ndarray | None = None) -> Prediction:
        """The self-prompted foreground (N = 1), or its correction by clicks [1, P, 2] and the previous logits."""
        return as_prediction(self.predictor.predict(points, point_labels, None, mask_input, auto=True,
                                                    return_logits=True))
