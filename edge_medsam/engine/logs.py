"""Run logs: the resolved config, a CSV of metrics (resume-safe), TensorBoard scalars when available, timed steps."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from edge_medsam.io.files import atomic_write_text

T = TypeVar("T")


class Steps:
    """Runs the named steps of a long job, logging each as it starts and ends; ``seconds`` keeps how long each took."""

    def __init__(self, log: Callable[[str], None], prefix: str = ""):
        self.log, self.prefix, self.seconds = log, prefix, {}

    def __call__(self, name: str, fn: Callable[[], T]) -> T:
        self.log(f"{self.prefix}{name} …")
        start = time.perf_counter()
        result = fn()
        self.seconds[name] = round(time.perf_counter() - start, 2)
        self.log(f"{self.prefix}{name} done in {self.seconds[name]:.1f} s")
        return result


class RunLogger:
    """Writes ``config.yaml``, ``metrics.csv`` and ``tensorboard/`` in a run folder (main rank only)."""

    def __init__(self, out_dir: Path, *, enabled: bool = True, tensorboard: bool = True, resume_step: int = 0):
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.csv_path = self.out_dir / "metrics.csv"
        self._rows: list[dict[str, Any]] = []
        self._writer = None
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.csv_path.exists():
            # Rows past the resumed step belong to a run that was cut off; the resumed run writes them again.
            with self.csv_path.open(newline="") as handle:
                self._rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= resume_step]
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=resume_step + 1)
            except ImportError:  # tensorboard is optional; the CSV has the same numbers
                self._writer = None

    def write_config(self, config: dict[str, Any]) -> None:
        """Save the fully resolved config of the run."""
        if self.enabled:
            atomic_write_text(self.out_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def log(self, step: int, epoch: int, metrics: dict[str, float]) -> None:
        """Append one row of scalars."""
        if not self.enabled:
            return
        self._rows.append({"step": step, "epoch": epoch, **{k: f"{v:.6g}" for k, v in metrics.items()}})
        fields: list[str] = []
        for row in self._rows:
            fields.extend(k for k in row if k not in fields)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        writer.writerows(self._rows)
        atomic_write_text(self.csv_path, buffer.getvalue())
        if self._writer is not None:
            for key, value in metrics.items():
                self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        """Flush TensorBoard."""
        if self._writer is not None:
            self._writer.close()
