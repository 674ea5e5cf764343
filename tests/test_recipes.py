"""Recipes are checked whole when they load: every section against the settings class of the stage that uses it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge_medsam.cli import main
from edge_medsam.compress.settings import ExportSettings
from edge_medsam.engine.config import TrainConfig
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.models.student.config import StudentConfig
from edge_medsam.pipeline import run_pipeline
from edge_medsam.recipes import load_recipe, recipe_from_dict

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))
STAGES = [{"stage": "general"}, {"stage": "decoupled"}, {"stage": "decoder"}]


def _recipe(tmp_path: Path, **sections) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "distill": STAGES, **sections}))
    return path


def _error(tmp_path: Path, **sections) -> str:
    with pytest.raises(EdgeMedSAMError) as err:
        load_recipe(_recipe(tmp_path, **sections))
    line = str(err.value)
    assert line.startswith(f"{tmp_path / 'bad.yaml'}: ") and "\n" not in line
    return line


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_loads_and_survives_its_run_folder_copy(path):
    recipe = load_recipe(path)
    assert recipe.distill and recipe.teacher.arch
    assert recipe_from_dict(json.loads(json.dumps(recipe.to_dict()))).to_dict() == recipe.to_dict()


def _stage(i: int, **section) -> list[dict]:
    return [*STAGES[:i], {**STAGES[i], **section}, *STAGES[i + 1:]]


@pytest.mark.parametrize(("sections", "where", "typo", "nearest"), [
    ({"teacher": {"interactive": {"iteratons": 2}}}, "teacher.interactive", "iteratons", "iterations"),
    ({"teacher": {"train": {"stpes": 2}}}, "teacher.train", "stpes", "steps"),
    ({"distill": _stage(2, losses={"kd_mask_wieght": 0})}, "distill[2].losses", "kd_mask_wieght", "kd_mask_weight"),
    ({"distill": _stage(1, train={"batchsize": 2})}, "distill[1].train", "batchsize", "batch_size"),
    ({"export": {"calib_cont": 8}}, "export", "calib_cont", "calib_count"),
    ({"benchmark": {"mode": "quick", "thread": [1]}}, "benchmark", "thread", "threads"),
    ({"data": {"synth": {"per_modalty": 2}}}, "data.synth", "per_modalty", "per_modality"),
    ({"teacher": {"arhc": "vit_b"}}, "teacher", "arhc", "arch"),
    ({"distill": _stage(0, stag="general")}, "distill[0]", "stag", "stage"),
    ({"evaluate": {"promts": ["box"]}}, "evaluate", "promts", "prompts"),
    ({"studnet": {}}, "the recipe", "studnet", "student"),
    ({"student": {"overrides": {"embed_dims": 96}}}, "student.overrides", "embed_dims", "embed_dim"),
])
def test_an_unknown_key_names_the_section_and_the_nearest_key(tmp_path, sections, where, typo, nearest):
    assert _error(tmp_path, **sections).endswith(f"unknown key {typo!r} in {where} (fix: did you mean {nearest!r}?)")


@pytest.mark.parametrize(("sections", "message"), [
    ({"distill": _stage(2, losses={"kd_mask_weight": "high"})}, "kd_mask_weight='high' in distill[2].losses is not a number"),
    ({"distill": _stage(0, train={"lr": "1e-3"})}, "train setting lr='1e-3' is not a finite number > 0"),
    ({"teacher": {"train": {"tensorboard": "no"}}}, "tensorboard='no' in teacher.train is not true or false"),
    ({"teacher": {"interactive": {"click_counts": [1, "3"]}}}, "click_counts=[1, '3'] in teacher.interactive is not a list"),
    ({"export": {"calib_count": "32"}}, "calib_count='32' in export is not a whole number"),
    ({"export": {"formats": "onnx,tflite"}}, "unknown or no format ['tflite']"),
    ({"benchmark": {"mode": "quick", "threads": 1}}, "threads=1 in benchmark is not a list"),
    ({"benchmark": {"mode": "quik"}}, "unknown benchmark mode 'quik' (fix: did you mean 'quick'?)"),
    ({"teacher": {"family": "syncsma"}}, "unknown teacher family 'syncsma' (fix: did you mean 'syncsam'?)"),
    ({"teacher": {"family": "sam", "options": {"arch": "vit_b"}}}, "teacher.options ['arch'] are not read by teacher "
     "family 'sam'"),
    ({"benchmark": {"mode": "quick", "bundles": ["b"]}}, "benchmark cannot set 'bundles'"),
    ({"distill": _stage(1, stage="decoupld")}, "unknown distillation stage 'decoupld'"),
    ({"distill": _stage(2, losses={"stage": "general"})}, "distill[2].losses cannot set 'stage'"),
    ({"data": {"test_fraction": "0.2"}}, "test_fraction='0.2' in data is not a number"),
    ({"teacher": [1]}, "teacher=[1] in the recipe is not a mapping"),
    ({"student": {"overrides": {"image_size": "64"}}}, "image_size='64' in student.overrides is not a whole number"),
    ({"student": {"overrides": {"embedding_stride": 4}}}, "embedding stride 4 is not supported"),
    ({"student": {"preset": "tinny"}}, "unknown student preset 'tinny'"),
])
def test_a_value_of_the_wrong_type_fails_at_load(tmp_path, sections, message):
    assert message in _error(tmp_path, **sections)


def test_a_typo_stops_the_pipeline_before_any_stage(tmp_path, capsys):
    bad = _recipe(tmp_path, distill=_stage(2, losses={"kd_mask_wieght": 0}))
    runs = tmp_path / "runs"
    with pytest.raises(EdgeMedSAMError, match=r"distill\[2\]\.losses"):
        run_pipeline(bad, runs, log=lambda _: None)
    assert main(["pipeline", str(bad), "--runs", str(runs)]) == 2
    assert "did you mean 'kd_mask_weight'?" in capsys.readouterr().err
    assert not runs.exists()


@pytest.mark.parametrize(("build", "message"), [
    (lambda: TrainConfig.from_dict({"stpes": 1}), "unknown key 'stpes' in train settings (fix: did you mean 'steps'?)"),
    (lambda: ExportSettings.from_dict({"formts": "onnx"}), "unknown key 'formts' in export settings (fix: did you mean"),
    (lambda: StudentConfig.from_dict({"embed_dims": 96}), "unknown key 'embed_dims' in student settings (fix: did you"),
])
def test_other_settings_share_the_one_key_check(build, message):
    with pytest.raises(EdgeMedSAMError) as err:
        build()
    assert str(err.value).startswith(message)


def test_loading_a_recipe_imports_no_torch():
    code = ("import sys; from edge_medsam.recipes import load_recipe; "
            f"[load_recipe(p) for p in {[str(p) for p in RECIPES]!r}]; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
