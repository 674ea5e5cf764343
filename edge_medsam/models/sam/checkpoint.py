"""Official SAM-family checkpoints: safe reading, container unwrapping, detection by content, geometry resizing.

Every file is opened with ``torch.load(weights_only=True)``. What is in it decides what it is: a flat state
dict (SAM, MedSAM), a ``model`` / ``state_dict`` container (SAM-Med2D, training checkpoints), ``module.``
prefixes (DDP); the patch-embedding width gives ViT-B/L/H, the ``pos_embed`` grid the input size
(64 -> 1024, 16 -> 256) and ``Adapter`` keys mark SAM-Med2D.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from edge_medsam.engine.checkpoint import atomic_save
from edge_medsam.errors import InputError
from edge_medsam.models.sam.adapter import is_adapter_key
from edge_medsam.models.sam.arch import ARCHS, SamArch, arch_for_width

PATCH_EMBED_KEY = "image_encoder.patch_embed.proj.weight"
# TinyViT encoders of the SAM family (LiteMedSAM, MobileSAM releases) start with this convolution instead.
TINYVIT_STEM_KEY = "image_encoder.patch_embed.seq.0.c.weight"
POS_EMBED_KEY = "image_encoder.pos_embed"
CONTAINER_KEYS = ("model", "state_dict")
DDP_PREFIX = "module."


@dataclass(frozen=True)
class CheckpointInfo:
    """What a SAM-family state dict holds: encoder size, native input size, encoder adapter."""

    arch: SamArch
    image_size: int
    adapter: str | None


def sanitised_path(path: str | os.PathLike[str]) -> Path:
    """Where sanitise_checkpoint writes by default: ``<stem>_weights.pth`` next to the file."""
    path = Path(path)
    return path.with_name(f"{path.stem}_weights.pth")


def _sanitise_fix(path: Path) -> str:
    target = sanitised_path(path)
    return (f"if you trust the file, re-save its weights once with python -c \"from edge_medsam.models import "
            f"sanitise_checkpoint; sanitise_checkpoint('{path}', '{target}')\" (this unpickles it with "
            f"weights_only=False, which runs code stored in the file) and load '{target}' instead")


def read_state_dict(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Open a checkpoint with ``weights_only=True`` and return its flat SAM-layout state dict."""
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint file not found", path=path, fix="check the path")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many exception types for foreign, truncated or unsafe files
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found is not None:
            raise InputError(f"the file pickles Python objects besides tensors ({found.group(1)}), which safe "
                             "(weights_only) loading refuses", path=path, fix=_sanitise_fix(path)) from err
        raise InputError(f"not a readable PyTorch checkpoint ({_first_line(err)})", path=path,
                         fix="download the checkpoint again; a complete file opens with torch.load") from err
    return extract_state_dict(content, path)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:160]}" if lines else type(err).__name__


def _holds_tensors(mapping: Mapping[str, Any]) -> bool:
    return any(isinstance(value, torch.Tensor) for value in mapping.values())


def extract_state_dict(content: Any, path: str | os.PathLike[str] | None = None) -> dict[str, torch.Tensor]:
    """The SAM-layout state dict inside a loaded checkpoint (a ViT or TinyViT image encoder): unwraps
    ``model``/``state_dict``, strips ``module.``."""
    state = content
    while isinstance(state, Mapping) and not _holds_tensors(state):
        if "encoder_dict" in state:
            raise InputError("this is a 3DSAM-adapter checkpoint (encoder_dict/decoder_dict), not a 2D SAM-family "
                             "teacher", path=path, fix="give a SAM, MedSAM or SAM-Med2D checkpoint")
        inner = next((state[key] for key in CONTAINER_KEYS if isinstance(state.get(key), Mapping)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, Mapping):
        raise InputError(f"the checkpoint holds a {type(state).__name__}, not a state dict", path=path,
                         fix="give a SAM, MedSAM or SAM-Med2D checkpoint")
    tensors = {key.removeprefix(DDP_PREFIX): value for key, value in state.items() if isinstance(value, torch.Tensor)}
    if PATCH_EMBED_KEY not in tensors and TINYVIT_STEM_KEY not in tensors:
        sample = ", ".join(list(tensors)[:3]) or ", ".join(map(str, list(state)[:5])) or "nothing"
        raise InputError(f"no SAM image encoder in the checkpoint (no {PATCH_EMBED_KEY}; it holds {sample} ...)",
                         path=path, fix="give an official SAM ViT-B/L/H, MedSAM, SAM-Med2D or LiteMedSAM checkpoint")
    return tensors


def describe_state_dict(state: Mapping[str, torch.Tensor], path: str | os.PathLike[str] | None = None) -> CheckpointInfo:
    """Tell the encoder size, native input size and adapter of a SAM-layout state dict from its shapes."""
    width = int(state[PATCH_EMBED_KEY].shape[0])
    arch = arch_for_width(width)
    if arch is None:
        known = ", ".join(f"{a.embed_dim} ({a.name})" for a in ARCHS.values())
        raise InputError(f"image encoder width {width} is not a known SAM size", path=path, fix=f"widths: {known}")
    block_ids = {int(key.split(".")[2]) for key in state if key.startswith("image_encoder.blocks.")}
    depth = max(block_ids, default=-1) + 1
    if depth != arch.depth:
        raise InputError(f"image encoder width {width} is {arch.name}, but it has {depth} blocks instead of "
                         f"{arch.depth}", path=path, fix="give an unmodified SAM-family checkpoint")
    pos_embed = state.get(POS_EMBED_KEY)
    if pos_embed is None or pos_embed.dim() != 4 or pos_embed.shape[1] != pos_embed.shape[2]:
        shape = None if pos_embed is None else tuple(pos_embed.shape)
        raise InputError(f"positional embedding {POS_EMBED_KEY} is missing or not square ({shape})", path=path,
                         fix="give an unmodified SAM-family checkpoint")
    adapter = "med2d" if any(is_adapter_key(key) for key in state) else None
    return CheckpointInfo(arch=arch, image_size=int(pos_embed.shape[1]) * arch.patch_size, adapter=adapter)


def resize_geometry(state: Mapping[str, torch.Tensor], arch: SamArch, image_size: int) -> dict[str, torch.Tensor]:
    """Adapt ``pos_embed`` and the global blocks' relative-position tables to another input size.

    Same method as SAM-Med2D's ``load_from``: bilinear resize of the positional-embedding grid and linear
    resize (align_corners=False) of the global-attention ``rel_pos_h/w`` tables to ``2 * grid - 1`` rows.
    Windowed blocks keep their tables, which depend on the window size only.
    """
    grid = arch.grid(image_size)
    resized = dict(state)
    pos_embed = state[POS_EMBED_KEY]
    if tuple(pos_embed.shape[1:3]) != (grid, grid):
        grid_first = pos_embed.permute(0, 3, 1, 2).float()
        new = F.interpolate(grid_first, size=(grid, grid), mode="bilinear", align_corners=False)
        resized[POS_EMBED_KEY] = new.permute(0, 2, 3, 1).contiguous().to(pos_embed.dtype)
    rows = 2 * grid - 1
    for index in arch.global_attn_indexes:
        for axis in ("h", "w"):
            key = f"image_encoder.blocks.{index}.attn.rel_pos_{axis}"
            table = state.get(key)
            if table is not None and table.dim() == 2 and table.shape[0] != rows:
                new = F.interpolate(table[None, None].float(), size=(rows, table.shape[1]), mode="bilinear",
                                    align_corners=False)
                resized[key] = new[0, 0].contiguous().to(table.dtype)
    return resized


def sanitise_checkpoint(src: str | os.PathLike[str], dst: str | os.PathLike[str] | None = None) -> Path:
    """Re-save a trusted checkpoint's SAM-layout weights as a tensors-only file that loads with weights_only=True.

    This unpickles ``src`` with ``weights_only=False``, which runs any code stored in it: call it only on a file
    from a source you trust (e.g. the SAM-Med2D release that also pickles its optimizer). Returns ``dst``
    (default ``<stem>_weights.pth`` next to ``src``).
    """
    src = Path(src)
    target = Path(dst) if dst is not None else sanitised_path(src)
    if not src.is_file():
        raise InputError("checkpoint file not found", path=src, fix="check the path")
    try:
        content = torch.load(src, map_location="cpu", weights_only=False)
    except Exception as err:  # any unpickling failure of a foreign file
        raise InputError(f"cannot read the checkpoint ({_first_line(err)})", path=src,
                         fix="download the checkpoint again") from err
    atomic_save(extract_state_dict(content, src), target)
    read_state_dict(target)
    return target
