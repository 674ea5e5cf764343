"""The engine's settings of one run (torch-free: recipes check their `train:` sections when they load)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edge_medsam.config_check import check_fields, check_keys
from edge_medsam.errors import EdgeMedSAMError

AMP_MODES = ("auto", "bf16", "fp16", "off")


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping settings of one run (the recipe's `train:` section)."""

    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 50
    min_lr_factor: float = 0.01
    grad_accum: int = 1
    amp: str = "auto"  # auto: bf16 on CUDA, off on CPU; or "bf16", "fp16", "off"
    clip_grad: float | None = 1.0
    ckpt_every: int = 200
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    find_unused_parameters: bool = False
    tensorboard: bool = True
    # torch.use_deterministic_algorithms for the run (warn-only where an op has no deterministic kernel): the same
    # recipe and seed give bit-identical weights. Without it two runs of the student's decoder stage on CPU had
    # weights up to 5e-4 apart after 9 steps; with it they were identical (and the stage ~9 % slower).
    deterministic: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "train settings") -> TrainConfig:
        """Build from a recipe mapping (``where``: its section): unknown keys refused, the numbers checked with
        their ranges, then every value's type."""
        check_keys(data, cls.__dataclass_fields__, where)
        values = dict(data)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        config = cls(**values)
        check_fields(cls, data, where)
        return config

    def __post_init__(self) -> None:
        # A NaN or negative setting would surface steps later as a torch error or a NaN loss: refuse it here.
        wholes = {"steps": 1, "batch_size": 1, "grad_accum": 1, "ckpt_every": 1, "log_every": 1, "warmup_steps": 0,
                  "num_workers": 0}
        for name, least in wholes.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise EdgeMedSAMError(f"train setting {name}={value!r} is not a whole number >= {least}",
                                      fix=f"set train: {name} to a whole number >= {least} in the recipe")
        at_least_zero, positive = (">= 0", lambda v: v >= 0), ("> 0", lambda v: v > 0)
        numbers = [("lr", self.lr, *positive), ("weight_decay", self.weight_decay, *at_least_zero),
                   ("min_lr_factor", self.min_lr_factor, *at_least_zero),
                   *[("betas", beta, "in [0, 1)", lambda v: 0 <= v < 1) for beta in self.betas]]
        if self.clip_grad is not None:
            numbers.append(("clip_grad", self.clip_grad, ">= 0 (0 or null: no clipping)", at_least_zero[1]))
        for name, value, bound, ok in numbers:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not ok(value):
                text = " (YAML reads 1e-3 as text: write 1.0e-3)" if isinstance(value, str) else ""
                raise EdgeMedSAMError(f"train setting {name}={value!r} is not a finite number {bound}",
                                      fix=f"set train: {name} to a finite number {bound} in the recipe{text}")
        if self.amp not in AMP_MODES:
            raise EdgeMedSAMError(f"train setting amp={self.amp!r} is unknown", fix=f"use one of {', '.join(AMP_MODES)}")
