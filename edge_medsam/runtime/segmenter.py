"""The runtime predictor as an evaluation Segmenter, so exported bundles are scored like the torch models."""

from __future__ import annotations

import numpy as np

from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.modalities import Modality, get_modality
from edge_medsam.runtime.images import bundle_index
from edge_medsam.runtime.manifest import AUTO_MODALITY
from edge_medsam.runtime.predictor import EncodedImage, Predictor
from edge_medsam.runtime.prompts import pack_user_prompts
from edge_medsam.runtime.protocol import Prediction, best_of, check_prompts, empty_prediction


class RuntimeSegmenter:
    """``edge_medsam.evaluation.Segmenter`` over a bundle: [0, 1] images in, best-of-K masks out.

    Like the torch student's segmenter it always ranks the K masks by predicted IoU, whatever ``multimask`` says.
    """

    supports_auto = True

    def __init__(self, predictor: Predictor, name: str | None = None):
        self.predictor = predictor
        self.name = name or predictor.name
        self.detected_modality: Modality | None = None
        self._encoded: EncodedImage | None = None

    def set_image(self, image01: np.ndarray, modality: Modality | None) -> None:
        """Encode an (H, W, 3) [0, 1] image with its modality, or recognise it (``detected_modality``) for None."""
        bundle = self.predictor.bundle
        index = AUTO_MODALITY if modality is None else bundle_index(bundle, modality)
        self._encoded = self.predictor.encode_normalised(np.asarray(image01, np.float32), index,
                                                         "model" if modality is None else "given")
        name = self._encoded.modality
        self.detected_modality = get_modality(name) if name is not None else None

    def _current(self) -> EncodedImage:
        if self._encoded is None:
            raise EdgeMedSAMError("no image is set", fix="call set_image(image01, modality) before predict")
        return self._encoded

    def predict(self, boxes: np.ndarray | None = None, points: np.ndarray | None = None,
                point_labels: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                multimask: bool = True) -> Prediction:
        """Best-of-K masks for N objects from boxes [N, 4], points [N, P, 2] + labels [N, P], low-res logits."""
        return self._decode(boxes, points, point_labels, mask_input, auto=False)

    def predict_auto(self, points: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                     mask_input: np.ndarray | None = None) -> Prediction:
        """The self-prompted foreground (N = 1), or its correction by clicks [1, P, 2] and the previous logits."""
        if points is None and mask_input is None:
            encoded = self._current()
            low_res, iou = self.predictor.decode(encoded, None, {})
            return best_of(low_res, iou, encoded.geometry)
        return self._decode(None, points, point_labels, mask_input, auto=True)

    def _decode(self, boxes: np.ndarray | None, points: np.ndarray | None, point_labels: np.ndarray | None,
                mask_input: np.ndarray | None, auto: bool) -> Prediction:
        encoded = self._current()
        checked = check_prompts(boxes, points, point_labels, mask_input)
        if checked.count == 0:
            return empty_prediction(encoded.geometry, self.predictor.bundle.low_res_size)
        height, width = encoded.shape
        packed = pack_user_prompts(height, width, self.predictor.bundle.low_res_size, points=checked.points,
                                   labels=checked.point_labels, boxes=checked.boxes, mask=checked.mask_input)
        low_res, iou = self.predictor.decode(encoded, packed, {}, auto=auto)
        return best_of(low_res, iou, encoded.geometry)
