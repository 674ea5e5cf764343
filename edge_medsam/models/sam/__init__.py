"""SAM building blocks: official segment_anything modules, the SAM-Med2D adapter, checkpoint reading."""

from edge_medsam.models.sam.adapter import AdaptedBlock, Med2DAdapter, is_adapter_key
from edge_medsam.models.sam.arch import ARCHS, SamArch, get_arch
from edge_medsam.models.sam.checkpoint import (
    CheckpointInfo,
    describe_state_dict,
    read_state_dict,
    resize_geometry,
    sanitise_checkpoint,
)
from edge_medsam.models.sam.components import (
    SamMaskDecoder,
    SamPromptEncoder,
    build_image_encoder,
    build_mask_decoder,
    build_prompt_encoder,
)

__all__ = [
    "ARCHS",
    "AdaptedBlock",
    "CheckpointInfo",
    "Med2DAdapter",
    "SamArch",
    "SamMaskDecoder",
    "SamPromptEncoder",
    "build_image_encoder",
    "build_mask_decoder",
    "build_prompt_encoder",
    "describe_state_dict",
    "get_arch",
    "is_adapter_key",
    "read_state_dict",
    "resize_geometry",
    "sanitise_checkpoint",
]
