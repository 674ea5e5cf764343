"""Torch models: SAM-family teachers (``teachers``), their building blocks (``sam``) and the edge student."""

from edge_medsam.models.sam.checkpoint import sanitise_checkpoint
from edge_medsam.models.teachers import Teacher, TeacherFeatures, TeacherProfile, build_sam, get_profile, load_teacher

__all__ = [
    "Teacher",
    "TeacherFeatures",
    "TeacherProfile",
    "build_sam",
    "get_profile",
    "load_teacher",
    "sanitise_checkpoint",
]
