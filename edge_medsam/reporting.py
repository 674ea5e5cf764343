"""The pipeline's report: what was trained on what, how long each stage took, training curves, and the
teacher's and student's Dice/NSD side by side per modality and prompt mode, on held-out and style-shifted data."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from edge_medsam.io.files import atomic_write_text
from edge_medsam.recipes import Recipe

MODES = ("box", "1pt", "5pt", "auto", "refine")


def _read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _model_line(path: str) -> str:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if "spec" not in state:  # a published checkpoint used as it is (e.g. LiteMedSAM's release)
        params = sum(t.numel() for t in state.values() if isinstance(t, torch.Tensor))
        return f"published weights `{Path(path).name}`: {params / 1e6:.2f} M values, {Path(path).stat().st_size / 1e6:.1f} MB"
    params = sum(t.numel() for t in state["model"].values())
    spec = state.get("spec", {})
    kind = spec.get("arch") or spec.get("config", {}).get("trunk", "?")
    return f"{spec.get('kind', 'model')} `{kind}`: {params / 1e6:.2f} M parameters, {Path(path).stat().st_size / 1e6:.1f} MB"


def _comparison(teacher: dict[str, Any], student: dict[str, Any]) -> list[str]:
    modes = [m for m in MODES if m in student.get("summary", {}) or m in teacher.get("summary", {})]
    modalities = sorted({m for s in (teacher, student) for mode in modes for m in s.get("summary", {}).get(mode, {})
                         if m != "all"})
    header = "| modality | " + " | ".join(f"{m} teacher | {m} student" for m in modes) + " |"
    lines = [header, "|---|" + "---:|---:|" * len(modes)]
    for modality in [*modalities, "all"]:
        cells = []
        for mode in modes:
            for report in (teacher, student):
                entry = report.get("summary", {}).get(mode, {}).get(modality, {}).get("all")
                cells.append(f"{entry['dice']:.3f}" if entry else "–")
        lines.append(f"| {'**all objects**' if modality == 'all' else modality} | " + " | ".join(cells) + " |")
    return lines


def _bundle_lines(outputs: dict[str, dict[str, Any]]) -> list[str]:
    """The exported bundle: its graphs' sizes and, per precision on the runtime, Dice per modality and prompt."""
    bundle = outputs.get("export", {}).get("bundle")
    if not bundle:
        return []
    manifest = _read_json(Path(bundle) / "manifest.json")
    lines = ["", "## Exported bundle", "", f"`{bundle}` ({manifest.get('name')}, version {manifest.get('version')})", "",
             "| format | precision | graph | MB |", "|---|---|---|---:|"]
    for graph in manifest.get("graphs", []):
        size = sum(f.get("bytes", 0) for f in graph.get("files", [])) / 1e6
        lines.append(f"| {graph.get('format')} | {graph.get('precision')} | {graph.get('graph')} | {size:.2f} |")
    reports = outputs.get("evaluate", {}).get("reports", {})
    for set_name in ("held_out", "style_shift"):
        found = {name.split("_")[1]: _read_json(path) for name, path in reports.items()
                 if name.startswith("bundle_") and name.endswith(set_name)}
        if not found:
            continue
        modes = [m for m in MODES if any(m in r.get("summary", {}) for r in found.values())]
        modalities = sorted({m for r in found.values() for mode in modes for m in r.get("summary", {}).get(mode, {})
                             if m != "all"})
        lines += ["", f"Runtime Dice per precision, {set_name.replace('_', '-')} images:", "",
                  "| modality | " + " | ".join(f"{m} {p}" for m in modes for p in found) + " |",
                  "|---|" + "---:|" * (len(modes) * len(found))]
        for modality in [*modalities, "all"]:
            cells = []
            for mode in modes:
                for report in found.values():
                    entry = report.get("summary", {}).get(mode, {}).get(modality, {}).get("all")
                    cells.append(f"{entry['dice']:.3f}" if entry else "–")
            lines.append(f"| {'**all objects**' if modality == 'all' else modality} | " + " | ".join(cells) + " |")
    return lines


def _curves(run_dir: Path, out: Path) -> Path | None:
    """Loss curves of every training run under ``run_dir`` as one PNG (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    runs = sorted(run_dir.glob("**/metrics.csv"))
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for path in runs:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        if rows and "loss" in rows[0]:
            ax.plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows],
                    label=str(path.parent.relative_to(run_dir)))
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_report(recipe: Recipe, outputs: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """Write ``report.md`` (and its plot) for a finished pipeline run."""
    path = Path(path)
    run_dir = path.parent
    state = _read_json(run_dir / "pipeline.json") if (run_dir / "pipeline.json").exists() else {}
    lines = [f"# edge-medsam report: {recipe.name}", ""]
    data = outputs.get("data", {})
    lines += ["## Data", "", f"- training corpus: `{data.get('train_root')}`"
              + ("" if recipe.data.root else " (synthetic corpus generated by this run)"),
              f"- held-out fraction: {recipe.data.test_fraction} (split by case and modality, seed {recipe.data.split_seed})"]
    if data.get("shift_root"):
        lines.append(f"- style-shifted evaluation set: `{data['shift_root']}` (same anatomy, other textures and noise)")
    lines += ["", "## Models", ""]
    for name in ("teacher", "distill"):
        if outputs.get(name, {}).get("model"):
            lines.append(f"- {_model_line(outputs[name]['model'])} (`{outputs[name]['model']}`)")
    lines += ["", "## Stages", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {name} | {record.get('seconds', '–')} |" for name, record in state.items() if record.get("done")]
    reports = outputs.get("evaluate", {}).get("reports", {})
    for set_name, title in (("held_out", "Held-out images"), ("style_shift", "Style-shifted images (unseen domain)")):
        teacher_path, student_path = reports.get(f"teacher_{set_name}"), reports.get(f"student_{set_name}")
        if not student_path:
            continue
        teacher, student = _read_json(teacher_path) if teacher_path else {}, _read_json(student_path)
        lines += ["", f"## {title}: Dice, teacher vs student" + ("" if teacher_path else " (teacher not evaluated)"), ""]
        lines += _comparison(teacher, student)
        recognition = student.get("modality_recognition")
        if recognition:
            lines += ["", f"Student modality recognition (modality=auto): {recognition['accuracy']:.3f} "
                          f"over {recognition['n']} images."]
        correction = student.get("correction")
        if correction and correction["images"]:
            lines += ["", f"Student refinement (refine: self-prompt + up to 3 correction clicks), on the "
                          f"{correction['images']} images where the self-prompt has Dice < {correction['threshold']}: "
                          f"{correction['auto_dice']:.3f} → {correction['refined_dice']:.3f} "
                          f"({correction['improved']} improved, {correction['clicks']:.2f} clicks on average)."]
        overall = student.get("overall", {})
        if overall:
            lines += ["", "Student NSD (all objects): " + ", ".join(f"{m} {v['nsd']:.3f}" for m, v in overall.items())]
        latency = student.get("latency", {}).get("encode_ms", {})
        if latency.get("n"):
            lines += [f"Student PyTorch CPU latency: encoder p50 {latency['median']:.1f} ms (median)."]
    lines += _bundle_lines(outputs)
    real_scans = outputs.get("evaluate", {}).get("real_scans")
    if real_scans:
        from edge_medsam.evaluation.real_scans import real_scan_markdown

        lines += ["", "## Real scans: box-prompted Dice (NSD), beside two baselines that need no model", "",
                  "Real CT/MR lesions with their real masks (pyradiomics sample data, never trained on), every slice "
                  "with a lesion, one box per lesion (MedSAM-on-Laptop box protocol); teacher and student in "
                  "PyTorch, the bundle on the torch-free runtime.", ""]
        lines += real_scan_markdown(_read_json(real_scans)).splitlines()
    results = outputs.get("benchmark", {}).get("results")
    if results and (Path(results) / "README.md").exists():
        lines += ["", "## Benchmark (this machine)", "", f"Full results: `{results}`.", ""]
        lines += [line.replace("# ", "### ", 1) if line.startswith("# ") else line
                  for line in (Path(results) / "README.md").read_text().splitlines()]
    plot = _curves(run_dir, run_dir / "training_curves.png")
    if plot:
        lines += ["", "## Training curves", "", f"![training loss]({plot.name})"]
    lines += ["", "These models are demonstrations of the pipeline, not for clinical use."]
    return atomic_write_text(path, "\n".join(lines) + "\n")
