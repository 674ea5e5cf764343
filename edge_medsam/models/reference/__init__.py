"""Reference configurations for fair comparison, buildable with random weights and trainable like any teacher:
SAM ViT-B @1024 (MedSAM), LiteMedSAM @256, MobileSAM @1024, EfficientViT-SAM-L0 @512 and ESP-MedSAM @1024."""

from edge_medsam.models.reference.graphs import reference_graphs
from edge_medsam.models.reference.registry import (
    REFERENCE_NAMES,
    REFERENCES,
    build_from_spec,
    build_reference,
    reference_config,
)
from edge_medsam.models.reference.summary import reference_summary

__all__ = [
    "REFERENCES",
    "REFERENCE_NAMES",
    "build_from_spec",
    "build_reference",
    "reference_config",
    "reference_graphs",
    "reference_summary",
]
