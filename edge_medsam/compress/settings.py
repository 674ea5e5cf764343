"""What `edge-medsam export` and a recipe's ``export:`` section ask for (torch-free: recipes check it on load)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_medsam.config_check import check_fields
from edge_medsam.errors import InputError
from edge_medsam.runtime.manifest import GRAPH_FORMATS, PRECISIONS

OPSET = 18  # what TensorRT 10 (JetPack 6) parses


@dataclass
class ExportSettings:
    """What to export and how (the recipe's ``export:`` section uses the same names)."""

    formats: tuple[str, ...] = GRAPH_FORMATS
    precision: tuple[str, ...] = PRECISIONS
    calib_count: int = 64
    eval_count: int = 32
    max_dice_drop: float | None = None
    zip: bool = False
    seed: int = 0
    opset: int = OPSET

    def __post_init__(self) -> None:
        self.formats = tuple(dict.fromkeys(self.formats))
        self.precision = tuple(dict.fromkeys(self.precision))
        for what, given, known in (("format", self.formats, GRAPH_FORMATS), ("precision", self.precision, PRECISIONS)):
            unknown = [g for g in given if g not in known]
            if unknown or not given:
                raise InputError(f"unknown or no {what} {unknown or ''}".strip(), fix=f"use some of {', '.join(known)}")
        if "fp32" not in self.precision:
            self.precision = ("fp32", *self.precision)  # FP32 graphs are the parity gate and the others' source
        if self.max_dice_drop is not None and not 0.0 <= self.max_dice_drop <= 1.0:
            raise InputError(f"--max-dice-drop {self.max_dice_drop} is not between 0 and 1", fix="use e.g. 0.02")
        if self.opset > OPSET:
            raise InputError(f"opset {self.opset} is above {OPSET}, what TensorRT 10 (JetPack 6) parses",
                             fix=f"use {OPSET} or lower")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "export settings") -> ExportSettings:
        """Build from a recipe's ``export:`` mapping (``where``: its section; lists or comma-separated strings)."""
        data = dict(data)
        for key in ("formats", "precision"):
            if isinstance(data.get(key), str):
                data[key] = [p.strip() for p in data[key].split(",") if p.strip()]
        check_fields(cls, data, where)
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})
