"""Segmenters over the torch models: a SAM-family teacher and the edge student (numpy in, numpy out, no grad)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edge_medsam.data.prompt_batch import pack_prompts
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.modalities import MODALITIES, Modality
from edge_medsam.models.student import EdgeStudent
from edge_medsam.models.student.encoder import AUTO_MODALITY
from edge_medsam.models.teachers import Teacher
from edge_medsam.preprocess import Geometry, PreprocessConfig, to_model_input
from edge_medsam.runtime.protocol import Prediction, PromptArrays, best_of, check_prompts, empty_prediction


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


class _TorchSegmenter:
    """Shared bookkeeping: the current image's geometry, and prompts mapped into the model frame."""

    name: str
    supports_auto: bool
    detected_modality: Modality | None = None
    low_res_size: int
    _geometry: Geometry | None = None

    def _image_geometry(self) -> Geometry:
        if self._geometry is None:
            raise EdgeMedSAMError("no image is set", fix="call set_image(image01, modality) before predict")
        return self._geometry

    def _model_frame(self, prompts: PromptArrays, geometry: Geometry) -> tuple[np.ndarray | None, np.ndarray | None]:
        boxes = None if prompts.boxes is None else geometry.boxes_to_model(prompts.boxes)
        points = None if prompts.points is None else geometry.points_to_model(prompts.points)
        return boxes, points


class TeacherSegmenter(_TorchSegmenter):
    """A SAM-family teacher: prompts only (no self-prompt, no modality recognition)."""

    supports_auto = False

    def __init__(self, teacher: Teacher, name: str | None = None):
        self.teacher = teacher.eval()
        self.name = name or teacher.profile.name
        self.low_res_size = getattr(teacher, "low_res_size", teacher.profile.preprocess.size // 4)
        self._features = None

    @torch.no_grad()
    def set_image(self, image01: np.ndarray, modality: Modality | None) -> None:
        """Encode the image with the teacher's own preprocessing (teachers are modality-agnostic)."""
        model_input, self._geometry = self.teacher.prepare(image01)
        self._features = self.teacher.encode(model_input)
        self.detected_modality = None

    @torch.no_grad()
    def predict(self, boxes: np.ndarray | None = None, points: np.ndarray | None = None,
                point_labels: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                multimask: bool = True) -> Prediction:
        """Best-of-K masks for N objects; a teacher trained for one mask (MedSAM) always gives one."""
        geometry = self._image_geometry()
        prompts = check_prompts(boxes, points, point_labels, mask_input)
        if prompts.count == 0:
            return empty_prediction(geometry, self.low_res_size)
        device = self.teacher.device
        boxes_m, points_m = self._model_frame(prompts, geometry)
        point_pair = None
        if points_m is not None:
            point_pair = (torch.from_numpy(points_m)[None].to(device),
                          torch.from_numpy(prompts.point_labels)[None].to(device))
        low_res, iou = self.teacher.decode(
            self._features, points=point_pair,
            boxes=None if boxes_m is None else torch.from_numpy(boxes_m)[None].to(device),
            mask_input=None if prompts.mask_input is None else torch.from_numpy(prompts.mask_input).to(device),
            multimask=multimask and self.teacher.profile.multimask)
        return best_of(_numpy(low_res), _numpy(iou), geometry)

    def predict_auto(self, points: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                     mask_input: np.ndarray | None = None) -> Prediction:
        """Teachers have no self-prompt."""
        raise EdgeMedSAMError(f"{self.name} has no self-prompt", fix="evaluate it with box or point prompts")


class StudentSegmenter(_TorchSegmenter):
    """The edge student: prompts on top of its self-prompt, fully automatic segmentation, modality recognition.

    Prompted objects are decoded with the student's ``prompted_self_prompt_weight``, corrections of the automatic
    foreground with weight 1. The student has no single-mask output: it always ranks its K masks by predicted IoU,
    whatever ``multimask`` says.
    """

    supports_auto = True

    def __init__(self, student: EdgeStudent, name: str = "edge_student", preprocess: PreprocessConfig | None = None):
        self.student = student.eval()
        self.name = name
        self.preprocess = preprocess or PreprocessConfig(size=student.config.image_size)
        self.low_res_size = 4 * student.config.grid
        self._encoded = None

    @property
    def _device(self) -> torch.device:
        return next(self.student.parameters()).device

    @torch.no_grad()
    def set_image(self, image01: np.ndarray, modality: Modality | None) -> None:
        """Encode with the given modality, or recognise it (``detected_modality``) when modality is None."""
        model_input, self._geometry = to_model_input(image01, self.preprocess)
        index = AUTO_MODALITY if modality is None else modality.index
        features, self_prompt = self.student.encode(torch.from_numpy(model_input).to(self._device),
                                                    torch.tensor([index], device=self._device))
        self._encoded = (features, self_prompt)
        used = int(features.modality[0])
        # Modality slots may outnumber the registry (room for modalities added later).
        self.detected_modality = MODALITIES[used] if used < len(MODALITIES) else None

    def predict(self, boxes: np.ndarray | None = None, points: np.ndarray | None = None,
                point_labels: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                multimask: bool = True) -> Prediction:
        """Best-of-K masks for N objects (boxes become SAM's two labelled corner points)."""
        return self._decode(boxes, points, point_labels, mask_input, self.student.config.prompted_self_prompt_weight)

    def predict_auto(self, points: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                     mask_input: np.ndarray | None = None) -> Prediction:
        """The self-prompted foreground (no manual prompt), or its correction by clicks and the previous logits."""
        if points is None and mask_input is None:
            geometry = self._image_geometry()
            with torch.no_grad():
                masks, iou = self.student.decode(*self._encoded)
            return best_of(_numpy(masks), _numpy(iou), geometry)
        return self._decode(None, points, point_labels, mask_input, 1.0)

    @torch.no_grad()
    def _decode(self, boxes: np.ndarray | None, points: np.ndarray | None, point_labels: np.ndarray | None,
                mask_input: np.ndarray | None, self_prompt_weight: float) -> Prediction:
        geometry = self._image_geometry()
        prompts = check_prompts(boxes, points, point_labels, mask_input)
        if prompts.count == 0:
            return empty_prediction(geometry, self.low_res_size)
        n, device = prompts.count, self._device
        boxes_m, points_m = self._model_frame(prompts, geometry)
        per_box = list(boxes_m) if boxes_m is not None else [None] * n
        per_points = ([(c, lab) for c, lab in zip(points_m, prompts.point_labels, strict=True)]
                      if points_m is not None else [None] * n)
        coords, labels = pack_prompts(per_box, per_points)
        features, self_prompt = self._encoded
        masks, iou = self.student.decode(
            features, self_prompt, image_index=torch.zeros(n, dtype=torch.int64, device=device),
            points=torch.from_numpy(coords).to(device), labels=torch.from_numpy(labels).to(device),
            mask_input=None if prompts.mask_input is None else torch.from_numpy(prompts.mask_input).to(device),
            self_prompt_weight=self_prompt_weight)
        return best_of(_numpy(masks), _numpy(iou), geometry)


def segmenter_for(model: nn.Module, name: str | None = None) -> TeacherSegmenter | StudentSegmenter:
    """The segmenter that evaluates ``model`` (an EdgeStudent or a Teacher)."""
    if isinstance(model, EdgeStudent):
        return StudentSegmenter(model, name=name or "edge_student")
    if isinstance(model, Teacher):
        return TeacherSegmenter(model, name=name)
    raise EdgeMedSAMError(f"cannot evaluate a {type(model).__name__}",
                          fix="give an edge-medsam student or teacher model file, or an official SAM checkpoint")
