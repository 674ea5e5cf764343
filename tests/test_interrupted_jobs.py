"""Interrupted and failing training runs: SIGKILL at random moments, non-finite losses and weights, bad settings.

A real training process (the engine's Trainer on a tiny regression task, in a subprocess so that SIGKILL hits it
as it would hit `edge-medsam train`) is killed several times at seeded random moments and once in the middle of
a checkpoint write. After every kill each checkpoint file loads, and the work lost is at most one checkpoint
interval; `resume` then continues and the finished run equals one that was never interrupted. (The CLI's tiny
teacher/distill recipes take 10-20 s a step on a loaded 2-core CI machine, too slow to kill repeatedly; they
reach the same Trainer through `edge_medsam.training.jobs`.)
"""

from __future__ import annotations

import csv
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from edge_medsam.cli import main
from edge_medsam.data.synth import write_corpus
from edge_medsam.engine.checkpoint import LATEST, load_checkpoint
from edge_medsam.engine.trainer import TrainConfig, Trainer
from edge_medsam.errors import EdgeMedSAMError

pytestmark = pytest.mark.timeout(300)
REPO = Path(__file__).resolve().parents[1]
STEPS, INTERVAL = 24, 3
KILLS = 2  # at random moments; then kills aimed at a checkpoint write until one lands inside it
WRITE_KILL_TRIES = 3
NAN_AT = 2 * INTERVAL + 1  # the step whose batch holds NaN

SCRIPT = textwrap.dedent("""
    import sys, time
    import torch
    from torch import nn
    from torch.utils.data import Dataset
    from edge_medsam.engine.trainer import TrainConfig, Trainer
    from edge_medsam.errors import EdgeMedSAMError

    torch.set_num_threads(1)
    out, nan_at, steps, interval = sys.argv[1], *map(int, sys.argv[2:])

    class Pairs(Dataset):
        def __len__(self):
            return 48

        def __getitem__(self, i):
            x = torch.randn(8, generator=torch.Generator().manual_seed(i))
            return x, x.sum(0, keepdim=True)

    class Regression:
        def training_step(self, model, batch, ctx):
            x, y = batch
            if ctx.step == nan_at:
                x = torch.full_like(x, float("nan"))  # a batch of images with NaN in them
            time.sleep(0.03)  # a step long enough for a kill to land inside the loop
            return {"loss": nn.functional.mse_loss(model(x), y)}

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 1))
            self.register_buffer("ballast", torch.zeros(1 << 22))  # 16 MB: checkpoint writes take a while

        def forward(self, x):
            return self.net(x)

    torch.manual_seed(0)
    config = TrainConfig(steps=steps, batch_size=4, lr=1e-2, warmup_steps=2, ckpt_every=interval, log_every=1,
                         tensorboard=False, seed=0)
    trainer = Trainer(Model(), Regression(), Pairs(), config, out)
    try:
        trainer.fit(resume=trainer.checkpoint_path.exists())
    except EdgeMedSAMError as err:
        print(f"edge-medsam: error: {err}", file=sys.stderr)
        sys.exit(2)
    print("FINISHED", flush=True)
""")


def start(script: Path, out: Path, nan_at: int = -1) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    arguments = [str(out), str(nan_at), str(STEPS), str(INTERVAL)]
    return subprocess.Popen([sys.executable, str(script), *arguments], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def logged_steps(out: Path) -> list[int]:
    path = out / "metrics.csv"
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


def checkpoint_step(out: Path) -> int:
    """The step of the run folder's checkpoint (0 without one), after checking every file there loads."""
    folder = out / "checkpoints"
    files = sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []
    for path in files:  # published files only: a writer's temporary (.tmp-xxx-name) is not a checkpoint
        state = load_checkpoint(path)
        assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert [p.name for p in files] in ([], [LATEST])
    return load_checkpoint(folder / LATEST)["step"] if files else 0


def wait_until(condition, seconds: float, what: str, poll: float = 0.001) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    process.stdout.close()
    process.stderr.close()


@pytest.fixture(scope="module", autouse=True)
def nan_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen, Path]]:
    """A run fed a NaN batch, started with the module so that it trains while the kill test runs."""
    folder = tmp_path_factory.mktemp("nan")
    script = folder / "train.py"
    script.write_text(SCRIPT)
    process = start(script, folder / "run", nan_at=NAN_AT)
    yield process, folder / "run"
    if process.poll() is None:
        kill(process)


def test_sigkill_at_random_moments_never_leaves_a_half_written_checkpoint_and_resume_loses_at_most_one_interval(
        tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    reference = start(script, tmp_path / "uninterrupted")  # runs alongside, for the final comparison
    out = tmp_path / "run"
    rng = random.Random(11)
    history = []
    for attempt in range(KILLS + WRITE_KILL_TRIES):
        mid_write = attempt >= KILLS
        if mid_write and list((out / "checkpoints").glob(".tmp-*")):
            break  # a kill has caught a checkpoint half-written
        done_before = (logged_steps(out) or [0])[-1]
        process = start(script, out)
        # Wait for this process's own progress, then kill after a random delay, or as a checkpoint is being written.
        wait_until(lambda p=process, d=done_before: (logged_steps(out) or [0])[-1] > d or p.poll() is not None, 120,
                   "the first step")
        if mid_write:
            wait_until(lambda p=process: any((out / "checkpoints").glob(".tmp-*")) or p.poll() is not None, 60,
                       "a checkpoint write")
        else:
            time.sleep(rng.uniform(0.0, 0.5))
        assert process.poll() is None, "the run finished before it could be killed; make it longer"
        kill(process)
        done = logged_steps(out)[-1]
        kept = checkpoint_step(out)
        history.append((done, kept))
        assert done - kept <= INTERVAL, f"killed after step {done}, the checkpoint is from step {kept}"
    assert list((out / "checkpoints").glob(".tmp-*")), "no kill landed inside a checkpoint write"

    final = start(script, out)
    stdout, stderr = final.communicate(timeout=240)
    assert final.returncode == 0 and "FINISHED" in stdout, stderr[-2000:]
    assert checkpoint_step(out) == STEPS and not list((out / "checkpoints").glob(".tmp-*"))
    assert not list(out.glob(".tmp-*"))  # the resumed run removed what the killed writers left
    assert logged_steps(out) == list(range(1, STEPS + 1))  # every step logged once, across all the restarts
    assert len({kept for _, kept in history}) > 1, f"every kill left the same checkpoint: {history}"

    stdout, stderr = reference.communicate(timeout=240)
    assert reference.returncode == 0, stderr[-2000:]
    resumed = load_checkpoint(out / "checkpoints" / LATEST)["model"]
    straight = load_checkpoint(tmp_path / "uninterrupted" / "checkpoints" / LATEST)["model"]
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0)


def test_a_nan_batch_stops_the_process_with_one_line_and_keeps_the_last_good_checkpoint(
        nan_run: tuple[subprocess.Popen, Path]) -> None:
    process, out = nan_run
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 2
    assert "Traceback" not in stderr
    (line,) = [line for line in stderr.splitlines() if "error" in line]
    assert f"loss became nan at step {NAN_AT}; stopped" in line and LATEST in line and "(fix: " in line
    assert checkpoint_step(out) == NAN_AT - NAN_AT % INTERVAL


# --- in-process: the Trainer's own guards ------------------------------------------------------------------------
class Pairs(Dataset):
    def __len__(self) -> int:
        return 24

    def __getitem__(self, i: int):
        x = torch.randn(4, generator=torch.Generator().manual_seed(i))
        return x, x.sum(0, keepdim=True)


class Poisoning:
    """A finite loss whose gradient is NaN from ``step`` on (the derivative of sqrt at 0): NaN weights follow."""

    def __init__(self, step: int):
        self.step = step

    def training_step(self, model, batch, ctx):
        x, y = batch
        loss = nn.functional.mse_loss(model(x), y)
        if ctx.step == self.step:
            loss = loss + torch.sqrt((model.weight * 0).pow(2).sum())  # value 0, gradient NaN
        return {"loss": loss}


def test_non_finite_weights_behind_a_finite_loss_are_never_saved(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = TrainConfig(steps=12, batch_size=4, lr=1e-2, warmup_steps=1, ckpt_every=3, log_every=1,
                         tensorboard=False, clip_grad=None)
    # The NaN gradient of step 5 makes the weights NaN; step 6 is a checkpoint step.
    trainer = Trainer(nn.Linear(4, 1), Poisoning(step=5), Pairs(), config, tmp_path)
    with pytest.raises(EdgeMedSAMError, match=r"weights became non-finite \(weight\) at step 6") as err:
        trainer.fit()
    assert str(tmp_path / "checkpoints" / LATEST) in str(err.value)
    assert checkpoint_step(tmp_path) == 3


@pytest.mark.parametrize(("setting", "value"), [("lr", math.nan), ("lr", math.inf), ("lr", -1.0), ("lr", "1e-3"),
                                                ("steps", 0), ("batch_size", 2.5), ("betas", [0.9, 1.5]),
                                                ("clip_grad", math.nan), ("amp", "fp8")])
def test_impossible_train_settings_are_refused(setting: str, value) -> None:
    with pytest.raises(EdgeMedSAMError, match=f"train setting {setting}=") as err:
        TrainConfig.from_dict({setting: value})
    assert err.value.fix


def test_a_nan_learning_rate_in_a_recipe_stops_the_cli_in_one_line_before_training(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_corpus(tmp_path / "data", per_modality=2, size=32, seed=0, modalities=["mr"], volumes=0)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: bad\nteacher: {arch: vit_tiny, image_size: 64, train: {lr: .nan, tensorboard: false}}\n")
    code = main(["train", "teacher", "--recipe", str(recipe), "--data", str(tmp_path / "data"),
                 "--out", str(tmp_path / "run")])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert "train setting lr=nan is not a finite number > 0" in lines[0] and "(fix: " in lines[0]
    assert not (tmp_path / "run" / "checkpoints").exists()
