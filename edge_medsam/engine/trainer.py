"""The training loop: AdamW + warm-up/cosine, gradient accumulation, AMP, clipping, DDP, atomic checkpoints
and exact resume (model, optimizer, scheduler, scaler, every RNG, step and data position)."""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from edge_medsam.engine.checkpoint import LATEST, atomic_save, load_checkpoint
from edge_medsam.engine.config import TrainConfig
from edge_medsam.engine.distributed import DistInfo, all_reduce_mean, barrier, init_distributed, pick_device
from edge_medsam.engine.logs import RunLogger
from edge_medsam.engine.sampler import ResumableSampler
from edge_medsam.engine.schedule import warmup_cosine
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.io.files import remove_partial_files

_NON_FINITE_FIX = ("lower the learning rate or enable gradient clipping, then --resume from the last good checkpoint; "
                   "check the data for NaN values")


@dataclass
class StepContext:
    """What a task's training step may use: the device, the autocast context, a seeded numpy RNG, the step."""

    device: torch.device
    step: int
    rng: np.random.Generator
    autocast: Callable[[], Any]
    dist: DistInfo


class TrainTask(Protocol):
    """The part of a training job that knows the model: turns a batch into a loss."""

    def training_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Return a dict with a scalar "loss" (and any other scalars to log)."""
        ...


@dataclass
class TrainResult:
    """Where a finished run left things."""

    step: int
    checkpoint: Path
    metrics: dict[str, float] = field(default_factory=dict)


def _autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    mode = config.amp
    if mode == "auto":
        mode = "bf16" if device.type == "cuda" else "off"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[mode]


def _rng_state(numpy_rng: np.random.Generator) -> dict[str, Any]:
    # Plain ints and tensors only, so the checkpoint loads with weights_only=True.
    numpy_global = np.random.get_state(legacy=False)
    numpy_global["state"] = {"key": numpy_global["state"]["key"].tolist(), "pos": int(numpy_global["state"]["pos"])}
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy_global": numpy_global, "numpy_task": numpy_rng.bit_generator.state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any], numpy_rng: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    numpy_global = dict(state["numpy_global"])
    numpy_global["state"] = {"key": np.asarray(numpy_global["state"]["key"], np.uint32),
                             "pos": numpy_global["state"]["pos"]}
    np.random.set_state(numpy_global)
    numpy_rng.bit_generator.state = state["numpy_task"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


class _StepModule(nn.Module):
    """Puts a whole training step (any number of encode/decode calls) inside one forward, so DDP syncs it all."""

    def __init__(self, model: nn.Module, task: TrainTask):
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, batch: Any, ctx: StepContext) -> dict[str, torch.Tensor]:
        return self.task.training_step(self.model, batch, ctx)


class Trainer:
    """Runs a TrainTask over a dataset for a fixed number of optimizer steps, resumable at any checkpoint."""

    def __init__(self, model: nn.Module, task: TrainTask, dataset: Dataset, config: TrainConfig, out_dir: Path,
                 *, collate_fn: Callable[[list[Any]], Any] | None = None,
                 param_groups: Iterable[dict[str, Any]] | None = None, run_config: dict[str, Any] | None = None):
        self.model, self.task, self.dataset, self.config = model, task, dataset, config
        self.out_dir = Path(out_dir)
        self.collate_fn = collate_fn
        self.param_groups = list(param_groups) if param_groups is not None else None
        self.run_config = run_config or {}

    @property
    def checkpoint_path(self) -> Path:
        """The rolling checkpoint that --resume continues from."""
        return self.out_dir / "checkpoints" / LATEST

    def fit(self, resume: bool | str | Path = False) -> TrainResult:
        """Train to ``config.steps``; with ``resume`` continue from the last (or the given) checkpoint."""
        before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
        if self.config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
        torch.use_deterministic_algorithms(self.config.deterministic, warn_only=True)
        try:
            return self._fit(resume)
        finally:
            torch.use_deterministic_algorithms(before[0], warn_only=before[1])

    def _fit(self, resume: bool | str | Path) -> TrainResult:
        cfg = self.config
        info = init_distributed(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
        device = pick_device(cfg.device, info)
        torch.manual_seed(cfg.seed + info.rank)
        random.seed(cfg.seed + info.rank)
        np.random.seed(cfg.seed + info.rank)
        task_rng = np.random.default_rng([cfg.seed, info.rank])

        model = self.model.to(device)
        params = self.param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
        stepper: nn.Module = _StepModule(model, self.task)
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
        scheduler = warmup_cosine(optimizer, cfg.steps, cfg.warmup_steps, cfg.min_lr_factor)
        amp_dtype = _autocast_dtype(cfg, device)
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
        if info.enabled:
            stepper = nn.parallel.DistributedDataParallel(
                stepper, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=cfg.find_unused_parameters)

        step, epoch, consumed = 0, 0, 0
        if info.is_main:  # a run killed while writing (SIGKILL, power loss) leaves its temporary files behind
            for folder in (self.out_dir, self.checkpoint_path.parent):
                remove_partial_files(folder)
        if resume:
            path = self.checkpoint_path if resume is True else Path(resume)
            state = load_checkpoint(path, map_location=device)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            step, epoch, consumed = state["step"], state["epoch"], state["consumed"]
            _restore_rng(state["rng"][min(info.rank, len(state["rng"]) - 1)], task_rng)

        logger = RunLogger(self.out_dir, enabled=info.is_main, tensorboard=cfg.tensorboard, resume_step=step)
        if info.is_main:
            logger.write_config({"train": asdict(cfg), **self.run_config})
        sampler = ResumableSampler(len(self.dataset), seed=cfg.seed, rank=info.rank, world_size=info.world_size)

        def autocast():
            return torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)

        def save(path: Path) -> None:
            # A finite loss can still leave NaN weights behind (a NaN gradient): never let them replace a good checkpoint.
            bad = next((k for k, v in model.state_dict().items() if v.is_floating_point() and not v.isfinite().all()),
                       None)
            if bad is not None:
                progress.close()
                raise EdgeMedSAMError(f"weights became non-finite ({bad}) at step {step}; stopped without saving them",
                                      path=path if path.exists() else None, fix=_NON_FINITE_FIX)
            rng = _rng_state(task_rng)
            states = [None] * info.world_size if info.enabled else [rng]
            if info.enabled:
                torch.distributed.all_gather_object(states, rng)
            if info.is_main:
                atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "step": step,
                             "epoch": epoch, "consumed": consumed, "rng": states,
                             "config": {"train": asdict(cfg), **self.run_config}}, path)
            barrier(info)

        model.train()
        # In a log file (no terminal) a bar redrawn every step would bury everything else.
        progress = tqdm(total=cfg.steps, initial=step, desc=self.out_dir.name, disable=not info.is_main,
                        dynamic_ncols=True, mininterval=0.1 if sys.stderr.isatty() else 30.0)
        metrics: dict[str, float] = {}
        window: dict[str, list[float]] = {}
        started, seen = time.perf_counter(), 0
        micro = 0
        optimizer.zero_grad(set_to_none=True)
        while step < cfg.steps:
            sampler.set_position(epoch, consumed)
            loader = DataLoader(self.dataset, batch_size=cfg.batch_size, sampler=sampler, collate_fn=self.collate_fn,
                                num_workers=cfg.num_workers, drop_last=False,
                                generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch),
                                persistent_workers=False)
            for batch in loader:
                ctx = StepContext(device=device, step=step, rng=task_rng, autocast=autocast, dist=info)
                sync = (micro + 1) % cfg.grad_accum == 0
                with stepper.no_sync() if info.enabled and not sync else nullcontext():
                    out = stepper(batch, ctx)
                    loss = out["loss"]
                    if not torch.isfinite(loss.detach()).all():
                        progress.close()
                        raise EdgeMedSAMError(
                            f"loss became {loss.item()} at step {step}; stopped",
                            path=self.checkpoint_path if self.checkpoint_path.exists() else None,
                            fix=_NON_FINITE_FIX)
                    scaler.scale(loss / cfg.grad_accum).backward()
                for key, value in out.items():
                    window.setdefault(key, []).append(float(value.detach()))
                micro += 1
                consumed += cfg.batch_size
                seen += cfg.batch_size * info.world_size
                if not sync:
                    continue
                if cfg.clip_grad:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(
                        [p for group in optimizer.param_groups for p in group["params"]], cfg.clip_grad)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                progress.update(1)
                if step % cfg.log_every == 0 or step == cfg.steps:
                    metrics = {k: float(all_reduce_mean(torch.tensor(np.mean(v), device=device), info))
                               for k, v in window.items()}
                    window.clear()
                    elapsed = time.perf_counter() - started
                    metrics.update(lr=scheduler.get_last_lr()[0], samples_per_s=seen / max(elapsed, 1e-9))
                    logger.log(step, epoch, metrics)
                    progress.set_postfix(loss=f"{metrics['loss']:.4f}")
                if step % cfg.ckpt_every == 0 or step == cfg.steps:
                    save(self.checkpoint_path)
                if step >= cfg.steps:
                    break
            else:
                epoch, consumed = epoch + 1, 0
        progress.close()
        logger.close()
        if not metrics and window:
            metrics = {k: float(np.mean(v)) for k, v in window.items()}
        return TrainResult(step=step, checkpoint=self.checkpoint_path, metrics=metrics)
