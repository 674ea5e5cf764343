"""The teacher families a recipe can name (torch-free: recipes check ``teacher.family`` when they load)."""

from __future__ import annotations

# Teacher families: family → "module:function" with train_teacher's signature (imported on use).
TEACHER_FAMILIES: dict[str, str] = {
    "sam": "edge_medsam.training.jobs:train_sam",
    "syncsam": "edge_medsam.training.syncsam_job:train_syncsam",
    "sam3d": "edge_medsam.training.sam3d_job:train_sam3d",
    "ka2er": "edge_medsam.training.ka2er_job:train_ka2er",
    "reference": "edge_medsam.training.reference_job:train_reference",
}
NO_TEACHER = "none"  # the student learns from ground truth alone (an ablation)
# Families configured by the teacher section's own fields (arch, image_size, adapter, ...), not by its options.
WITHOUT_OPTIONS = ("sam", NO_TEACHER)
