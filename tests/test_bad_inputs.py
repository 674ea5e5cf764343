"""Every kind of bad input in tests/bad_inputs.py: one line naming the file and the fix, no traceback, no hang.

On the command line (`edge-medsam predict` in-process, and a batch in a real subprocess) a bad input fails with
one error line and the rest of the batch is still segmented; in the Python API the reader or predictor raises
InputError. Valid-but-odd inputs (16-bit, RGBA, palette, CMYK, float, one-slice volumes) are segmented. Masks
are checked by `edge-medsam data layout --verify`, the command that reads image/mask pairs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bad_inputs import BAD, GOOD_SHAPE, VALID, Kind, marker_for, write_good_png
from PIL import Image
from runtime_bundle import cached_bundle

from edge_medsam.cli import main
from edge_medsam.cli import predict as predict_command
from edge_medsam.errors import InputError
from edge_medsam.io import read_image, read_laptop_npz, read_mask, read_volume
from edge_medsam.runtime import Predictor
from edge_medsam.runtime.volume import VolumeSegmenter

pytestmark = pytest.mark.timeout(120, func_only=True)  # a hang fails the case (not counting the bundle build)
CASE_SECONDS = 10.0  # the most one bad input may take inside a batch (a loaded 2-core CI machine)
REPO = Path(__file__).resolve().parents[1]
READERS = {"image": read_image, "volume": read_volume, "npz": read_laptop_npz}
FILE_KINDS = [k for k in BAD if k.reader in (*READERS, "predictor")]
CLI_PROMPT_KINDS = [k for k in BAD if k.reader == "prompt" and k.args]
API_PROMPT_KINDS = [k for k in BAD if k.reader == "prompt" and k.predict]
MASK_KINDS = [k for k in BAD if k.reader == "mask"]


@pytest.fixture(scope="module")
def bundle() -> Path:
    return cached_bundle()


@pytest.fixture(scope="module")
def predictor(bundle: Path) -> Predictor:
    return Predictor.from_bundle(bundle, backend="onnxruntime", threads=1)


@pytest.fixture(scope="module", autouse=True)
def loaded_once(predictor: Predictor) -> Iterator[None]:
    """In-process `predict` runs reuse one loaded predictor (loading is tested by the real-process runs below)."""

    class Loaded:
        @staticmethod
        def from_bundle(*args: Any, **kwargs: Any) -> Predictor:
            return predictor

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(predict_command, "Predictor", Loaded)
        yield


def predict(capsys: pytest.CaptureFixture[str], bundle: Path, out: Path, inputs: list[Path], *args: str
            ) -> tuple[int, dict[str, dict[str, Any]], list[str]]:
    """Run `edge-medsam predict` in-process: (exit code, summary record per input, stderr lines)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # readers warn about odd-but-readable files; pytest would count them
        code = main(["predict", *map(str, inputs), *args, "--bundle", str(bundle), "--out", str(out),
                     "--backend", "onnxruntime", "--threads", "1", "--quiet"])
    _, err = capsys.readouterr()
    records = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    return code, {r["input"]: r for r in records}, err.splitlines()


def assert_one_line(lines: list[str], path: Path) -> None:
    """Stderr holds one error line naming ``path`` with a fix, the batch total, and nothing else."""
    assert not any("Traceback" in line for line in lines), "\n".join(lines)
    errors = [line for line in lines if line.startswith("edge-medsam: error: ")]
    others = [line for line in lines if line not in errors and not line.endswith("inputs failed (see above)")]
    assert len(errors) == 1 and not others, "\n".join(lines)
    assert path.name in errors[0] and " (fix: " in errors[0] and "unexpected" not in errors[0], errors[0]


def call_api(kind: Kind, path: Path, predictor: Predictor) -> None:
    """What a Python user would call for this kind of input."""
    if kind.reader in READERS:
        READERS[kind.reader](path)
    elif kind.reader == "mask":
        read_mask(path, like=GOOD_SHAPE)
    elif kind.reader == "predictor":
        predictor.set_image(path)
    elif path.name.endswith(".nii.gz"):
        options = {k: v for k, v in kind.predict.items() if k in ("modality", "window")}
        VolumeSegmenter(predictor, path, **options).segment(kind.predict.get("boxes3d", ()))
    else:
        options = {k: v for k, v in kind.predict.items() if k in ("modality", "window")}
        predictor.set_image(path, **options)
        prompts = {k: v for k, v in kind.predict.items() if k not in options}
        if prompts:
            predictor.predict(**prompts)


# --- the command line ----------------------------------------------------------------------------------------------
@dataclass
class Batch:
    """One `predict` run over every bad file, with a good picture first and last."""

    code: int
    records: dict[str, dict[str, Any]]
    stderr: list[str]
    inputs: dict[str, Path]
    seconds: dict[str, float]
    folder: Path


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, bundle: Path) -> Iterator[Batch]:
    folder = tmp_path_factory.mktemp("batch")
    inputs = {kind.name: kind.make(_folder(folder / kind.name)) for kind in FILE_KINDS}
    goods = [write_good_png(folder / "first.png"), write_good_png(folder / "last.png")]
    seconds: dict[str, float] = {}
    process = predict_command.process

    def timed(predictor: Predictor, path: Path, *args: Any) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            return process(predictor, path, *args)
        finally:
            seconds[str(path)] = time.perf_counter() - start

    capture, exit_codes = io.StringIO(), []

    def run() -> None:
        exit_codes.append(main(["predict", str(goods[0]), *map(str, inputs.values()), str(goods[1]), "--bundle",
                                str(bundle), "--out", str(folder / "out"), "--quiet"]))

    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings(), contextlib.redirect_stderr(capture):
        warnings.simplefilter("ignore")
        patch.setattr(predict_command, "process", timed)
        worker = threading.Thread(target=run, daemon=True)  # fixtures run outside the per-test timeout
        worker.start()
        worker.join(CASE_SECONDS * len(inputs))
    assert not worker.is_alive(), f"the batch hung; inputs finished: {sorted(seconds)}"
    (code,) = exit_codes
    records = [json.loads(line) for line in (folder / "out" / "summary.jsonl").read_text().splitlines()]
    yield Batch(code, {r["input"]: r for r in records}, capture.getvalue().splitlines(), inputs, seconds, folder)


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def test_the_batch_goes_on_past_every_bad_file(batch: Batch) -> None:
    assert batch.code == 1
    assert [batch.records[str(batch.folder / name)]["status"] for name in ("first.png", "last.png")] == ["ok", "ok"]
    assert sorted(p.name for p in (batch.folder / "out").glob("*.png")) == ["first_seg.png", "last_seg.png"]
    assert batch.stderr[-1] == f"edge-medsam: {len(FILE_KINDS)} of {len(FILE_KINDS) + 2} inputs failed (see above)"
    assert len(batch.stderr) == len(FILE_KINDS) + 1 and "Traceback" not in "\n".join(batch.stderr)
    assert not marker_for(batch.folder / "npz-pickled-objects").exists()


@pytest.mark.parametrize("kind", FILE_KINDS, ids=str)
def test_cli_reports_a_bad_file_in_one_line_with_the_fix(kind: Kind, batch: Batch) -> None:
    bad = batch.inputs[kind.name]
    # A folder of unreadable files is reported file by file; everything else is one input.
    mine = {key: r for key, r in batch.records.items() if key == str(bad) or key.startswith(f"{bad}{os.sep}")}
    assert len(mine) == 1
    (key, record), = mine.items()
    assert record["status"] == "error"
    line = f"edge-medsam: error: {record['error']}"
    assert batch.stderr.count(line) == 1 and Path(key).name in line and " (fix: " in line, line
    assert "unexpected" not in line
    assert batch.seconds[key] < CASE_SECONDS, f"{kind} took {batch.seconds[key]:.1f} s"


@pytest.mark.parametrize("kind", CLI_PROMPT_KINDS, ids=str)
def test_cli_reports_a_bad_prompt_or_option_in_one_line(kind: Kind, tmp_path: Path, bundle: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    image = kind.make(tmp_path)
    code, records, lines = predict(capsys, bundle, tmp_path / "out", [image], *kind.args)
    assert code == 1 and records[str(image)]["status"] == "error"
    assert_one_line(lines, image)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["predict.log", "summary.jsonl"]  # no half-made mask


@pytest.mark.parametrize("kind", MASK_KINDS, ids=str)
def test_layout_check_skips_a_bad_mask_with_the_reason_and_keeps_the_good_pair(
        kind: Kind, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    made = kind.make(tmp_path)
    dataset = tmp_path / "dataset"
    for sub in ("images", "masks"):
        (dataset / sub).mkdir(parents=True)
    bad_mask = Path(shutil.move(made, dataset / "masks" / f"bad{made.suffix}"))
    for stem in ("bad", "good"):
        write_good_png(dataset / "images" / f"{stem}.png")
    good_mask = np.zeros(GOOD_SHAPE, np.uint8)
    good_mask[20:60, 30:70] = 1
    Image.fromarray(good_mask).save(dataset / "masks" / "good.png")
    assert main(["data", "layout", str(dataset), "--modality", "ct", "--verify"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "1 samples" in out.splitlines()[0]
    skipped = [line for line in out.splitlines() if line.strip().startswith(str(bad_mask))]
    assert len(skipped) == 1 and "(fix: " in skipped[0], out


def test_a_real_process_reports_each_bad_file_in_one_line_and_exits_1(tmp_path: Path, bundle: Path) -> None:
    """The installed command as a user runs it: warnings, logging and exit codes included."""
    chosen = ["png-truncated", "jpeg-corrupt", "tiff-bad-ifd-offset", "dicom-truncated", "nifti-gz-truncated",
              "npz-pickled-objects", "dicom-series-mixed-sizes", "png-over-limit", "empty-folder"]
    bad = [kind.make(tmp_path) for kind in BAD if kind.name in chosen]
    good = write_good_png(tmp_path / "good.png")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "edge_medsam", "predict", *map(str, bad), str(good), "--bundle", str(bundle),
               "--out", str(tmp_path / "out"), "--backend", "onnxruntime", "--threads", "1", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert "Traceback" not in done.stderr
    errors = [line for line in lines if line.startswith("edge-medsam: error: ")]
    assert len(errors) == len(bad) == len(chosen)
    assert lines[-1] == f"edge-medsam: {len(bad)} of {len(bad) + 1} inputs failed (see above)"
    assert len(lines) == len(bad) + 1, done.stderr  # no warnings or log noise around the error lines
    for path, line in zip(bad, errors, strict=True):
        assert path.name in line and " (fix: " in line, line
    assert (tmp_path / "out" / "good_seg.png").is_file() and not marker_for(tmp_path).exists()


def test_a_real_process_with_a_missing_bundle_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    good = write_good_png(tmp_path / "good.png")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "edge_medsam", "predict", str(good), "--bundle", str(tmp_path / "nowhere"),
               "--out", str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"edge-medsam: error: {tmp_path / 'nowhere'}: the bundle does not exist (fix: point --bundle at the folder "
        "(or .zip) made by `edge-medsam export`)"]


# --- the Python API ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [*FILE_KINDS, *MASK_KINDS, *API_PROMPT_KINDS], ids=str)
def test_api_raises_input_error_naming_the_file_and_the_fix(kind: Kind, tmp_path: Path,
                                                             predictor: Predictor) -> None:
    path = kind.make(tmp_path)
    with pytest.raises(InputError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call_api(kind, path, predictor)
    message = str(info.value)
    assert "\n" not in message and info.value.fix, message
    if kind.reader != "prompt":  # a bad prompt or option is the caller's, not the file's
        assert path.name in message, message
    assert not marker_for(tmp_path).exists()


# --- valid but odd -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [k for k in VALID if k.reader != "mask"], ids=str)
def test_valid_but_odd_inputs_are_read_and_segmented(kind: Kind, tmp_path: Path, bundle: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = kind.make(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        item = READERS[kind.reader](path)
    values = item.voxels if kind.reader == "volume" else item.pixels
    assert values.size and np.isfinite(values.astype(np.float64)).all()
    code, records, lines = predict(capsys, bundle, tmp_path / "out", [path])
    assert code == 0 and not lines, lines
    record = records[str(path)]
    assert record["status"] == "ok" and Path(record["output"]).is_file()
    assert record["shape"] == list(values.shape[:3] if kind.reader == "volume" else values.shape[:2])


@pytest.mark.parametrize("kind", [k for k in VALID if k.reader == "mask"], ids=str)
def test_empty_and_full_masks_are_read_as_they_are(kind: Kind, tmp_path: Path) -> None:
    labels = read_mask(kind.make(tmp_path), like=GOOD_SHAPE)
    assert labels.shape == GOOD_SHAPE and len(np.unique(labels)) == 1 and labels.max() <= 1


def test_the_corpus_is_as_large_as_promised() -> None:
    names = [k.name for k in (*BAD, *VALID)]
    assert len(set(names)) == len(names) and len(BAD) >= 100 and len(VALID) >= 19  # the README's figures
