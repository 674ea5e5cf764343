"""What the teacher is worth: the same student and step budget distilled (a) from ground truth alone (the synthetic
corpus: without a teacher the real images have no labels), (b) from a teacher trained from scratch on the synthetic
corpus (the quickstart's teacher before LiteMedSAM), (c) from LiteMedSAM's published weights — (b) and (c) also on
the real unlabelled images, each labelled by its own teacher — scored on the real labelled scans beside LiteMedSAM
and the baselines.

    python scripts/teacher_ablation.py [--recipe recipes/quickstart.yaml] [--out runs/ablation] [--report DIR]

Each variant is the recipe's pipeline up to its distill stage (resumable, skipped when done; teacher embeddings
come from the content-keyed cache), so (c) is the quickstart's own student.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import yaml

from edge_medsam.data.layouts import open_dataset
from edge_medsam.engine.threads import torch_threads
from edge_medsam.evaluation.real_scans import evaluate_real_scans, real_scan_markdown
from edge_medsam.evaluation.torch_segmenters import segmenter_for
from edge_medsam.io.files import atomic_write_text
from edge_medsam.models.files import load_model
from edge_medsam.pipeline import run_pipeline

# (b): the teacher section of the quickstart recipe before it distilled from LiteMedSAM (commit 5dfaabd).
SCRATCH_TEACHER = {
    "arch": "vit_mini", "image_size": 256, "adapter": "med2d", "train_all": True, "spatial_prompts": True,
    "interactive": {"iterations": 1, "objects_per_image": 3},
    "train": {"steps": 220, "batch_size": 8, "lr": 0.002, "warmup_steps": 20, "ckpt_every": 110, "log_every": 20},
}


def variants(base: dict) -> dict[str, dict]:
    """The three recipes: only the teacher differs (and, without a teacher, the steps all go to the decoder stage)."""
    gt_only = copy.deepcopy(base)
    gt_only["teacher"] = {"family": "none"}
    decoder = copy.deepcopy(next(stage for stage in base["distill"] if stage["stage"] == "decoder"))
    decoder["train"]["steps"] = sum(stage["train"]["steps"] for stage in base["distill"])
    decoder.setdefault("losses", {})["kd_mask_weight"] = 0
    gt_only["distill"] = [decoder]
    scratch = copy.deepcopy(base)
    scratch["teacher"] = copy.deepcopy(SCRATCH_TEACHER)
    return {"gt_only": gt_only, "scratch_teacher": scratch, "litemedsam": copy.deepcopy(base)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=Path("recipes/quickstart.yaml"))
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--report", type=Path, default=None, help="also copy metrics.json and report.md here")
    args = parser.parse_args()
    base = yaml.safe_load(args.recipe.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    students, seconds, real_root, teacher = {}, {}, None, None
    for name, recipe in variants(base).items():
        recipe["name"] = f"ablation-{name}"
        path = args.out / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        started = time.perf_counter()
        state = run_pipeline(path, args.out, until="distill")
        seconds[name] = round(time.perf_counter() - started, 1)
        students[name] = state["distill"]["outputs"]["model"]
        real_root = state["data"]["outputs"]["real_root"]
        if state["teacher"]["outputs"].get("pretrained"):
            teacher = state["teacher"]["outputs"]["model"]
    samples = open_dataset(real_root, include_volumes=True, foreground_only=True).samples
    segmenters = [segmenter_for(load_model(path), name=f"student ({name})") for name, path in students.items()]
    if teacher:
        segmenters.insert(0, segmenter_for(load_model(teacher), name="LiteMedSAM (teacher of c)"))
    with torch_threads(2):
        report = evaluate_real_scans(segmenters, samples, log=print)
    metrics = report.write(args.out / "real_scans")
    data = json.loads(metrics.read_text())
    data["variants"] = {name: {"student": students[name], "seconds_to_distill": seconds[name]} for name in students}
    data["recipe"] = str(args.recipe)
    atomic_write_text(metrics, json.dumps(data, indent=2))
    text = (f"# Teacher ablation ({args.recipe}: same student and steps)\n\n"
            "(a) gt_only: the synthetic corpus's ground truth alone (without a teacher the real images have no "
            "labels); (b) scratch_teacher: a SAM-Med2D-style ViT trained from scratch on the synthetic corpus; "
            "(c) litemedsam: LiteMedSAM's published weights. (b) and (c) also train on the real unlabelled images, "
            "labelled by their own teacher. Scored on the real labelled scans (pyradiomics), never trained on. "
            f"Distillation seconds per variant: {seconds}.\n\n" + real_scan_markdown(data))
    atomic_write_text(args.out / "real_scans" / "report.md", text)
    if args.report:
        args.report.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.report / "metrics.json", json.dumps(data, indent=2))
        atomic_write_text(args.report / "report.md", text)
    print(text)


if __name__ == "__main__":
    main()
