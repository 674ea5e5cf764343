"""Torch dataset of model-frame samples: preprocessed image, label map, modality index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from edge_medsam.data.layouts import Sample, load_sample
from edge_medsam.modalities import normalise_intensity
from edge_medsam.preprocess import PreprocessConfig, labels_to_model, to_model_input


class SegmentationDataset(Dataset):
    """Samples from any supported layout, preprocessed into the model frame of ``config``.

    Items are deterministic functions of their index (randomness belongs to the training task, whose RNG the
    engine checkpoints), so cached teacher outputs stay valid and resumed runs see identical data.
    """

    def __init__(self, samples: Sequence[Sample], config: PreprocessConfig, *, cache: bool = True):
        self.samples = list(samples)
        self.config = config
        self._cache: dict[int, dict[str, Any]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image, labels, modality = load_sample(self.samples[index])
        pixels = normalise_intensity(image.pixels, modality, hounsfield=image.hounsfield)
        x, geometry = to_model_input(pixels, self.config)
        item = {
            "image": torch.from_numpy(x[0]),
            "labels": torch.from_numpy(labels_to_model(labels, geometry).astype(np.int64)),
            "modality": int(modality.index),
            "index": index,
        }
        if self._cache is not None:
            self._cache[index] = item
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack dataset items into a batch."""
    return {
        "image": torch.stack([it["image"] for it in items]),
        "labels": torch.stack([it["labels"] for it in items]),
        "modality": torch.tensor([it["modality"] for it in items], dtype=torch.int64),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.int64),
    }
