"""SAM ViT-B at 1024 (MedSAM's architecture) as a reference: the package's SamTeacher with a reference spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_medsam.models.reference.base import reference_spec
from edge_medsam.models.sam.arch import check_image_size, get_arch
from edge_medsam.models.teachers.base import TeacherProfile
from edge_medsam.models.teachers.sam import SamTeacher


@dataclass(frozen=True)
class SamVitConfig:
    """A SAM ViT (``arch`` vit_b by default; vit_tiny for tests) at ``image_size``."""

    image_size: int = 1024
    arch: str = "vit_b"

    def __post_init__(self) -> None:
        get_arch(self.arch)
        check_image_size(self.image_size, adapter=None)

    @property
    def grid(self) -> int:
        """Side of the image embedding."""
        return get_arch(self.arch).grid(self.image_size)


class ReferenceSam(SamTeacher):
    """SAM / MedSAM ViT with the official layout; encode, decode and the profile are SamTeacher's."""

    def __init__(self, name: str, config: SamVitConfig, profile: TeacherProfile):
        super().__init__(config.arch, config.image_size, adapter=None, profile=profile)
        self.name = name
        self.config = config

    def model_spec(self) -> dict[str, Any]:
        """The spec that rebuilds this model with ``edge_medsam.models.reference.build_from_spec``."""
        return reference_spec(self.name, self.config)
