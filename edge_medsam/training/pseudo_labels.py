"""Teacher labels for real images that come without masks, so distillation can learn from real pixels.

Prompts go where the teacher has something to say: candidate boxes around the image's own intensity regions
(multi-Otsu classes split into connected components), each answered by the teacher; an answer is kept when the
teacher is confident (predicted IoU), self-consistent (prompted again with the tight box of its own mask, it gives
the same mask: EdgeSAM / MobileSAM-v2 sample boxes from the teacher's masks the same way) and not a copy of an
object already kept. The kept masks become a label map written next to the run, one object per label.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from tqdm import tqdm

from edge_medsam.data.layouts import Sample, load_sample
from edge_medsam.data.prompts import box_from_mask
from edge_medsam.errors import EdgeMedSAMError, InputError
from edge_medsam.io.files import atomic_write_text
from edge_medsam.io.masks import write_mask_png
from edge_medsam.modalities import normalise_intensity
from edge_medsam.models.teachers.base import Teacher, TeacherFeatures
from edge_medsam.preprocess import logits_to_original
from edge_medsam.training.teacher_cache import EmbeddingCache, onnx_encoder, teacher_identity


@dataclass(frozen=True)
class PseudoLabelConfig:
    """How candidate boxes are drawn and which teacher answers are kept."""

    classes: int = 3  # multi-Otsu classes of the grey image
    candidates: int = 8  # largest regions tried per image (the teacher decodes each at about 0.1 s on 2 cores)
    min_area: float = 0.002  # region and mask area bounds, as fractions of the image
    max_area: float = 0.5
    min_iou: float = 0.75  # the teacher's predicted IoU
    min_consistency: float = 0.9  # Dice between the answer to the region's box and to the answer's own box
    max_overlap: float = 0.5  # IoU above which a mask repeats one already kept
    objects: int = 6  # kept per image


def candidate_boxes(image01: np.ndarray, config: PseudoLabelConfig) -> np.ndarray:
    """Boxes [K, 4] around the largest connected regions of each multi-Otsu intensity class."""
    try:
        from skimage.filters import threshold_multiotsu
    except ImportError as err:
        raise InputError("scikit-image is not installed, so real images cannot be labelled by the teacher",
                         fix="pip install 'edge-medsam[real]'") from err

    grey = image01.mean(axis=-1) if image01.ndim == 3 else image01
    area = grey.size
    try:
        thresholds = threshold_multiotsu(grey, classes=config.classes)
    except ValueError:  # too few grey levels for that many classes
        return np.zeros((0, 4), np.float32)
    classes = np.digitize(grey, thresholds)
    regions = []
    for value in range(config.classes):
        components, count = ndimage.label(classes == value)
        sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
        for label in np.flatnonzero((sizes >= config.min_area * area) & (sizes <= config.max_area * area)) + 1:
            regions.append((int(sizes[label - 1]), components == label))
    regions.sort(key=lambda item: -item[0])
    boxes = [box_from_mask(mask) for _, mask in regions[: config.candidates]]
    return np.stack(boxes) if boxes else np.zeros((0, 4), np.float32)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else 1.0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 0.0


class PseudoLabeller:
    """A teacher answering candidate boxes on real images; embeddings come from the content-keyed cache."""

    def __init__(self, teacher: Teacher, config: PseudoLabelConfig | None = None, cache: bool = True):
        if not isinstance(teacher, Teacher):
            raise EdgeMedSAMError(f"a {type(teacher).__name__} cannot label 2D images",
                                  fix="use a 2D teacher, or set data.real to false")
        self.teacher = teacher.eval()
        self.config = config or PseudoLabelConfig()
        # Teachers whose decoder reads multiscale maps are encoded whole each time (their maps are not cached).
        self.cache = EmbeddingCache(teacher) if cache and not teacher.decodes_multiscale else None
        self._encode = onnx_encoder(teacher) if self.cache is not None else None

    def _features(self, model_input: torch.Tensor) -> TeacherFeatures:
        if self.cache is None:
            return self.teacher.encode(model_input)
        embedding = self.cache.get(model_input)
        if embedding is None:
            encoded = self._encode(model_input) if self._encode else self.teacher.encode(model_input).embedding
            embedding = self.cache.put(model_input, encoded)
        return TeacherFeatures(embedding)

    @torch.no_grad()
    def _answer(self, features: TeacherFeatures, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model-frame boxes [K, 4] → low-res logits [K, s, s] and predicted IoU [K]."""
        low_res, iou = self.teacher.decode(features, boxes=torch.from_numpy(boxes).float()[None], multimask=False)
        return low_res[:, 0].numpy(), iou[:, 0].numpy()

    @torch.no_grad()
    def label(self, image01: np.ndarray) -> np.ndarray:
        """A label map (uint16, 0 = background) of the teacher's kept objects on an (H, W, 3) [0, 1] image.

        Candidates, answers and checks are made in the teacher's resized frame (at most its input size); only the
        kept masks are brought back to the original size.
        """
        cfg = self.config
        labels = np.zeros(image01.shape[:2], np.uint16)
        model_input, geometry = self.teacher.prepare(image01)
        h, w = geometry.resized
        preprocess = self.teacher.profile.preprocess
        unit = model_input[0].permute(1, 2, 0).numpy()[:h, :w] * np.asarray(preprocess.std) + np.asarray(preprocess.mean)
        boxes = candidate_boxes(unit, cfg)
        if not len(boxes):
            return labels
        features = self._features(model_input)
        logits, iou = self._answer(features, boxes)
        factor = logits.shape[-1] / preprocess.size  # low-res pixels per model-frame pixel
        frame = (slice(0, round(h * factor)), slice(0, round(w * factor)))
        masks = logits[:, frame[0], frame[1]] > 0
        area = masks[0].size
        sizes = masks.reshape(len(masks), -1).sum(1)
        usable = [k for k in np.argsort(-iou) if iou[k] >= cfg.min_iou
                  and cfg.min_area * area <= sizes[k] <= cfg.max_area * area]
        if not usable:
            return labels
        again, _ = self._answer(features, np.stack([box_from_mask(masks[k]) / factor for k in usable]))
        kept: list[int] = []
        for k, second in zip(usable, again[:, frame[0], frame[1]] > 0, strict=True):
            if _dice(masks[k], second) < cfg.min_consistency or any(_iou(masks[k], masks[j]) > cfg.max_overlap
                                                                    for j in kept):
                continue
            kept.append(k)
            if len(kept) == cfg.objects:
                break
        for number, mask in enumerate(logits_to_original(logits[kept], geometry) > 0, start=1):
            labels[mask & (labels == 0)] = number
        return labels


def pseudo_label(samples: Sequence[Sample], teacher: Teacher, out_dir: str | Path,
                 config: PseudoLabelConfig | None = None, cache: bool = True) -> list[Sample]:
    """Label unlabelled samples with ``teacher``; returns them with their teacher masks (``out_dir/masks``),
    leaving out images where nothing was kept. ``out_dir/pseudo_labels.json`` (written last) records the teacher,
    the settings and the objects per image; a folder whose record matches is reused as it is (a resumed run
    trains on exactly the labels it started with). ``cache``: keep the teacher's embeddings in the disk cache."""
    out = Path(out_dir)
    labeller = PseudoLabeller(teacher, config, cache=cache)
    settings = asdict(labeller.config)
    identity = teacher_identity(teacher)
    record_path = out / "pseudo_labels.json"
    record = _read_record(record_path)
    if record.get("teacher") != identity or record.get("config") != settings or \
            set(record.get("objects", {})) != {sample.id for sample in samples}:
        record = {"teacher": identity, "config": settings, "objects": {}}
        for sample in tqdm(samples, desc="teacher labels for real images", unit="image", mininterval=5):
            image, _, modality = load_sample(sample)
            labels = labeller.label(normalise_intensity(image.pixels, modality, hounsfield=image.hounsfield))
            record["objects"][sample.id] = int(labels.max())
            if labels.max():
                write_mask_png(out / "masks" / f"{sample.id}.png", labels)
        atomic_write_text(record_path, json.dumps(record, indent=2))
    return [replace(sample, mask=out / "masks" / f"{sample.id}.png",
                    objects={k: "teacher" for k in range(1, record["objects"][sample.id] + 1)})
            for sample in samples if record["objects"][sample.id]]


def _read_record(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
