"""The SAM ViT encoder sizes (official B/L/H and a tiny test size) and the numbers derived from them."""

from __future__ import annotations

from dataclasses import dataclass

from edge_medsam.errors import InputError


@dataclass(frozen=True)
class SamArch:
    """Hyper-parameters of a SAM model; the official values come from segment_anything/build_sam.py."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    patch_size: int = 16
    mlp_ratio: float = 4.0
    prompt_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_hidden_dim: int = 256
    mask_in_chans: int = 16

    def grid(self, image_size: int) -> int:
        """Tokens per side of the image embedding for a square input of ``image_size`` pixels."""
        return image_size // self.patch_size


ARCHS: dict[str, SamArch] = {
    "vit_b": SamArch("vit_b", 768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamArch("vit_l", 1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamArch("vit_h", 1280, 32, 16, (7, 15, 23, 31)),
    # Not released models: a CPU-trainable teacher for the quickstart, and a test size for the real code paths.
    "vit_mini": SamArch("vit_mini", 192, 4, 3, (1, 3), prompt_dim=96, decoder_mlp_dim=384, decoder_heads=4,
                        iou_hidden_dim=96),
    "vit_tiny": SamArch("vit_tiny", 64, 2, 2, (1,), prompt_dim=32, decoder_mlp_dim=64, decoder_heads=4,
                        iou_hidden_dim=32),
}


def get_arch(name: str | SamArch) -> SamArch:
    """The SamArch called ``name`` (vit_b, vit_l, vit_h, vit_tiny)."""
    if isinstance(name, SamArch):
        return name
    key = str(name).lower().replace("-", "_")
    if key not in ARCHS:
        raise InputError(f"unknown SAM encoder {name!r}", fix=f"use one of {', '.join(ARCHS)}")
    return ARCHS[key]


def arch_for_width(width: int) -> SamArch | None:
    """The SamArch whose patch embedding has ``width`` channels, or None."""
    return next((arch for arch in ARCHS.values() if arch.embed_dim == width), None)


def check_image_size(image_size: int, *, adapter: str | None) -> int:
    """Validate a model input size: whole patches, and an even token grid where the adapter needs one."""
    size = int(image_size)
    step = 32 if adapter else 16
    if size < step or size % step:
        # The adapter's stride-2 conv / transposed conv pair only restores even token grids.
        raise InputError(f"input size {image_size} is not a positive multiple of {step}", fix="use 256, 512 or 1024")
    return size
