"""Training job of the 3D SAM adapter teacher (family "sam3d"): random crops of labelled volumes, simulated 3D
point / box prompts for a few objects per crop, Dice + cross-entropy (MONAI), through the training engine.

Recipe ``teacher:`` keys used: ``arch``, ``checkpoint`` (SAM-family weights for the frozen 2D parts),
``train_all``, ``train``; ``options`` holds the Sam3DConfig fields plus ``volumes`` (a dataset folder with labelled
volumes, e.g. nnU-Net raw; default: the volumes the samples are slices of, or the synthetic corpus's volumes),
``crops_per_volume``, ``cache_volumes`` and the prompt settings of ``VolumePrompts``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss

from edge_medsam.config_check import check_keys
from edge_medsam.data.layouts import Sample
from edge_medsam.data.volume_crops import VolumeCropDataset, find_volume_cases
from edge_medsam.engine.trainer import StepContext, TrainConfig, Trainer
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.models.files import save_model
from edge_medsam.models.teachers.sam3d import BOX_HIGH, BOX_LOW, Sam3DConfig, Sam3DTeacher, build_sam3d
from edge_medsam.prompt_labels import PAD_LABEL
from edge_medsam.recipes import TeacherSection

DATA_OPTIONS = ("volumes", "crops_per_volume", "cache_volumes")


@dataclass
class VolumePrompts:
    """How training prompts the objects of a crop: ``objects_per_crop`` objects, each with positive and negative
    clicks (inclusive count ranges) and, with ``box_prob``, its 3D bounding box as two corner points (then the
    positives may be 0)."""

    positive_points: tuple[int, int] = (1, 5)
    negative_points: tuple[int, int] = (0, 3)
    box_prob: float = 0.25
    objects_per_crop: int = 3
    min_voxels: int = 16  # objects smaller than this in a crop are prompted only when nothing larger is there

    def __post_init__(self) -> None:
        self.positive_points = (int(self.positive_points[0]), int(self.positive_points[1]))
        self.negative_points = (int(self.negative_points[0]), int(self.negative_points[1]))
        if self.objects_per_crop < 1 or not 1 <= self.positive_points[0] <= self.positive_points[1] or \
                not 0 <= self.negative_points[0] <= self.negative_points[1]:
            raise EdgeMedSAMError(f"point ranges {self.positive_points} / {self.negative_points} are not "
                                  "(min, max) with at least one positive, or objects_per_crop < 1",
                                  fix="use e.g. [1, 5] and [0, 3], and 1 or more objects per crop")

    @property
    def width(self) -> int:
        """Prompt slots per object (positives, negatives, two box corners)."""
        return self.positive_points[1] + self.negative_points[1] + 2


def simulate_volume_prompts(labels: np.ndarray, config: VolumePrompts, rng: np.random.Generator
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A crop's label map [D, H, W] → ``objects_per_crop`` objects' (coords [K, W, 3] voxel x, y, z; labels [K, W];
    masks [K, D, H, W]); objects are distinct while the crop holds enough of them."""
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    if len(ids) == 0:
        raise EdgeMedSAMError("a training crop holds no labelled voxel", fix="train on volumes with labels")
    large = ids[counts >= config.min_voxels]
    pool = large if len(large) else ids[[counts.argmax()]]
    chosen = rng.permutation(pool)[: config.objects_per_crop]
    chosen = np.resize(chosen, config.objects_per_crop)  # repeat when the crop holds fewer objects
    coords = np.zeros((len(chosen), config.width, 3), np.float32)
    point_labels = np.full((len(chosen), config.width), PAD_LABEL, np.int64)
    masks = np.stack([labels == label for label in chosen])
    for k, mask in enumerate(masks):
        found, kinds = _object_prompts(mask, config, rng)
        coords[k, : len(found)] = found
        point_labels[k, : len(found)] = kinds
    return coords, point_labels, masks


def _object_prompts(mask: np.ndarray, config: VolumePrompts, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    inside, outside = np.argwhere(mask), np.argwhere(~mask)
    use_box = rng.random() < config.box_prob
    low, high = config.positive_points
    positives = inside[rng.choice(len(inside), size=int(rng.integers(0 if use_box else low, high + 1)))]
    wanted = int(rng.integers(config.negative_points[0], config.negative_points[1] + 1))
    negatives = outside[rng.choice(len(outside), size=min(len(outside), wanted), replace=False)]
    coords = [positives, negatives]
    kinds = [np.ones(len(positives)), np.zeros(len(negatives))]
    if use_box:
        coords.append(np.stack([inside.min(axis=0), inside.max(axis=0)]))
        kinds.append(np.array([BOX_LOW, BOX_HIGH]))
    return np.concatenate(coords)[:, ::-1].astype(np.float32), np.concatenate(kinds)  # (d, h, w) → (x, y, z)


class Sam3DTask:
    """Each crop encoded once, its objects decoded from simulated prompts → Dice + cross-entropy against their masks."""

    def __init__(self, prompts: VolumePrompts):
        self.prompts = prompts
        self.loss = DiceCELoss(sigmoid=True)

    def training_step(self, model: Sam3DTeacher, batch: dict[str, torch.Tensor], ctx: StepContext
                      ) -> dict[str, torch.Tensor]:
        drawn = [simulate_volume_prompts(labels, self.prompts, ctx.rng) for labels in batch["labels"].numpy()]
        coords = torch.from_numpy(np.concatenate([d[0] for d in drawn])).to(ctx.device)
        labels = torch.from_numpy(np.concatenate([d[1] for d in drawn])).to(ctx.device)
        target = torch.from_numpy(np.concatenate([d[2] for d in drawn]))[:, None].float().to(ctx.device)
        volume = model.normalise_volume(batch["image"].to(ctx.device))
        with ctx.autocast():
            # Encode each crop once, decode its K objects (SAM-Med2D's several masks per image).
            levels, _ = model.encode_volume(volume)
            levels = [level.repeat_interleave(self.prompts.objects_per_crop, dim=0) for level in levels]
            logits = model.decode_volume(levels, coords, labels, tuple(volume.shape[2:]))
        loss = self.loss(logits.float(), target)
        with torch.no_grad():
            hard = (logits > 0).float()
            dice = (2 * (hard * target).flatten(1).sum(1) + 1) / (hard.flatten(1).sum(1) + target.flatten(1).sum(1) + 1)
        return {"loss": loss, "dice": dice.mean()}


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A recipe's teacher options → (Sam3DConfig fields, data settings, VolumePrompts fields); unknown keys fail."""
    prompt_keys = tuple(f.name for f in fields(VolumePrompts))
    known = {f.name for f in fields(Sam3DConfig)} | set(DATA_OPTIONS) | set(prompt_keys)
    check_keys(options, known, "teacher.options (sam3d)")
    data = {k: v for k, v in options.items() if k in DATA_OPTIONS}
    prompts = {k: v for k, v in options.items() if k in prompt_keys}
    model = {k: v for k, v in options.items() if k not in data and k not in prompts}
    return model, data, prompts


def train_sam3d(section: TeacherSection, samples: list[Sample], out_dir: str | Path, *, seed: int = 0,
                resume: bool = False) -> Path:
    """Train a 3D SAM adapter on random crops of labelled volumes; returns ``teacher.pt``."""
    out_dir = Path(out_dir)
    model_options, data, prompt_options = split_options(dict(section.options))
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the same seed gives the same initial weights (and run)
        model = build_sam3d(**{"arch": section.arch, **model_options}, checkpoint=section.checkpoint)
    if section.train_all:
        model.requires_grad_(True)
    else:
        model.freeze_for_training()
    cases = find_volume_cases(samples, data.get("volumes"))
    dataset = VolumeCropDataset(cases, model.config.crop_size, crops_per_volume=int(data.get("crops_per_volume", 64)),
                                seed=seed, cache_volumes=int(data.get("cache_volumes", 8)))
    trainer = Trainer(model, Sam3DTask(VolumePrompts(**prompt_options)), dataset,
                      TrainConfig.from_dict({"seed": seed, **section.train}), out_dir,
                      run_config={"teacher": asdict(section), "volumes": [case.case for case in cases]})
    trainer.fit(resume=resume and trainer.checkpoint_path.exists())
    return save_model(model.eval(), out_dir / "teacher.pt",
                      extra={"trained_on": len(cases), "volumes": [str(case.path) for case in cases]})
