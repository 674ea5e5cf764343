"""The edge student model (semi-shared encoder, SPPG self-prompt, QDMD decoder)."""

from edge_medsam.models.student.config import PRESETS, StudentConfig, student_preset
from edge_medsam.models.student.model import EdgeStudent

__all__ = ["PRESETS", "EdgeStudent", "StudentConfig", "student_preset"]
