"""Teachers: the common interface, per-teacher input profiles, and the SAM-family teachers."""

from edge_medsam.models.teachers.base import PromptBatch, Teacher, TeacherFeatures, TeacherProfile, best_mask
from edge_medsam.models.teachers.loader import load_teacher
from edge_medsam.models.teachers.profiles import MEDSAM, PROFILES, SAM, SAM_MED2D, get_profile
from edge_medsam.models.teachers.sam import SamTeacher, build_sam

__all__ = [
    "MEDSAM",
    "PROFILES",
    "SAM",
    "SAM_MED2D",
    "PromptBatch",
    "SamTeacher",
    "Teacher",
    "TeacherFeatures",
    "TeacherProfile",
    "best_mask",
    "build_sam",
    "get_profile",
    "load_teacher",
]
