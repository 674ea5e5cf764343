"""Per-teacher input profiles: how SAM, MedSAM and SAM-Med2D were trained to see images and prompts.

Images reach a profile as float [0, 1] RGB (``normalise_intensity``); ImageNet mean/std on [0, 1] are SAM's
pixel mean/std on [0, 255] ([123.675, 116.28, 103.53] / [58.395, 57.12, 57.375]), so one set of numbers serves.
"""

from __future__ import annotations

from edge_medsam.errors import InputError
from edge_medsam.models.teachers.base import TeacherProfile
from edge_medsam.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig

# SAM: longest side to 1024, zero pad bottom/right, mean/std; mask prompts are the previous low-res logits.
SAM = TeacherProfile(
    name="sam",
    preprocess=PreprocessConfig(1024, IMAGENET_MEAN, IMAGENET_STD, resize="longest_side"),
)

# MedSAM: 1024x1024 without keeping the aspect ratio, [0, 1] without mean/std, box prompts, one mask;
# trained with a frozen prompt encoder, image encoder and decoder updated.
MEDSAM = TeacherProfile(
    name="medsam",
    preprocess=PreprocessConfig(1024, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), resize="stretch"),
    multimask=False,
    prompt_types=("box",),
    trainable=("image_encoder.*", "mask_decoder.*", "spatial_prompts.*"),
)

# SAM-Med2D: 256x256 stretch with SAM's mean/std. Its data pipeline reads images with cv2 and never converts
# them, so its weights saw BGR. Mask prompts are sigmoid probabilities; trunk frozen, adapters + prompt encoder
# + decoder trained. (Its own resize is nearest-neighbour with centre padding for images under 256 px;
# the package's one resampling rule is used instead.)
SAM_MED2D = TeacherProfile(
    name="sam_med2d",
    preprocess=PreprocessConfig(256, IMAGENET_MEAN, IMAGENET_STD, resize="stretch"),
    mask_prompt="probabilities",
    channel_order="BGR",
    trainable=("image_encoder.blocks.*.Adapter.*", "prompt_encoder.*", "mask_decoder.*", "spatial_prompts.*"),
)

PROFILES: dict[str, TeacherProfile] = {profile.name: profile for profile in (SAM, MEDSAM, SAM_MED2D)}
_ALIASES = {"sam-med2d": "sam_med2d", "sammed2d": "sam_med2d", "sam_med": "sam_med2d"}


def get_profile(name: str | TeacherProfile) -> TeacherProfile:
    """The teacher profile called ``name`` (sam, medsam, sam_med2d)."""
    if isinstance(name, TeacherProfile):
        return name
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in PROFILES:
        raise InputError(f"unknown teacher profile {name!r}", fix=f"use one of {', '.join(PROFILES)}")
    return PROFILES[key]
