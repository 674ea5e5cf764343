"""Images with ground truth and prompts for calibration, parity and accuracy checks, read from any dataset layout.

Images are preprocessed exactly as at inference (``normalise_intensity`` + ``to_model_input``); prompts are
drawn in the model frame from the labels (boxes, positive/negative points), and targets stay in the image's
original geometry, where the runtime's final masks live. Calibration and held-out images come from different
cases (``split_samples``), several modalities taking turns so every modality of the dataset is represented.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_medsam.data.layouts import Sample, load_sample, open_dataset, split_samples
from edge_medsam.data.prompt_batch import pack_prompts
from edge_medsam.data.prompts import simulate_prompts
from edge_medsam.errors import EdgeMedSAMError, InputError
from edge_medsam.modalities import normalise_intensity
from edge_medsam.preprocess import Geometry, PreprocessConfig, labels_to_model, to_model_input

MAX_OBJECTS = 4


@dataclass
class Probe:
    """One preprocessed image, its modality index, and prompts with their targets."""

    id: str
    modality: str
    modality_index: int
    image: np.ndarray  # [1, 3, S, S] float32 model input
    geometry: Geometry
    box_coords: np.ndarray  # [O, 2, 2] exact boxes as corner points (model frame)
    box_labels: np.ndarray  # [O, 2] float32, labels 2 and 3
    box_targets: np.ndarray  # [O, H, W] bool, original geometry
    point_coords: np.ndarray  # [O, P, 2] sampled clicks / jittered boxes (calibration prompts)
    point_labels: np.ndarray  # [O, P] float32
    foreground: np.ndarray  # [H, W] bool: every object, the self-prompt's target


def make_probe(sample_id: str, modality: str, modality_index: int, pixels: np.ndarray, labels: np.ndarray,
               config: PreprocessConfig, rng: np.random.Generator, hounsfield: bool = False) -> Probe | None:
    """A probe from raw pixels and an original-geometry label map; None when the image has no object."""
    image, geometry = to_model_input(normalise_intensity(pixels, modality, hounsfield=hounsfield), config)
    model_labels = labels_to_model(labels, geometry)
    exact = simulate_prompts(model_labels, rng, max_objects=MAX_OBJECTS, box_prob=1.0, jitter=0.0)
    if not exact:
        return None
    box_coords, box_labels = pack_prompts([o.box for o in exact], [None] * len(exact))
    drawn = simulate_prompts(model_labels, rng, max_objects=MAX_OBJECTS, box_prob=0.5, points_with_box_prob=0.3,
                             n_pos=(1, 3), n_neg=(0, 1), jitter=0.1)
    drawn = drawn or exact
    point_coords, point_labels = pack_prompts([o.box for o in drawn],
                                              [(o.coords, o.point_labels) if len(o.point_labels) else None
                                               for o in drawn])
    return Probe(sample_id, modality, modality_index, image, geometry, box_coords,
                 box_labels.astype(np.float32), np.stack([labels == o.label for o in exact]),
                 point_coords, point_labels.astype(np.float32), labels > 0)


def _interleave(samples: Iterable[Sample]) -> list[Sample]:
    """Samples ordered so the modalities take turns (a count cut anywhere keeps every modality it can)."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        groups[sample.modality].append(sample)
    order: list[Sample] = []
    for row in range(max((len(g) for g in groups.values()), default=0)):
        order += [g[row] for _, g in sorted(groups.items()) if row < len(g)]
    return order


def probes_from_samples(samples: list[Sample], count: int, config: PreprocessConfig, seed: int) -> list[Probe]:
    """Up to ``count`` probes from labelled samples, the modalities taking turns; unreadable files are skipped."""
    rng = np.random.default_rng(seed)
    probes: list[Probe] = []
    for sample in _interleave(samples):
        if len(probes) == count:
            break
        try:
            image, labels, modality = load_sample(sample)
        except EdgeMedSAMError:
            continue  # an unreadable file costs one probe, not the export
        if labels is None:
            continue
        probe = make_probe(sample.id, modality.name, modality.index, image.pixels, labels, config, rng,
                           image.hounsfield)
        if probe is not None:
            probes.append(probe)
    return probes


def load_probes(root: str | Path, calib_count: int, eval_count: int, config: PreprocessConfig,
                seed: int = 0) -> tuple[list[Probe], list[Probe]]:
    """(calibration probes, held-out probes) from a dataset folder, from disjoint cases."""
    if calib_count < 1 or eval_count < 1:
        raise InputError(f"calibration count {calib_count} and held-out count {eval_count} must be at least 1",
                         fix="pass --calib-count 1 or more")
    dataset = open_dataset(root)
    calib, held_out = split_samples(dataset.samples, (0.5, 0.5), seed=seed)
    if not calib or not held_out:
        raise InputError(f"the dataset has {len(dataset.samples)} samples, too few cases to keep calibration and "
                         "held-out images apart", path=root, fix="give a dataset with at least two cases")
    calib_probes = probes_from_samples(calib, calib_count, config, seed)
    eval_probes = probes_from_samples(held_out, eval_count, config, seed + 1)
    if not calib_probes or not eval_probes:
        raise InputError("no image with a labelled object in the calibration or held-out half of the dataset",
                         path=root, fix="give a dataset with masks (folder pairs, SA-Med2D, nnU-Net or MedSAM npz)")
    return calib_probes, eval_probes
