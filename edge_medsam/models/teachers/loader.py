"""``load_teacher``: open an official SAM, MedSAM, SAM-Med2D or LiteMedSAM checkpoint as a ready teacher, strictly."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from edge_medsam.errors import InputError
from edge_medsam.models.sam.adapter import is_adapter_key
from edge_medsam.models.sam.arch import get_arch
from edge_medsam.models.sam.checkpoint import describe_state_dict, read_state_dict, resize_geometry
from edge_medsam.models.teachers.base import Teacher, TeacherProfile
from edge_medsam.models.teachers.profiles import MEDSAM, SAM, SAM_MED2D, get_profile
from edge_medsam.models.teachers.sam import SamTeacher


def _default_profile(path: Path, adapter: str | None) -> TeacherProfile:
    if adapter:
        return SAM_MED2D
    # MedSAM ships SAM's exact keys and shapes; only the name tells it apart.
    return MEDSAM if "medsam" in path.name.lower() else SAM


def _key_list(keys: list[str]) -> str:
    return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def load_teacher(
    path: str | os.PathLike[str],
    *,
    arch: str | None = None,
    profile: TeacherProfile | str | None = None,
    image_size: int | None = None,
    adapter: str | None = None,
    map_location: str | torch.device = "cpu",
) -> Teacher:
    """Open a SAM / MedSAM / SAM-Med2D checkpoint as a SamTeacher with strict key and shape matching, or
    LiteMedSAM's release (recognised by its TinyViT keys and 1x1 patch embedding) as the ``litemedsam`` reference.

    What the file holds decides the model: containers (``model``, ``state_dict``, ``module.``) are unwrapped,
    the patch-embedding width gives ViT-B/L/H (``arch``, if given, must agree), the ``pos_embed`` grid the
    native input size, ``Adapter`` keys SAM-Med2D. ``image_size`` other than the native one resizes the
    positional embedding and global relative-position tables (as SAM-Med2D did to run SAM at 256).

    ``profile`` (sam, medsam, sam_med2d or a TeacherProfile) sets preprocessing and prompt semantics. Default:
    sam_med2d for a file with adapters; otherwise medsam when the file name contains "medsam", else sam —
    MedSAM and SAM files hold the same keys, so pass ``profile="medsam"`` for a renamed MedSAM file.
    ``adapter="med2d"`` on a file without adapters adds freshly initialised SAM-Med2D adapters (SAM-Med2D's
    starting point); every other key must still be in the file.
    """
    path = Path(path)
    state = read_state_dict(path, map_location)
    from edge_medsam.models.reference.litemedsam_weights import is_litemedsam_state, load_litemedsam

    if is_litemedsam_state(state):
        if any(option is not None for option in (arch, profile, image_size, adapter)):
            raise InputError("LiteMedSAM's checkpoint takes no arch, profile, image_size or adapter", path=path,
                             fix="leave those options out")
        return load_litemedsam(path, state)
    info = describe_state_dict(state, path)
    if arch is not None and get_arch(arch) != info.arch:
        raise InputError(f"the checkpoint holds a {info.arch.name} encoder, not {arch}", path=path,
                         fix=f"pass arch={info.arch.name!r} or leave arch out")
    if adapter is not None and info.adapter is not None and adapter != info.adapter:
        raise InputError(f"the checkpoint has {info.adapter} adapters, not {adapter}", path=path,
                         fix="leave adapter out")
    kind = info.adapter or adapter
    size = image_size or info.image_size
    chosen = get_profile(profile) if profile is not None else _default_profile(path, kind)
    state = {key: value.float() if value.is_floating_point() else value
             for key, value in resize_geometry(state, info.arch, size).items()}

    # Built on the meta device and filled by assignment: no random initialisation, no second copy in memory.
    with torch.device("meta"):
        teacher = SamTeacher(info.arch, size, kind, chosen)
    try:
        missing, unexpected = teacher.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as err:
        problem = " ".join(str(err).split())[:400]
        raise InputError(f"the checkpoint does not fit a {info.arch.name} SAM model ({problem})", path=path,
                         fix="give an unmodified SAM-family checkpoint") from err
    fresh_adapters = kind is not None and info.adapter is None
    missing = [key for key in missing if not (fresh_adapters and is_adapter_key(key))]
    if missing or unexpected:
        parts = ([f"missing keys {_key_list(missing)}"] if missing else []) + (
            [f"unexpected keys {_key_list(unexpected)}"] if unexpected else [])
        raise InputError(f"the checkpoint does not match the {info.arch.name} SAM layout: {'; '.join(parts)}",
                         path=path, fix="give an unmodified SAM, MedSAM or SAM-Med2D checkpoint")
    if fresh_adapters:
        for block in teacher.image_encoder.blocks:
            block.Adapter.to_empty(device=map_location)
            block.Adapter.reset_parameters()
    return teacher.eval()
