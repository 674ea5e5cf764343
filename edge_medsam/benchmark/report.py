"""Writing a run's results: ``results.json`` (everything), CSV tables, a Markdown report (``README.md``) and PNG
plots (latency vs Dice; latency by backend and precision), all into ``benchmarks/results/<machine>/``.

``python -m edge_medsam.benchmark.report RESULTS_JSON`` re-derives the comparisons and rewrites every file beside it,
without measuring again (after a change to the report, or to the targets).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from edge_medsam.benchmark.compare import INT8_DICE_POINTS, RATIO_COLUMNS, derive
from edge_medsam.benchmark.subjects import ANCHOR, OURS, Subject, graph_parameters
from edge_medsam.io.files import atomic_write, atomic_write_text

STAGES = ("preprocess", "encoder", "decoder", "postprocess")


def _plain(value: Any) -> Any:
    """JSON-safe copy: dataclasses as dicts, tuples as lists, numpy scalars as numbers, paths as strings."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def subject_entry(subject: Subject, macs: dict[str, Any]) -> dict[str, Any]:
    """What the results say about a subject: source, size, weights, variants on disk, MACs."""
    return _plain({
        "name": subject.name, "family": subject.family, "input_size": subject.size,
        "graph_parameters": graph_parameters(subject.reference_pair),
        "preprocess": subject.preprocess.to_dict(), "trained": subject.trained, "info": subject.info,
        "pytorch": subject.torch_note or "the subject's own modules",
        "variants": [{"format": fmt, "precision": precision, "mb": round(pair.bytes / 1e6, 3), "note": pair.note}
                     for (fmt, precision), pair in subject.variants.items()],
        "macs": {"encoder_gmacs": macs["encoder"]["macs"] / 1e9,
                 "decoder_gmacs_per_box": macs["decoder_per_box"]["macs"] / 1e9,
                 "encoder_by_op": macs["encoder"]["by_op"], "decoder_by_op": macs["decoder_per_box"]["by_op"]},
    })


# --- tables ---------------------------------------------------------------------------------------------------
def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1e3:.2f} s" if value >= 10_000 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_f(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def timing_records(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat CSV rows of the timings (one per variant and task, skipped ones with their reason)."""
    records = []
    for row in results["timings"]:
        total = row.get("total", {})
        record = {k: row.get(k) for k in ("subject", "family", "backend", "precision", "threads", "task", "batch",
                                          "status", "reason")}
        record |= {f"total_{k}_ms": total.get(k) for k in ("p50", "p90", "p99", "mean", "std", "min", "max")}
        record |= {"n": total.get("n"), "spread": total.get("spread"), "first_call_ms": row.get("first_call_ms"),
                   "throughput_per_s": row.get("throughput_per_s"), "size_mb": row.get("size_mb"),
                   "encoder_gflops": row.get("encoder_gflops"),
                   "fraction_of_measured_peak": (row.get("fraction_of_peak") or {}).get("measured")}
        record |= {f"{s}_p50_ms": row.get("stages", {}).get(s, {}).get("p50") for s in STAGES}
        records.append(record)
    return records


def _csv(records: list[dict[str, Any]], columns: tuple[str, ...] | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns or records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def _best_rows(results: dict[str, Any], subject: str, task: str, stage: str | None = None) -> dict[str, Any] | None:
    rows = [r for r in results["timings"] if r["subject"] == subject and r.get("status") == "ok"
            and r["task"] == task and r["batch"] == 1]
    top = max((r["threads"] for r in rows), default=None)
    rows = [r for r in rows if r["threads"] == top]
    key = (lambda r: r["stages"][stage]["p50"]) if stage else (lambda r: r["total"]["p50"])
    return min(rows, key=key, default=None)


def summary_table(results: dict[str, Any]) -> str:
    """One line per subject: its best figures at the largest thread count."""
    rows = []
    for subject in results["subjects"]:
        name = subject["name"]
        image, prompt = _best_rows(results, name, "image"), _best_rows(results, name, "prompt", "decoder")
        real = [r for r in results["ct"]["real"] if r["subject"] == name and r.get("runs")]
        projected = [p for p in results["ct"]["projected"] if p["subject"] == name]
        ct = (f"{min(r['total']['p50'] for r in real) / 1e3:.1f} s" if real else
              f"{min(p['projected_ms'] for p in projected) / 1e3:.1f} s (projected)" if projected else "–")
        cold = [c for c in results["coldstart"] if c["subject"] == name and c.get("status") == "ok"]
        sizes = {(v["format"], v["precision"]): v["mb"] for v in subject["variants"]}
        smallest = min(sizes.values(), default=None)
        rows.append([
            f"**{name}**" if subject["family"] == OURS else name, subject["family"],
            f"{subject['graph_parameters'] / 1e6:.2f} M",
            f"{subject['macs']['encoder_gmacs']:.2f}", f"{subject['macs']['decoder_gmacs_per_box']:.3f}",
            f"{_ms(image['total']['p50'])} ({image['backend']} {image['precision']})" if image else "–",
            _ms(image["stages"]["encoder"]["p50"]) if image else "–",
            f"{_ms(prompt['stages']['decoder']['p50'])} ({prompt['backend']} {prompt['precision']})" if prompt else "–",
            ct, _ms(min(c["wall_ms"] for c in cold)) if cold else "–",
            f"{min(c['peak_rss_mb'] for c in cold):.0f}" if cold else "–",
            f"{sizes.get(('onnx', 'fp32'), 0):.1f} / {smallest:.1f}" if smallest is not None else "–"])
    header = ["model", "family", "params", "encoder GMACs", "decoder GMACs/box", "2D case p50 ms (best)",
              "encoder p50 ms", "decoder/prompt p50 ms (best)", "3D CT case", "cold start ms", "peak RSS MB",
              "size MB (FP32 / smallest)"]
    return _table(header, rows)


def ratio_table(results: dict[str, Any]) -> str:
    """Ours versus each anchor (anchor / ours: how many times faster, cheaper, smaller ours is)."""
    rows = [[r["ours"], r["anchor"], r["basis"], f"{r['ours_variant']} t{r['ours_threads']}",
             f"{r['anchor_variant']} t{r['anchor_threads']}", _ms(r["ours_2d_ms"]), _ms(r["anchor_2d_ms"]),
             r["speedup_2d"], "–" if not r["speedup_2d_band"] else "{} – {}".format(*r["speedup_2d_band"]),
             r["speedup_encoder"], r["speedup_decoder"], r["speedup_3d"], r["macs_ratio"], r["size_ratio"]]
            for r in results["ratios"]]
    header = ["ours", "anchor", "basis", "ours runs", "anchor runs", "ours 2D ms", "anchor 2D ms", "2D ×",
              "2D × round band", "encoder ×", "decoder ×", "3D × (projected)", "MACs ×", "size ×"]
    return _table(header, rows)


def target_table(results: dict[str, Any]) -> str:
    """Every target: goal, value with its noise band, verdict, by how much it is missed, on what it was measured."""
    rows = [[t["target"], t["subject"], t["goal"], _f(t["value"], 3) + (f" {t['unit']}" if t["value"] is not None else ""),
             "–" if not t["band"] else f"{_f(t['band'][0], 3)} – {_f(t['band'][1], 3)}",
             "**missed**" if t["verdict"] == "missed" else t["verdict"], t["missed_by"] or "–",
             " ".join(filter(None, [t["basis"], t["note"]])) or "–"] for t in results["targets"]]
    return _table(["target", "model", "goal", "measured", "round band", "verdict", "missed by", "basis"], rows)


def _stats(row: dict[str, Any]) -> list[Any]:
    total = row["total"]
    spread = total.get("spread")
    return [_ms(total["p50"]), _ms(total["p90"]), _ms(total["p99"]), total["n"],
            "–" if spread is None else f"{100 * spread:.0f}%"]


def _precision(row: dict[str, Any]) -> str:
    """The row's precision and what its backend computes the encoder's and decoder's convolutions and matrix
    products in (``edge_medsam.benchmark.precision``), e.g. ``int8 (enc i8 41 + f32 11 of 52; dec f32)``."""
    computes = row.get("computes_in") or {}
    said = "; ".join(f"{graph[:3]} {what}" for graph, what in computes.items() if what)
    return f"{row['precision']} ({said})" if said else row["precision"]


def variant_tables(results: dict[str, Any]) -> str:
    """Per variant: the 2D case with its stages, and the prompt on a cached embedding per batch."""
    ok = [r for r in results["timings"] if r.get("status") == "ok"]
    image = [[r["subject"], r["backend"], _precision(r), r["threads"], *_stats(r),
              *[_ms(r["stages"].get(s, {}).get("p50")) for s in STAGES], _f(r.get("throughput_per_s"), 1),
              _f((r.get("fraction_of_peak") or {}).get("measured"), 3), _f(r.get("size_mb"), 2)]
             for r in ok if r["task"] == "image"]
    prompt = [[r["subject"], r["backend"], _precision(r), r["threads"], r["task"], r["batch"], *_stats(r),
               _ms(r["stages"].get("decoder", r["stages"].get("encoder", {})).get("p50")), _f(r.get("throughput_per_s"), 1)]
              for r in ok if r["task"] != "image"]
    return "\n\n".join([
        "### 2D case (one 512 x 512 CT slice → masks), per variant\n\n" + _table(
            ["model", "backend", "precision", "threads", "p50 ms", "p90 ms", "p99 ms", "n", "spread", "preprocess",
             "encoder", "decoder", "postprocess", "images/s", "encoder / peak FP32", "MB"], image),
        "### Prompts on a cached embedding (decoder + mask upsampling), and batched encoders\n\n" + _table(
            ["model", "backend", "precision", "threads", "task", "batch", "p50 ms", "p90 ms", "p99 ms", "n", "spread",
             "graph p50 ms", "calls/s"], prompt)])


def ct_section(results: dict[str, Any]) -> str:
    """The 3D case: protocol counts, measured runs of ours, projections for everyone."""
    ct = results["ct"]
    case = ct["case"]
    lines = [f"Volume {' x '.join(map(str, case['shape']))} (synthetic abdominal CT), {case['boxes']} 3D boxes "
             f"({', '.join(case['objects'])}): {case['encoder_calls']} slices to encode (embedding cache), "
             f"{case['decoder_calls']} (slice, box) decoder calls; the challenge baseline, which re-encodes per box, "
             f"encodes {case['baseline_encoder_calls']} times."]
    real = [[r["subject"], r["backend"], r["precision"], r["threads"], r.get("runs"),
             f"{r['total']['p50'] / 1e3:.2f} s" if r.get("runs") else r.get("reason", "–"),
             *[(_ms(r["stages_ms"].get(s)) if r.get("runs") else "–") for s in STAGES]] for r in ct["real"]]
    if real:
        lines.append("Measured end to end:\n\n" + _table(
            ["model", "backend", "precision", "threads", "runs", "total", *[f"{s} ms" for s in STAGES]], real))
    projected = [[p["subject"], p["backend"], p["precision"], p["threads"], f"{p['projected_ms'] / 1e3:.2f} s",
                  f"{p['baseline_projected_ms'] / 1e3:.2f} s"] for p in ct["projected"]]
    lines.append("Projected from the per-call p50s (slices x (preprocess + encoder) + pairs x (decoder + upsampling)):"
                 "\n\n" + _table(["model", "backend", "precision", "threads", "with cache", "baseline (no cache)"],
                                 projected))
    return "\n\n".join(lines)


def other_tables(results: dict[str, Any]) -> str:
    """Interactive scenario, cold start, accuracy, skipped variants."""
    parts = []
    inter = [[r["subject"], r["backend"], r["precision"], r["threads"], _ms(r["first_mask_ms"]), _ms(r["per_prompt_ms"]),
              _ms(r["decoder_only_ms"]), _ms(r["total_ms"])] for r in results["interactive"]]
    k = results["settings"]["prompts"]
    parts.append(f"### Interactive: encode once + {k} prompts\n\n" + _table(
        ["model", "backend", "precision", "threads", "first mask ms", "per prompt ms", "decoder graph ms",
         f"total for {k} prompts ms"], inter))
    cold = [[c["subject"], c["backend"], c["precision"], c["threads"], c["path"],
             _ms(c.get("first_launch_ms")), _ms(c.get("wall_ms")), _f(c.get("peak_rss_mb"), 0),
             c.get("reason", "")] for c in results["coldstart"]]
    parts.append("### Cold start: new process → first mask\n\n" + _table(
        ["model", "backend", "precision", "threads", "path", "first launch ms", "median launch ms", "peak RSS MB",
         "failure"], cold))
    acc = []
    for name, found in results["accuracy"].items():  # anchors have no self-prompt: "–" in its columns
        ref = found["reference_dice"]
        acc.append([name, found["reference"].split("|", 1)[1], "reference", _f(ref["box"], 4),
                    _f(ref.get("self_prompt"), 4), "1", "1", "0", "0", found["weights"]])
        acc += [[name, f"{r['backend']}|{r['precision']}", r["precision"], _f(r["dice"]["box"], 4),
                 _f(r["dice"].get("self_prompt"), 4), _f(r["agreement_dice"]["box"], 4),
                 _f(r["agreement_dice"].get("self_prompt"), 4), _f(r["dice_points_lost"]["box"], 2),
                 _f(r["dice_points_lost"].get("self_prompt"), 2), ""] for r in found["variants"]]
    parts.append("### Accuracy per precision (held-out synthetic images)\n\n" + _table(
        ["model", "variant", "precision", "Dice box", "Dice self-prompt", "agreement box", "agreement self-prompt",
         "points lost box", "points lost self-prompt", "weights"], acc))
    skipped = [[r["subject"], r["backend"], r["precision"], r["threads"], r.get("task", "all"), r.get("batch", "–"),
                r["status"], r["reason"]] for r in results["timings"] if r.get("status") != "ok"]
    skipped += [[f["name"], "–", "–", "–", "build", "–", "failed", f["reason"]] for f in results["subjects_failed"]]
    parts.append("### Not measured here, and why\n\n" + _table(
        ["model", "backend", "precision", "threads", "task", "batch", "status", "reason"], skipped))
    return "\n\n".join(parts)


def machine_section(results: dict[str, Any]) -> str:
    """CPU, flags, cores, clock, memory, load, libraries and the peak FP32 figures."""
    m = results["machine"]
    peaks = m["peak_fp32"]
    rows = [[t, f"{peaks['measured_before'][t]['gflops']:.1f}",
             f"{peaks.get('measured_after', {}).get(t, {}).get('gflops', 0):.1f}",
             _f(peaks["theoretical"][t]["gflops"], 1), peaks["theoretical"][t]["rule"]] for t in peaks["theoretical"]]
    libraries = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v != "not installed")
    lines = [
        f"- CPU: {m['cpu']} ({m['vendor']} family {m['family']} model {m['model']}, {m['architecture']}), "
        f"{m['usable_cores']} usable cores of {m['logical_cpus']} logical CPUs, clock {_f(m['clock_mhz'], 0)} MHz "
        f"({m['clock_source']}), governor {m['governor'] or 'n/a'}, {'virtual machine' if m['hypervisor'] else 'bare metal'}",
        f"- ISA: {', '.join(m['key_flags'])}",
        f"- Memory {m['memory_gb']} GB; {m['os']}; Python {m['python']}",
        f"- Libraries: {libraries}",
        f"- Load average (1/5/15 min) at start {m['load_average_start']}, at end {m.get('load_average_end')}",
    ]
    if m.get("note"):
        lines.append(f"- Note: {m['note']}")
    table = _table(["threads", "measured GEMM GFLOP/s (start)", "measured (end)", "theoretical GFLOP/s", "rule"], rows)
    side = results["settings"]["gemm_side"]
    return "\n".join(lines) + (f"\n\nPeak FP32 ({side} x {side} GEMM in this run; theoretical = FLOP/cycle x cores x "
                               f"clock):\n\n{table}")


METHOD = f"""\
- Every variant is warmed up (first call kept apart), then timed with `perf_counter_ns` over several rounds; in
  each round the variants run in a new random order, so a busy machine slows them alike. p50/p90/p99 are over all
  timed calls; *spread* is (max − min) / median of the per-round medians. A target's *round band* is the range
  of its per-round values (a ratio: the per-round ratio of the two rows, timed in the same rounds); its verdict is
  "met" or "missed" only when the whole band lies on one side of the goal, otherwise "within noise".
- "Best vs best" takes each model's fastest row over backends, precisions and thread counts, among the precisions
  whose measured Dice loss against FP32 stays within {INT8_DICE_POINTS:g} points (a model whose accuracy per precision was not
  measured competes with its FP32 graphs only).
- The 2D case is end to end in numpy + the backend: CT windowing and resize to the model input, encoder, decoder,
  mask upsampling to 512 x 512. Our students run self-prompted; the anchors (no self-prompt) get one box.
  Stage columns split that time.
- Anchors are built with random weights (latency does not depend on weight values), except LiteMedSAM when its
  published weights are installed (the `real` extra; `weights` in results.json says which), and exported by the
  same dynamo → ONNX (→ OpenVINO IR) path as ours, then quantized by the same tools as a user would: FP16 graphs
  and an NNCF INT8 encoder (its FP32 decoder kept). Their accuracy per precision is measured like ours, with box
  prompts on the same held-out synthetic images (for random weights the agreement with FP32 is the figure);
  LiteMedSAM's real-scan Dice is in the pipeline report.
- The 3D case is `edge-medsam predict --box3d`'s protocol (middle slice with the box, then slice by slice with the
  previous mask's box + 3 px, stopping at the first empty slice; each slice encoded once). Ours run the shipped
  `VolumeSegmenter`; the anchors measured end to end run the same rule over the benchmark's pipeline (a test holds
  the two to the same graph calls); everyone is also projected from the per-call p50s, charging every slice of
  every z range (an upper bound).
- Cold start runs a new Python process: imports, graph loading/compilation, one CT slice to its first mask (ours
  through the torch-free `edge_medsam.runtime.Predictor`), timed from launch to exit; peak RSS is the child's
  own high-water mark (`VmHWM`).
- The precision column names the graph and what the backend computes its convolutions and matrix products in
  (counted in ONNX Runtime's optimised graph and OpenVINO's runtime graph: `enc i8 41 + f32 11 of 52` means 41
  integer kernels). OpenVINO is told its inference precision for every row: f32 for the FP32, FP16 and INT8
  graphs, bf16 for the bf16 row (the FP32 graph, on CPUs with bf16 kernels only).
- MACs are counted from the ONNX graphs (Conv, ConvTranspose, MatMul, Gemm) at the timed shapes; the fraction
  of peak is 2 x MACs / encoder p50 / measured GEMM peak at the same thread count.
"""


def markdown(results: dict[str, Any]) -> str:
    """The whole Markdown report."""
    m = results["machine"]
    head = (f"# Benchmark: {m['cpu']}, {m['usable_cores']} cores ({results['mode']} run)\n\n"
            f"Run {results['started']}, {results['wall_s']:.0f} s. Files here: `results.json` (everything), "
            f"`timings.csv`, `ratios.csv`, `targets.csv`, plots `latency_vs_dice.png`, `latency_by_backend.png`.")
    sections = [head, "## Machine\n\n" + machine_section(results), "## Summary\n\n" + summary_table(results),
                "## Ours versus the anchors\n\n" + ratio_table(results), "## Targets\n\n" + target_table(results),
                "## Latency\n\n" + variant_tables(results), "## 3D CT case\n\n" + ct_section(results),
                "## More\n\n" + other_tables(results), "## Method\n\n" + METHOD]
    return "\n\n".join(sections) + "\n"


# --- plots ----------------------------------------------------------------------------------------------------
def _save(figure: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=120, bbox_inches="tight"))


def plot(results: dict[str, Any], folder: Path) -> list[Path]:
    """latency_vs_dice.png and latency_by_backend.png (nothing without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    images = [r for r in results["timings"] if r.get("status") == "ok" and r["task"] == "image"]
    top = {s["name"]: max((r["threads"] for r in images if r["subject"] == s["name"]), default=0)
           for s in results["subjects"]}
    images = [r for r in images if r["threads"] == top[r["subject"]]]
    written = []

    figure, axes = plt.subplots(figsize=(8, 5))
    for name, found in results["accuracy"].items():
        points = [(r, next((i for i in images if i["subject"] == name and i["backend"] == r["backend"]
                            and i["precision"] == r["precision"]), None)) for r in found["variants"]]
        points = [(r, i) for r, i in points if i is not None]
        axes.scatter([i["total"]["p50"] for _, i in points], [r["agreement_dice"]["box"] for r, _ in points],
                     label=name)
        for r, i in points:
            axes.annotate(f"{r['backend']} {r['precision']}", (i["total"]["p50"], r["agreement_dice"]["box"]),
                          fontsize=7)
    for subject in (s for s in results["subjects"] if s["family"] == ANCHOR):
        best = min((r["total"]["p50"] for r in images if r["subject"] == subject["name"]), default=None)
        if best:
            axes.axvline(best, linestyle="--", color="grey", linewidth=0.8)
            axes.annotate(subject["name"], (best, 0.02), xycoords=("data", "axes fraction"), rotation=90, fontsize=7)
    axes.set_xscale("log")
    axes.set_xlabel("2D case p50 latency (ms, log)")
    axes.set_ylabel("mask Dice versus the FP32 reference (box prompts)")
    axes.set_title("Latency vs Dice versus FP32 (anchors dashed: their best variant)")
    if results["accuracy"]:
        axes.legend(fontsize=8)
    written.append(folder / "latency_vs_dice.png")
    _save(figure, written[-1])
    plt.close(figure)

    order = {"fp32": 0, "fp16": 1, "int8": 2}
    labels = sorted({(r["backend"], r["precision"]) for r in images}, key=lambda k: (k[0], order.get(k[1], 3)))
    subjects = [s["name"] for s in results["subjects"] if any(r["subject"] == s["name"] for r in images)]
    figure, axes = plt.subplots(figsize=(9, 1.0 + 0.35 * len(subjects) * max(1, len(labels)) ** 0.5 * 2))
    step = 0.8 / max(1, len(labels))
    markers = {"pytorch": "s", "onnxruntime": "o", "openvino": "D", "tensorrt": "^"}
    for k, (backend, precision) in enumerate(labels):
        found = [(j, r) for j, name in enumerate(subjects) for r in images
                 if r["subject"] == name and (r["backend"], r["precision"]) == (backend, precision)]
        if found:  # p50 as the marker, the whisker reaching p90
            axes.errorbar([r["total"]["p50"] for _, r in found], [j + k * step for j, _ in found],
                          xerr=[[0.0] * len(found), [r["total"]["p90"] - r["total"]["p50"] for _, r in found]],
                          fmt=markers.get(backend, "o"), capsize=2, label=f"{backend} {precision}")
    axes.set_yticks([j + 0.4 - step / 2 for j in range(len(subjects))], subjects, fontsize=8)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.grid(axis="x", which="both", linewidth=0.3)
    axes.set_xlabel("2D case latency, p50 (marker) to p90 (whisker), ms, log scale")
    axes.set_title("Latency by backend and precision (largest thread count)")
    axes.legend(fontsize=7, loc="best")
    written.append(folder / "latency_by_backend.png")
    _save(figure, written[-1])
    plt.close(figure)
    return written


def write_results(results: dict[str, Any], folder: Path, plots: bool = True) -> Path:
    """Write results.json, timings.csv, ratios.csv, targets.csv, README.md and the plots into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    results = _plain(results)
    atomic_write_text(folder / "results.json", json.dumps(results, indent=1) + "\n")
    atomic_write_text(folder / "timings.csv", _csv(timing_records(results)))
    atomic_write_text(folder / "ratios.csv", _csv(results["ratios"], RATIO_COLUMNS))
    atomic_write_text(folder / "targets.csv", _csv(results["targets"]))
    atomic_write_text(folder / "README.md", markdown(results))
    if plots:
        plot(results, folder)
    return folder


def rewrite(path: Path, plots: bool = True) -> Path:
    """Re-derive the comparisons of a ``results.json`` and rewrite every output in its folder."""
    return write_results(derive(json.loads(Path(path).read_text())), Path(path).parent, plots=plots)


if __name__ == "__main__":
    print(f"results: {rewrite(Path(sys.argv[1]))}")
