"""`edge-medsam train teacher`, `edge-medsam distill`, `edge-medsam pipeline` and `edge-medsam compare-runs`."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_medsam.errors import EdgeMedSAMError


def register(commands: argparse._SubParsersAction) -> None:
    """Add the training commands."""
    train = commands.add_parser("train", help="train a teacher")
    train_sub = train.add_subparsers(dest="train_command", metavar="WHAT", required=True)
    teacher = train_sub.add_parser("teacher", help="train or fine-tune a SAM-family teacher (SAM-Med2D interactive loop)")
    teacher.add_argument("--recipe", type=Path, required=True, help="YAML recipe; its teacher: and data: sections apply")
    teacher.add_argument("--data", type=Path, default=None, help="dataset folder (overrides the recipe's data.root)")
    teacher.add_argument("--arch", default=None, help="vit_b | vit_l | vit_h | vit_tiny (overrides the recipe)")
    teacher.add_argument("--checkpoint", default=None, help="official SAM / MedSAM / SAM-Med2D weights to start from")
    teacher.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, logs, teacher.pt)")
    teacher.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    teacher.set_defaults(handler=run_train_teacher)

    distill = commands.add_parser("distill", help="distil the edge student from a teacher (MMDKD stages)")
    distill.add_argument("--recipe", type=Path, required=True, help="YAML recipe; its student: and distill: sections apply")
    distill.add_argument("--teacher", default=None,
                         help="teacher model file (teacher.pt or an official checkpoint), or 'litemedsam' for "
                              "LiteMedSAM's published weights (the real extra); default: the recipe's pretrained teacher")
    distill.add_argument("--student", default=None, help="student preset (tiny, lite, base, base512; overrides the recipe)")
    distill.add_argument("--data", type=Path, default=None, help="dataset folder (overrides the recipe's data.root)")
    distill.add_argument("--out", type=Path, required=True, help="run folder (one sub-folder per stage, student.pt)")
    distill.add_argument("--resume", action="store_true", help="keep finished stages and resume the interrupted one")
    distill.set_defaults(handler=run_distill)

    pipeline = commands.add_parser("pipeline", help="run a whole recipe: data, teacher, student, evaluation, report")
    pipeline.add_argument("recipe", type=Path)
    pipeline.add_argument("--runs", type=Path, default=Path("runs"), help="parent of the run folder (default runs/)")
    pipeline.add_argument("--from", dest="from_stage", default=None, help="re-run from this stage on")
    pipeline.set_defaults(handler=run_pipeline_command)

    compare = commands.add_parser("compare-runs", help="do two pipeline runs reproduce each other's figures?")
    compare.add_argument("first", type=Path, help="a finished run folder (e.g. runs/quickstart)")
    compare.add_argument("second", type=Path, help="another run of the same recipe")
    compare.add_argument("--tolerance", type=float, default=0.02,
                         help="differences up to this (Dice, NSD, accuracy) always count as within noise; Dice and "
                              "NSD also within twice the standard error of the paired per-object differences "
                              "(default 0.02)")
    compare.add_argument("--out", type=Path, default=None, help="also write the table to this Markdown file")
    compare.set_defaults(handler=run_compare_command)


def _data_root(args: argparse.Namespace, recipe) -> Path:
    root = args.data or (Path(recipe.data.root) if recipe.data.root else None)
    if root is None:
        raise EdgeMedSAMError("no data given", path=args.recipe,
                              fix="pass --data DIR (e.g. a corpus from `edge-medsam data synth`) or set data.root")
    return root


def run_train_teacher(args: argparse.Namespace) -> int:
    """Train a teacher and print where its model file is."""
    from edge_medsam.recipes import load_recipe
    from edge_medsam.training.jobs import data_splits, train_teacher

    recipe = load_recipe(args.recipe)
    if args.arch:
        recipe.teacher.arch = args.arch
    if args.checkpoint:
        recipe.teacher.checkpoint = args.checkpoint
    train, _ = data_splits(_data_root(args, recipe), recipe.data)
    path = train_teacher(recipe.teacher, train, args.out, seed=recipe.seed, resume=args.resume)
    print(f"teacher written: {path}")
    return 0


def run_distill(args: argparse.Namespace) -> int:
    """Distil a student and print where its model file is."""
    from edge_medsam.models.reference.litemedsam_weights import PRETRAINED, pretrained_weights, published_path
    from edge_medsam.recipes import load_recipe
    from edge_medsam.training.jobs import data_splits, distill_student

    recipe = load_recipe(args.recipe)
    if args.student:
        recipe.student.preset = args.student
    train, _ = data_splits(_data_root(args, recipe), recipe.data)
    teacher = args.teacher or recipe.teacher.pretrained
    if teacher is not None and not Path(teacher).exists() and teacher.strip().lower().replace("-", "_") in PRETRAINED:
        teacher = published_path(pretrained_weights(teacher))
    path = distill_student(recipe.student, recipe.distill, teacher, train, args.out, seed=recipe.seed,
                           resume=args.resume, cache_embeddings=recipe.teacher.cache_embeddings)
    print(f"student written: {path}")
    return 0


def run_pipeline_command(args: argparse.Namespace) -> int:
    """Run the recipe's pipeline."""
    from edge_medsam.pipeline import run_pipeline

    state = run_pipeline(args.recipe, args.runs, args.from_stage)
    report = state.get("report", {}).get("outputs", {}).get("report")
    if report:
        print(f"report: {report}")
    return 0


def run_compare_command(args: argparse.Namespace) -> int:
    """Print both runs' figures; exit 1 when one differs beyond both the paired noise and the tolerance."""
    from edge_medsam.io.files import atomic_write_text
    from edge_medsam.run_compare import compare_runs, comparison_markdown

    deltas = compare_runs(args.first, args.second)
    if not deltas:
        raise EdgeMedSAMError("the two runs have no evaluation figure in common", path=args.second,
                              fix="compare two runs of the same recipe")
    table = comparison_markdown(deltas, str(args.first), str(args.second), args.tolerance)
    print(table)
    if args.out:
        atomic_write_text(args.out, table + "\n")
    return int(not all(d.within(args.tolerance) for d in deltas))
