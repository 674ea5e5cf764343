"""Teachers as the student sees them: the student's model-frame batch re-normalised and resized for each
teacher, prompts scaled into the teacher's frame, and teacher embeddings cached per sample."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from edge_medsam.data.torch_preprocess import resize_image_torch
from edge_medsam.models.teachers.base import TeacherFeatures, TeacherProfile, best_mask
from edge_medsam.preprocess import PreprocessConfig
from edge_medsam.training.teacher_cache import EmbeddingCache, onnx_encoder


def reframe(images: torch.Tensor, source: PreprocessConfig, profile: TeacherProfile) -> torch.Tensor:
    """[B, 3, S, S] images normalised for ``source`` → the teacher's size, channel order and normalisation."""
    unit = images * images.new_tensor(source.std).view(1, 3, 1, 1) + images.new_tensor(source.mean).view(1, 3, 1, 1)
    target = profile.preprocess
    if target.size != images.shape[-1]:
        unit = resize_image_torch(unit, target.size, target.size)
    if profile.channel_order == "BGR":
        unit = unit.flip(1)  # SAM-Med2D's weights saw cv2-loaded (BGR) images
    return (unit - images.new_tensor(target.mean).view(1, 3, 1, 1)) / images.new_tensor(target.std).view(1, 3, 1, 1)


def _moved(features: TeacherFeatures, device: torch.device | str, dtype: torch.dtype) -> TeacherFeatures:
    return TeacherFeatures(features.embedding.to(device, dtype), [m.to(device, dtype) for m in features.multiscale])


class TeacherView:
    """One teacher for every modality, or one per modality index (falling back to ``default``).

    Both frames are square and padded the same way (bottom/right), so the teacher's frame is the student's
    scaled by ``teacher_size / student_size``; teacher embeddings of dataset samples are cached in memory
    (the dataset is deterministic per index) and, with ``disk_cache`` (a folder, or True for the user cache),
    on disk by content for the teachers whose decoder reads the embedding alone.
    """

    def __init__(self, default: nn.Module | None, student: PreprocessConfig,
                 per_modality: Mapping[int, nn.Module] | None = None, cache: bool = True,
                 disk_cache: str | bool | None = None):
        self.default = default
        self.per_modality = dict(per_modality or {})
        self.student = student
        self._cache: dict[tuple[int, int], TeacherFeatures] | None = {} if cache else None
        self._disk: dict[int, EmbeddingCache] = {}
        for teacher in self.teachers():
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
            if disk_cache and not teacher.decodes_multiscale:
                self._disk[id(teacher)] = EmbeddingCache(teacher, None if disk_cache is True else disk_cache)

    def teachers(self) -> list[nn.Module]:
        """Every distinct teacher."""
        found = [self.default, *self.per_modality.values()]
        unique: list[nn.Module] = []
        for teacher in found:
            if teacher is not None and all(teacher is not t for t in unique):
                unique.append(teacher)
        return unique

    def to(self, device: torch.device) -> TeacherView:
        """Move the teachers."""
        for teacher in self.teachers():
            teacher.to(device)
        return self

    def _teacher(self, modality: int) -> nn.Module:
        teacher = self.per_modality.get(modality, self.default)
        if teacher is None:
            raise ValueError(f"no teacher for modality index {modality} and no default teacher")
        return teacher

    def _frame(self, teacher: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return reframe(images, self.student, teacher.profile)

    @torch.no_grad()
    def warm(self, dataset: Sequence[dict[str, Any]], description: str = "teacher embeddings") -> None:
        """Compute (or read from disk) the embedding of every dataset item up front, with a progress bar, so
        training steps do not pay for the teacher; on ONNX Runtime where the teacher exports to it."""
        fast = {id(t): onnx_encoder(t) for t in self.teachers() if id(t) in self._disk}
        for index in tqdm(range(len(dataset)), desc=description, unit="image", mininterval=5):
            item = dataset[index]
            teacher = self._teacher(int(item["modality"]))
            encode = fast.get(id(teacher))
            if encode is None:
                batch = {"index": torch.tensor([item["index"]])}
                self._sample_features(batch, item["image"][None], torch.tensor([item["modality"]]), 0)
                continue
            disk = self._disk[id(teacher)]
            frame = self._frame(teacher, item["image"][None])
            if disk.get(frame) is None:
                disk.put(frame, encode(frame))

    def _sample_features(self, batch: dict[str, torch.Tensor], images: torch.Tensor, modality: torch.Tensor,
                         b: int) -> tuple[nn.Module, TeacherFeatures]:
        """Sample ``b``'s teacher and its features (embedding [1, C, h, w], plus the multiscale maps of a teacher
        whose decoder reads them), from the cache when it was seen before."""
        teacher = self._teacher(int(modality[b]))
        key = (int(batch["index"][b]), id(teacher))
        if self._cache is not None and key in self._cache:
            return teacher, _moved(self._cache[key], images.device, torch.float32)
        disk = self._disk.get(id(teacher))
        frame = self._frame(teacher, images[b : b + 1])
        stored = disk.get(frame) if disk is not None else None
        if stored is not None:
            features = TeacherFeatures(stored.to(images.device), [])
        else:
            with torch.no_grad():
                features = teacher.encode(frame)
            # Most decoders read the embedding alone; their multiscale maps are large, so they are not kept.
            if not teacher.decodes_multiscale:
                features = TeacherFeatures(features.embedding, [])
            if disk is not None:
                features = TeacherFeatures(disk.put(frame, features.embedding).to(images.device), [])
        if self._cache is not None:
            self._cache[key] = _moved(features, "cpu", torch.float16)
        return teacher, _moved(features, images.device, torch.float32)

    @torch.no_grad()
    def embeddings(self, batch: dict[str, torch.Tensor], images: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        """Each sample's teacher embedding [B, C, h, w] (cached by dataset index and teacher)."""
        return torch.stack([self._sample_features(batch, images, modality, b)[1].embedding[0]
                            for b in range(images.shape[0])])

    @torch.no_grad()
    def masks(self, batch: dict[str, torch.Tensor], images: torch.Tensor, modality: torch.Tensor,
              image_index: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The teacher's best low-res mask logits [N, 1, h, w] for the same prompts (scaled to its frame);
        each image is encoded once and all of its objects decoded in one call."""
        out: list[torch.Tensor | None] = [None] * image_index.shape[0]
        for b in image_index.unique().tolist():
            rows = (image_index == b).nonzero().flatten()
            teacher, features = self._sample_features(batch, images, modality, b)
            scale = teacher.profile.preprocess.size / images.shape[-1]
            logits, iou = teacher.decode(features, points=(coords[rows][None] * scale, labels[rows][None]),
                                         multimask=True)
            for row, mask in zip(rows.tolist(), best_mask(logits, iou)[0][:, 0], strict=True):
                out[row] = mask
        size = max(m.shape[-1] for m in out)  # type: ignore[union-attr]
        return torch.stack([m if m.shape[-1] == size else  # type: ignore[union-attr]
                            F.interpolate(m[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
                            for m in out])[:, None]
