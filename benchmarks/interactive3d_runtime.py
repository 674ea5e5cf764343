"""Figures of the runtime's 3D corrections (issue 21), measured with the shipped demo bundle on this machine.

    python benchmarks/interactive3d_runtime.py propagation   # box vs mask propagation on the labelled volumes
    python benchmarks/interactive3d_runtime.py timing        # 287 x 512^2, 6 objects, 5 clicks each

Both run the interactive 3D protocol (``edge_medsam.evaluation.interactive3d.run_case``: the box step, then five
click steps from the error) on ``RuntimeInteractor``. ``propagation`` writes
``benchmarks/results/<machine>/propagation.md``; ``timing`` prints its figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edge_medsam.benchmark.machine import describe_machine, load_average, machine_slug
from edge_medsam.data.real import PYRADIOMICS_CASES, extract_pyradiomics, find_pyradiomics
from edge_medsam.data.synth import generate_volume
from edge_medsam.evaluation.interactive3d import CaseResult, Interactive3DCase, run_case
from edge_medsam.evaluation.interactive3d_cases import gt_boxes
from edge_medsam.io import Volume, read_volume
from edge_medsam.io.files import atomic_write_text
from edge_medsam.runtime import Predictor
from edge_medsam.runtime.bundle import DEMO_BUNDLE
from edge_medsam.runtime.interactor import RuntimeInteractor
from edge_medsam.runtime.volume import DEFAULT_PROPAGATION, PROPAGATIONS

RESULTS = Path(__file__).parent / "results"
SYNTH_SEEDS = (0, 1, 2)
SYNTH_SIZE, SYNTH_SLICES = 256, 32  # the synthetic corpus's volumes (write_corpus defaults)


def synthetic_cases() -> list[tuple[Interactive3DCase, str]]:
    """The synthetic CT volumes (corpus size), boxes from the ground truth, with their modality."""
    cases = []
    for seed in SYNTH_SEEDS:
        synth = generate_volume(seed, size=SYNTH_SIZE, slices=SYNTH_SLICES)
        volume = Volume(synth.hounsfield.astype(np.float32), synth.affine, hounsfield=True)
        truth = synth.labels.astype(np.uint16)
        cases.append((Interactive3DCase(f"synth_ct_{seed}", volume, truth, gt_boxes(truth)), "ct"))
    return cases


def real_cases() -> list[tuple[Interactive3DCase, str]]:
    """The pyradiomics volumes with their lesion masks (any label = the object), boxes from the ground truth."""
    cases = []
    with extract_pyradiomics(find_pyradiomics()) as (_, files):
        for case, (modality, _) in PYRADIOMICS_CASES.items():
            volume = read_volume(files[f"{case}_image"])
            truth = (read_volume(files[f"{case}_label"]).voxels > 0).astype(np.uint16)
            cases.append((Interactive3DCase(case, volume, truth, gt_boxes(truth)), modality))
    return cases


def run(predictor: Predictor, case: Interactive3DCase, modality: str, propagation: str) -> CaseResult:
    """The protocol on one case with the runtime's corrections and the given propagation."""
    interactor = RuntimeInteractor(predictor, name=f"ours-{propagation}", modality=modality, propagation=propagation)
    return run_case(interactor, case)


def propagation_table(out: Path) -> None:
    """Every case with each propagation; the Markdown table to ``out``."""
    predictor = Predictor.from_bundle(DEMO_BUNDLE, backend="onnxruntime")
    load_before = load_average()
    rows = []
    for group, cases in (("synthetic CT", synthetic_cases()), ("real (pyradiomics)", real_cases())):
        for case, modality in cases:
            for propagation in PROPAGATIONS:
                result = run(predictor, case, modality, propagation)
                steps = [round(s.case_dice, 4) for s in result.steps]
                rows.append({"group": group, "case": case.name, "objects": len(result.labels),
                             "shape": list(case.volume.shape), "propagation": propagation, "box_dice": steps[0],
                             "final_dice": result.final_dice, "dsc_auc": result.dsc_auc,
                             "box_seconds": result.steps[0].seconds, "total_seconds": result.total_seconds,
                             "steps": steps})
                print(json.dumps(rows[-1]), flush=True)
    lines = ["# Propagation options of the runtime's 3D corrections (issue 21)", "",
             f"Shipped bundle `{predictor.bundle.name}` on ONNX Runtime FP32, this machine's cores; produced by "
             "`python benchmarks/interactive3d_runtime.py propagation`. The interactive 3D protocol "
             "(`edge_medsam.evaluation.interactive3d`): the box step with boxes from the ground truth, then five "
             "click steps from the error (one click per object), each click corrected and carried in 3D by "
             "`RuntimeInteractor`. *box*: each slice prompted by its neighbour's mask box grown by 3 pixels; "
             "*mask*: that box and the neighbour's low-res logits as mask input (also what a newly reached slice "
             "gets during a correction). Dice is the mean over a case's objects. Load average (1, 5, 15 min) "
             f"before: {load_before}, after: {load_average()} (the machine is shared: seconds are indicative).", "",
             "| group | case | objects | propagation | box DSC | DSC after 5 clicks | DSC_AUC | box step s | total s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['group']} | {r['case']} | {r['objects']} | {r['propagation']} | {r['box_dice']:.3f} | "
                     f"{r['final_dice']:.3f} | {r['dsc_auc']:.3f} | {r['box_seconds']:.1f} | "
                     f"{r['total_seconds']:.1f} |")
    lines += ["", "| group | propagation | mean box DSC | mean DSC after 5 clicks | mean DSC_AUC | mean total s |",
              "|---|---|---|---|---|---|"]
    best: dict[str, dict[str, str]] = {}
    for group in dict.fromkeys(r["group"] for r in rows):
        means = {}
        for propagation in PROPAGATIONS:
            chosen = [r for r in rows if r["group"] == group and r["propagation"] == propagation]
            means[propagation] = {k: float(np.mean([r[k] for r in chosen]))
                                  for k in ("box_dice", "final_dice", "dsc_auc", "total_seconds")}
            m = means[propagation]
            lines.append(f"| {group} | {propagation} | {m['box_dice']:.3f} | {m['final_dice']:.3f} | "
                         f"{m['dsc_auc']:.3f} | {m['total_seconds']:.1f} |")
        best[group] = {k: max(PROPAGATIONS, key=lambda p, k=k: means[p][k]) for k in ("box_dice", "final_dice",
                                                                                    "dsc_auc")}
    lines += ["", "Higher mean, by group: " + "; ".join(
        f"{group}: box DSC {b['box_dice']}, DSC after 5 clicks {b['final_dice']}, DSC_AUC {b['dsc_auc']}"
        for group, b in best.items()) + ".",
              f"The runtime's default (`edge_medsam.runtime.volume.DEFAULT_PROPAGATION`) is `{DEFAULT_PROPAGATION}`."]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "\n".join(lines) + "\n")
    print(f"wrote {out}")


def timing(slices: int, size: int, objects: int) -> None:
    """One case of ``slices`` x ``size``^2 with the ``objects`` largest synthetic objects, 5 click steps."""
    predictor = Predictor.from_bundle(DEMO_BUNDLE, backend="onnxruntime")
    synth = generate_volume(0, size=size, slices=slices)
    truth = synth.labels.astype(np.uint16)
    largest = np.argsort(np.bincount(truth.ravel())[1:])[::-1][:objects] + 1
    truth = np.where(np.isin(truth, largest), truth, 0).astype(np.uint16)
    case = Interactive3DCase("timing", Volume(synth.hounsfield.astype(np.float32), synth.affine, hounsfield=True),
                             truth, gt_boxes(truth))
    runs = predictor.encoder_runs
    started = time.perf_counter()
    result = run(predictor, case, "ct", "box")
    wall = time.perf_counter() - started
    clicks = sum(len(s.clicks) for s in result.steps)
    print(json.dumps({"shape": list(case.volume.shape), "objects": len(result.labels), "clicks": clicks,
                      "encoder_runs": predictor.encoder_runs - runs, "total_seconds": round(result.total_seconds, 2),
                      "wall_seconds": round(wall, 2), "start_seconds": round(result.start_seconds, 2),
                      "step_seconds": [round(s.seconds or 0.0, 2) for s in result.steps],
                      "dice": [round(s.case_dice, 4) for s in result.steps], "peak_rss_mb": result.peak_rss_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("propagation", "timing"))
    parser.add_argument("--slices", type=int, default=287)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--objects", type=int, default=6)
    args = parser.parse_args()
    if args.what == "propagation":
        propagation_table(RESULTS / machine_slug(describe_machine()) / "propagation.md")
    else:
        timing(args.slices, args.size, args.objects)


if __name__ == "__main__":
    main()
