"""Training engine: exact resume, atomic checkpoints, non-finite loss, and DDP on two CPU processes."""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from edge_medsam import EdgeMedSAMError
from edge_medsam.engine.checkpoint import atomic_save, load_checkpoint
from edge_medsam.engine.logs import Steps
from edge_medsam.engine.sampler import ResumableSampler
from edge_medsam.engine.trainer import TrainConfig, Trainer


class PairDataset(Dataset):
    def __init__(self, n=37):
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 8, generator=gen)
        self.y = self.x @ torch.randn(8, 1, generator=gen)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class NoisyRegression:
    """Uses every RNG the engine must restore: torch (dropout), numpy task RNG, the data order."""

    def __init__(self, blow_up_at=None, interrupt_at=None):
        self.blow_up_at = blow_up_at
        self.interrupt_at = interrupt_at

    def training_step(self, model, batch, ctx):
        if self.interrupt_at is not None and ctx.step >= self.interrupt_at:
            raise KeyboardInterrupt  # a user's Ctrl-C, after the step-5 checkpoint and before step 10's
        x, y = (t.to(ctx.device) for t in batch)
        noise = torch.from_numpy(ctx.rng.normal(0, 0.01, size=y.shape).astype(np.float32))
        loss = nn.functional.mse_loss(model(x), y + noise)
        if self.blow_up_at is not None and ctx.step >= self.blow_up_at:
            loss = loss * float("nan")
        return {"loss": loss, "mse": loss.detach()}


def make_model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 1))


def config(**kw):
    base = dict(steps=12, batch_size=5, lr=1e-2, warmup_steps=3, grad_accum=2, ckpt_every=5, log_every=2,
                tensorboard=False, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    straight = Trainer(make_model(), NoisyRegression(), PairDataset(), config(), tmp_path / "a")
    result = straight.fit()
    assert result.step == 12 and np.isfinite(result.metrics["loss"])

    first = Trainer(make_model(), NoisyRegression(interrupt_at=8), PairDataset(), config(), tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 5
    resumed = Trainer(make_model(), NoisyRegression(), PairDataset(), config(), tmp_path / "b")
    resumed.fit(resume=True)

    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)
    assert a["step"] == b["step"] == 12
    rows_a = (tmp_path / "a" / "metrics.csv").read_text().splitlines()
    rows_b = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[:2] for r in rows_a] == [r.split(",")[:2] for r in rows_b]  # same steps logged once
    assert (tmp_path / "a" / "config.yaml").exists()


class RecordsDeterminism(NoisyRegression):
    def __init__(self):
        super().__init__()
        self.seen = set()

    def training_step(self, model, batch, ctx):
        self.seen.add(torch.are_deterministic_algorithms_enabled())
        return super().training_step(model, batch, ctx)


@pytest.mark.parametrize("deterministic", [True, False])
def test_runs_use_deterministic_algorithms_and_restore_the_setting(tmp_path, deterministic):
    task = RecordsDeterminism()
    before = torch.are_deterministic_algorithms_enabled()
    Trainer(make_model(), task, PairDataset(), config(steps=2, deterministic=deterministic), tmp_path).fit()
    assert task.seen == {deterministic} and torch.are_deterministic_algorithms_enabled() == before


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = Trainer(make_model(), NoisyRegression(blow_up_at=7), PairDataset(), config(), tmp_path)
    with pytest.raises(EdgeMedSAMError, match=r"loss became nan at step 7"):
        trainer.fit()
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 5


def test_atomic_save_leaves_no_partial_file(tmp_path):
    target = tmp_path / "ck.pt"
    atomic_save({"w": torch.ones(3)}, target)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("interrupted while pickling")

    with pytest.raises(RuntimeError):
        atomic_save({"w": torch.zeros(3), "bad": Boom()}, target)
    assert torch.equal(load_checkpoint(target)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(EdgeMedSAMError, match=r"junk\.pt"):
        load_checkpoint(tmp_path / "junk.pt")


def test_steps_log_each_step_and_keep_its_seconds():
    lines: list[str] = []
    steps = Steps(lines.append, prefix="export: ")
    assert steps("zip", lambda: 7) == 7
    assert lines == ["export: zip …", f"export: zip done in {steps.seconds['zip']:.1f} s"] and steps.seconds["zip"] >= 0


def test_sampler_shards_cover_the_data_and_resume_mid_epoch():
    shards = [ResumableSampler(10, seed=1, rank=r, world_size=3) for r in range(3)]
    seen = sorted(i for s in shards for i in s)
    assert set(seen) == set(range(10)) and len(seen) == 12
    s = ResumableSampler(10, seed=1)
    full = list(s)
    s.set_position(0, 4)
    assert list(s) == full[4:]
    s.set_position(1)
    assert list(s) != full


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


DDP_SCRIPT = textwrap.dedent("""
    import sys, torch, torch.distributed as dist
    sys.path.insert(0, {tests!r})
    from test_engine import NoisyRegression, PairDataset, config, make_model
    from edge_medsam.engine.trainer import Trainer
    trainer = Trainer(make_model(), NoisyRegression(), PairDataset(), config(steps=6, ckpt_every=3), {out!r})
    trainer.fit()
    flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    assert all(torch.equal(gathered[0], g) for g in gathered), "ranks diverged"
    print("RANK", dist.get_rank(), "IN SYNC", float(flat.sum()))
    dist.destroy_process_group()
""")


@pytest.mark.slow
def test_ddp_two_cpu_processes_stay_in_sync(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path / "run")))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("IN SYNC") == 2
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 6
