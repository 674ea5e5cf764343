"""Volumes for 3D training: find them (nnU-Net raw, the synthetic corpus, slice samples), read them as [0, 1]
arrays [D, H, W] whose slices are exactly the 2D samples the package makes of them, and crop them at random.

A volume is read through its slice samples (``open_dataset`` turns every NIfTI volume into one sample per
through-plane slice), so intensities (CT window, percentiles), Hounsfield offsets and the display orientation
are those of the 2D pipeline: a 3D teacher and a 2D student see the same pixels. Volumes are not resampled;
crops are in voxels.
"""

from __future__ import annotations

import json
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import Compose, FgBgToIndicesd, RandCropByPosNegLabeld, RandScaleIntensityd, RandShiftIntensityd
from torch.utils.data import Dataset

from edge_medsam.data.layouts import Sample, load_sample, open_dataset
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.modalities import normalise_intensity

CORPUS_FORMAT = "edge-medsam-corpus"


@dataclass(frozen=True)
class VolumeCase:
    """One volume with labels, as its slice samples in slice order."""

    case: str
    slices: tuple[Sample, ...]

    @property
    def path(self) -> Path:
        """The volume file."""
        return self.slices[0].volume  # type: ignore[return-value]


def volume_cases(samples: Iterable[Sample]) -> list[VolumeCase]:
    """Group slice samples of labelled volumes into whole volumes (2D samples are ignored)."""
    groups: dict[tuple[Path, Path, int], list[Sample]] = defaultdict(list)
    for sample in samples:
        if sample.volume is not None and sample.labels is not None:
            groups[(sample.volume, sample.labels, int(sample.axis))].append(sample)  # type: ignore[arg-type]
    cases = []
    for (volume, _, _), slices in sorted(groups.items(), key=lambda item: str(item[0][0])):
        ordered = sorted(slices, key=lambda s: int(s.index))  # type: ignore[arg-type]
        indices = [int(s.index) for s in ordered]  # type: ignore[arg-type]
        if indices != list(range(indices[0], indices[0] + len(indices))):
            raise EdgeMedSAMError("volume is listed with slices missing", path=volume,
                                  fix="open the dataset with every slice (foreground_only=False)")
        cases.append(VolumeCase(ordered[0].case or volume.name, tuple(ordered)))
    return cases


def _corpus_roots(samples: Iterable[Sample]) -> list[Path]:
    """Synthetic-corpus folders (manifest.json of the corpus format) above the samples' image files."""
    roots: list[Path] = []
    for parent in {p for s in samples if s.image is not None for p in list(s.image.parents)[:4]}:
        manifest = parent / "manifest.json"
        if parent not in roots and manifest.is_file():
            try:
                if json.loads(manifest.read_text(encoding="utf-8")).get("format") == CORPUS_FORMAT:
                    roots.append(parent)
            except (OSError, ValueError, AttributeError):
                continue
    return sorted(roots)


def find_volume_cases(samples: Sequence[Sample], folder: str | Path | None = None) -> list[VolumeCase]:
    """The labelled volumes to train a 3D model on: those of ``folder`` (nnU-Net raw or any layout with volumes),
    else the volumes the samples are slices of, else the volumes of the synthetic corpus the samples come from."""
    if folder is not None:
        cases = volume_cases(open_dataset(folder, include_volumes=True).samples)
    else:
        cases = volume_cases(samples)
        if not cases:
            for root in _corpus_roots(samples):
                cases += volume_cases(open_dataset(root, "folder_pairs", include_volumes=True).samples)
    if not cases:
        raise EdgeMedSAMError("no labelled volumes to train the 3D teacher on", path=folder,
                              fix="set teacher.options.volumes to an nnU-Net raw folder (imagesTr/ + labelsTr/), or "
                                  "generate the synthetic corpus with volumes > 0")
    return cases


def load_volume_case(case: VolumeCase) -> tuple[np.ndarray, np.ndarray]:
    """([0, 1] intensities [D, H, W] float32, labels [D, H, W] int32), slice by slice as the 2D pipeline reads them."""
    images, labels = [], []
    for sample in case.slices:
        image, label, modality = load_sample(sample)
        images.append(normalise_intensity(image.pixels, modality, hounsfield=image.hounsfield)[..., 0])
        labels.append(label)
    return np.stack(images), np.stack(labels).astype(np.int32)


class VolumeCropDataset(Dataset):
    """Random crops [1, D, H, W] of labelled volumes, centred on foreground voxels (MONAI), with intensity jitter.

    Item ``i`` is a crop of volume ``i % len(cases)`` drawn from the seed (``seed``, ``i``): items are
    deterministic functions of their index, so cached outputs stay valid and resumed runs see identical data.
    The last ``cache_volumes`` volumes read are kept in memory with their foreground/background indices.
    """

    def __init__(self, cases: Sequence[VolumeCase], crop_size: Sequence[int], *, crops_per_volume: int = 64,
                 seed: int = 0, cache_volumes: int = 8):
        if not cases:
            raise EdgeMedSAMError("no volumes to crop", fix="give at least one labelled volume")
        self.cases = list(cases)
        self.crop_size = tuple(int(v) for v in crop_size)
        self.crops_per_volume = int(crops_per_volume)
        self.seed = int(seed)
        self.cache_volumes = int(cache_volumes)
        self._cache: OrderedDict[int, dict[str, Any]] = OrderedDict()
        keys = ["image", "label"]
        # Every crop is centred on a foreground voxel, so it always holds an object to prompt.
        self.transform = Compose([
            RandCropByPosNegLabeld(keys, "label", self.crop_size, pos=1.0, neg=0.0, num_samples=1,
                                   fg_indices_key="fg", bg_indices_key="bg"),
            RandScaleIntensityd("image", factors=0.1, prob=0.5),
            RandShiftIntensityd("image", offsets=0.1, prob=0.5),
        ])

    def __len__(self) -> int:
        return len(self.cases) * self.crops_per_volume

    def _volume(self, position: int) -> dict[str, Any]:
        if position in self._cache:
            self._cache.move_to_end(position)
            return self._cache[position]
        image, labels = load_volume_case(self.cases[position])
        pads = [(0, max(c - s, 0)) for c, s in zip(self.crop_size, image.shape, strict=True)]
        item = {"image": np.pad(image, pads)[None], "label": np.pad(labels, pads)[None]}
        item.update(FgBgToIndicesd("label")(item))
        item["fg"], item["bg"] = item.pop("label_fg_indices"), item.pop("label_bg_indices")
        if len(item["fg"]) == 0:
            raise EdgeMedSAMError("volume has no labelled voxel", path=self.cases[position].path,
                                  fix="leave unlabelled volumes out of 3D training")
        self._cache[position] = item
        while len(self._cache) > self.cache_volumes:
            self._cache.popitem(last=False)
        return item

    def __getitem__(self, index: int) -> dict[str, Any]:
        volume = self._volume(index % len(self.cases))
        self.transform.set_random_state(seed=int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0]))
        crop = self.transform(dict(volume))[0]
        return {"image": torch.as_tensor(np.asarray(crop["image"], np.float32)),
                "labels": torch.as_tensor(np.asarray(crop["label"][0], np.int64)), "index": index}

