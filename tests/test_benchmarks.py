"""The benchmark harness: `edge-medsam bench --quick` end to end on the test bundle (results written to tmp_path),
and its parts (timing, MAC counting, machine peaks, decoder feeds, ratios and targets) on hand-made inputs.
Speed is never asserted: the figures depend on the machine; their structure and consistency do not."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from runtime_bundle import cached_bundle

from edge_medsam.benchmark import compare
from edge_medsam.benchmark.machine import describe_machine, fp32_flops_per_cycle, machine_slug, measured_peak, theoretical_peak
from edge_medsam.benchmark.macs import count_macs
from edge_medsam.benchmark.prompts import ExamplePrompter, best_logits
from edge_medsam.benchmark.report import rewrite
from edge_medsam.benchmark.timing import Task, TimingPlan, plan_calls, run_interleaved, spread_over_rounds, summarize
from edge_medsam.cli import main

QUICK_BACKENDS = ("pytorch", "onnxruntime", "openvino", "tensorrt")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One `bench --quick` run on the test bundle; its results folder and results.json."""
    root = tmp_path_factory.mktemp("bench")
    code = main(["bench", "--quick", "--bundle", str(cached_bundle()), "--out", str(root / "results"),
                 "--work", str(root / "work"), "--note", "test run"])
    assert code == 0
    folders = list((root / "results").iterdir())
    assert len(folders) == 1
    return folders[0], json.loads((folders[0] / "results.json").read_text())


def test_quick_run_writes_every_output(quick_run: tuple[Path, dict]) -> None:
    folder, results = quick_run
    for name in ("results.json", "timings.csv", "ratios.csv", "targets.csv", "README.md", "latency_vs_dice.png",
                 "latency_by_backend.png"):
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0, name
    assert folder.name == machine_slug(results["machine"])
    assert results["mode"] == "quick" and results["machine"]["note"] == "test run"
    text = (folder / "README.md").read_text()
    for heading in ("## Machine", "## Summary", "## Ours versus the anchors", "## Targets", "## 3D CT case"):
        assert heading in text
    assert results["subjects"][0]["name"] in text
    with open(folder / "timings.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(results["timings"])


def test_quick_run_has_every_variant_with_a_status(quick_run: tuple[Path, dict]) -> None:
    _, results = quick_run
    subject = results["subjects"][0]
    listed = {v["precision"] for v in subject["variants"]}
    seen = {(r["backend"], r["precision"]) for r in results["timings"]}
    for backend in QUICK_BACKENDS:
        for precision in results["settings"]["precisions"]:
            if backend == "pytorch" or precision in listed or backend == "tensorrt":
                assert (backend, precision) in seen, (backend, precision)
    for row in results["timings"]:
        assert row["status"] in ("ok", "skipped", "failed")
        if row["status"] != "ok":
            assert row["reason"]
    trt = [r for r in results["timings"] if r["backend"] == "tensorrt"]
    assert trt and all(r["status"] == "skipped" for r in trt)
    assert {r["task"] for r in results["timings"] if r["status"] == "ok"} == {"image", "prompt"}


def test_quick_run_statistics_are_consistent(quick_run: tuple[Path, dict]) -> None:
    _, results = quick_run
    ok = [r for r in results["timings"] if r["status"] == "ok"]
    assert ok
    plan = results["settings"]["plan"]
    for row in ok:
        total = row["total"]
        assert total["n"] >= plan["min_samples"]
        assert 0 < total["min"] <= total["p50"] <= total["p90"] <= total["p99"] <= total["max"]
        assert math.isclose(row["throughput_per_s"], row["batch"] * 1000 / total["p50"])
        stages = {k: v["p50"] for k, v in row["stages"].items()}
        expected = {"preprocess", "encoder", "decoder", "postprocess"} if row["task"] == "image" else {"decoder",
                                                                                                      "postprocess"}
        assert set(stages) == expected and all(v > 0 for v in stages.values())
        # Each call's stage is part of that call's total, so every order statistic of a stage stays below it.
        assert all(row["stages"][k]["p50"] <= total["p50"] and row["stages"][k]["max"] <= total["max"] for k in stages)
    image = [r for r in ok if r["task"] == "image"]
    assert all(r["fraction_of_peak"]["measured"] > 0 and r["encoder_gflops"] > 0 for r in image)


def test_quick_run_scenarios_coldstart_and_accuracy(quick_run: tuple[Path, dict]) -> None:
    _, results = quick_run
    case = results["ct"]["case"]
    assert case["shape"] == [8, 96, 96] and case["boxes"] == len(case["objects"]) == 2
    assert case["encoder_calls"] <= case["slices"] and case["decoder_calls"] == case["baseline_encoder_calls"]
    real = [r for r in results["ct"]["real"] if r.get("runs")]
    assert real and all((r["encoder_calls"], r["decoder_calls"]) == (case["encoder_calls"], case["decoder_calls"])
                        for r in real)
    for projected in results["ct"]["projected"]:
        assert projected["baseline_projected_ms"] >= projected["projected_ms"] > 0
    inter = results["interactive"]
    assert inter and all(r["total_ms"] >= r["first_mask_ms"] for r in inter)
    cold = {(c["backend"], c["precision"]): c for c in results["coldstart"]}
    assert cold[("onnxruntime", "fp32")]["status"] == "ok"
    assert cold[("onnxruntime", "fp32")]["wall_ms"] > 0 and cold[("onnxruntime", "fp32")]["peak_rss_mb"] > 0
    accuracy = next(iter(results["accuracy"].values()))
    # A bundle ships no torch weights: its own FP32 ONNX graphs are the reference.
    assert accuracy["reference"].split("|")[1:3] == ["onnxruntime", "fp32"] and accuracy["images"] == 2
    rows = {(r["backend"], r["precision"]): r for r in accuracy["variants"]}
    assert "pytorch" not in {backend for backend, _ in rows}
    assert rows[("onnxruntime", "int8")]["agreement_dice"] == {"box": 1.0, "self_prompt": 1.0}  # kept in FP32
    assert min(rows[("openvino", "fp32")]["agreement_dice"].values()) > 0.9
    names = [t["target"] for t in results["targets"]]
    assert len(names) == 7 and all(t["verdict"] in ("met", "missed", "within noise", "not measured")
                                   for t in results["targets"])
    assert all(t["missed_by"] for t in results["targets"] if t["verdict"] == "missed")


def test_report_is_rewritten_from_results_json(quick_run: tuple[Path, dict], tmp_path: Path) -> None:
    folder, results = quick_run
    copy = tmp_path / "results.json"
    copy.write_text((folder / "results.json").read_text())
    rewrite(copy, plots=False)
    assert (tmp_path / "README.md").read_text() == (folder / "README.md").read_text()
    assert json.loads(copy.read_text())["targets"] == results["targets"]


# --- parts ------------------------------------------------------------------------------------------------------
def test_rounds_spread_calls_evenly() -> None:
    assert spread_over_rounds(7, 3) == [3, 2, 2]
    assert spread_over_rounds(2, 5) == [1, 0, 0, 0, 1]
    assert plan_calls(1000.0, TimingPlan(min_samples=3, budget_s=1.0)) == 3
    assert plan_calls(1.0, TimingPlan(max_samples=50, budget_s=1.0)) == 50


def test_interleaving_runs_every_task_in_every_round_and_keeps_failures_apart() -> None:
    order: list[str] = []

    def task(name: str) -> Task:
        return Task(name, lambda: order.append(name) or {"stage": 1.0})

    def broken() -> dict[str, float]:
        raise RuntimeError("backend cannot run this graph")

    plan = TimingPlan(warmup=1, rounds=3, min_samples=3, max_samples=3, budget_s=0.01)
    samples = run_interleaved([task("a"), task("b"), Task("c", broken)], plan, progress=False)
    assert samples["c"].error == "RuntimeError: backend cannot run this graph"
    timed = order[2:]  # after one warm-up call each
    assert [sorted(timed[i:i + 2]) for i in range(0, 6, 2)] == [["a", "b"]] * 3
    assert samples["a"].rounds == [0, 1, 2] and samples["a"].stage_ms["stage"] == [1.0] * 3
    stats = summarize([5.0, 1.0, 3.0, 2.0, 4.0, 6.0], [0, 0, 1, 1, 2, 2])
    assert stats["p50"] == 3.5 and stats["p90"] <= stats["p99"] <= stats["max"] == 6.0
    assert stats["round_ids"] == [0, 1, 2] and stats["round_p50s"] == [3.0, 2.5, 5.0]
    assert math.isclose(stats["spread"], (5.0 - 2.5) / 3.0)


def _macs_model(path: Path) -> None:
    """x [1, 2, 8, 8] → Conv 3x3 (4 out) → ConvTranspose 2x2 s2 (3 out) → Reshape by a shape *input* (so shape
    inference cannot know it) → MatMul [.., 5] → Gemm."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in
             (("w", (4, 2, 3, 3)), ("wt", (4, 3, 2, 2)), ("m", (16, 5)), ("g", (5, 7)))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("ConvTranspose", ["c", "wt"], ["t"], strides=[2, 2]),
             helper.make_node("Reshape", ["t", "shape"], ["r"]),
             helper.make_node("MatMul", ["r", "m"], ["mm"]),
             helper.make_node("Gemm", ["mm", "g"], ["y"])]
    graph = helper.make_graph(nodes, "macs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8]),
                                               helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def test_macs_are_counted_per_op_including_shapes_only_a_run_reveals(tmp_path: Path) -> None:
    path = tmp_path / "macs.onnx"
    _macs_model(path)
    found = count_macs(path, {"x": np.zeros((1, 2, 8, 8), np.float32), "shape": np.array([48, 16], np.int64)})
    conv = 4 * 8 * 8 * (2 * 3 * 3)  # outputs x (C_in x kernel)
    transposed = (4 * 8 * 8) * (3 * 2 * 2)  # inputs x (C_out x kernel)
    assert found["by_op"] == {"Conv": conv, "ConvTranspose": transposed, "MatMul": 48 * 16 * 5, "Gemm": 48 * 5 * 7}
    assert found["macs"] == sum(found["by_op"].values())


def test_peak_rules_and_machine_description() -> None:
    assert fp32_flops_per_cycle({"avx512f", "avx2", "fma"}, "AuthenticAMD", 25)[0] == 32  # Zen 4, 256-bit pipes
    assert fp32_flops_per_cycle({"avx512f", "avx2", "fma"}, "GenuineIntel", 6)[0] == 64
    assert fp32_flops_per_cycle({"avx2", "fma"}, "GenuineIntel", 6)[0] == 32
    machine = describe_machine("note")
    assert machine["usable_cores"] >= 1 and machine["libraries"]["numpy"] != "not installed"
    peak = theoretical_peak(machine, 2)
    if machine["clock_mhz"]:
        assert math.isclose(peak["gflops"], peak["flops_per_cycle_per_core"] * 2 * machine["clock_mhz"] / 1000)
    assert measured_peak(1, seconds=0.0, side=128)["gflops"] > 0


def test_example_prompter_feeds_embeddings_boxes_and_object_counts() -> None:
    example = {"image_embeddings": np.zeros((1, 8, 4, 4), np.float32),
               "point_coords": np.zeros((3, 4, 2), np.float32), "point_labels": np.ones((3, 4), np.float32)}
    prompter = ExamplePrompter(example, {"point_coords": {0, 1}, "point_labels": {0, 1}},
                               {"image_embeddings": (1, 8, 4, 4), "other": (1, 2)})
    encoded = {"image_embeddings": np.ones((1, 8, 4, 4), np.float32), "other": np.zeros((1, 2), np.float32)}
    feeds = prompter.feed(encoded, np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32))
    assert feeds["image_embeddings"] is encoded["image_embeddings"]
    assert feeds["point_coords"].tolist() == [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
    assert feeds["point_labels"].tolist() == [[2, 3], [2, 3]]
    assert prompter.feed(encoded, None)["point_coords"].shape == (1, 4, 2)
    masks = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    chosen = best_logits({"masks": masks, "iou_predictions": np.array([[0, 1, 0], [0, 0, 1]], np.float32)})
    assert np.array_equal(chosen, masks[[0, 1], [1, 2]])


def _timing(subject: str, family: str, backend: str, task: str, p50: float, stages: dict[str, float],
            size: float = 1.0, fraction: float | None = None) -> dict:
    return {"subject": subject, "family": family, "backend": backend, "precision": "fp32", "threads": 2,
            "task": task, "batch": 1, "status": "ok", "total": {"p50": p50},
            "stages": {k: {"p50": v} for k, v in stages.items()}, "size_mb": size,
            "fraction_of_peak": {"measured": fraction} if fraction is not None else None, "encoder_gflops": 1.0}


def test_ratios_and_targets_say_by_how_much() -> None:
    image = {"preprocess": 1.0, "encoder": 4.0, "decoder": 1.0, "postprocess": 1.0}
    rows = [_timing("ours", "ours", "onnxruntime", "image", 10.0, image, 2.0, 0.25),
            _timing("ours", "ours", "onnxruntime", "prompt", 3.0, {"decoder": 1.5, "postprocess": 1.5}),
            _timing("lite", "anchor", "onnxruntime", "image", 200.0, {**image, "encoder": 180.0}, 40.0),
            _timing("lite", "anchor", "onnxruntime", "prompt", 9.0, {"decoder": 6.0, "postprocess": 3.0})]
    subjects = [{"name": "ours", "family": "ours", "info": {}, "macs": {"encoder_gmacs": 0.5},
                 "variants": [{"format": "onnx", "precision": "int8", "mb": 6.0, "note": ""}]},
                {"name": "lite", "family": "anchor", "info": {"reference": "litemedsam"}, "macs": {"encoder_gmacs": 36.0}}]
    results = {"timings": rows, "subjects": subjects, "accuracy": {},
               "ct": {"case": {"shape": [4, 8, 8]}, "real": [], "projected": [
                   {"subject": s, "backend": "onnxruntime", "precision": "fp32", "threads": 2, "projected_ms": ms}
                   for s, ms in (("ours", 100.0), ("lite", 3000.0))]}}
    results["ratios"] = compare.ratios(results, threads=2)
    best = next(r for r in results["ratios"] if r["basis"] == "best vs best")
    assert (best["speedup_2d"], best["speedup_encoder"], best["speedup_decoder"]) == (20.0, 45.0, 4.0)
    assert (best["speedup_3d"], best["macs_ratio"], best["size_ratio"]) == (30.0, 72.0, 20.0)
    assert {r["basis"] for r in results["ratios"]} == {"best vs best", "onnxruntime fp32"}
    found = {t["target"]: t for t in compare.targets(results, threads=2)}
    lite = found["2D self-prompted >= 30x faster than litemedsam"]
    assert lite["verdict"] == "missed" and lite["missed_by"] == "1.50x short (20.0x measured)"
    assert found["2D self-prompted >= 60x faster than esp_medsam"]["verdict"] == "not measured"
    assert found["decoder per prompt, cached embedding"]["verdict"] == "met"
    assert found["encoder FP32 throughput >= 50% of measured peak FP32"]["missed_by"] == "25.0 points short (25.0% reached)"
    assert found["INT8 graphs on disk"]["missed_by"] == "1 MB over (1.20x the goal)"
    assert found["3D CT case (challenge protocol)"]["verdict"] == "not measured"
    inter = compare.interactive(rows, prompts=5)
    assert inter[0]["total_ms"] == 10.0 + 4 * 3.0


def test_cli_rejects_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--threads", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main(["bench", "--quick", "--bundle", str(cached_bundle()), "--anchors", "sam_vit_c", "--out",
                 str(tmp_path)]) == 2
    assert "unknown anchors ['sam_vit_c']" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    with pytest.raises(SystemExit):
        main(["bench", "--ct", "287by512"])


def test_anchor_graphs_are_released_before_the_3d_case_and_ours_kept() -> None:
    from types import SimpleNamespace

    from edge_medsam.benchmark.engines import Loaded
    from edge_medsam.benchmark.run import release_anchor_graphs
    from edge_medsam.benchmark.scenarios import Variant
    from edge_medsam.benchmark.subjects import ANCHOR, OURS

    def runner(feeds):
        return {"out": np.zeros(1)}

    def variant(family: str) -> Variant:
        return Variant(SimpleNamespace(family=family), "onnxruntime", "fp32", 2, Loaded(runner, {"kind": "e"}),
                       Loaded(runner, {"kind": "d"}))

    ours, anchor = variant(OURS), variant(ANCHOR)
    release_anchor_graphs([ours, anchor])
    assert ours.encoder.run is runner and ours.decoder.run is runner
    assert anchor.encoder.details == {"kind": "e"} and anchor.decoder.details == {"kind": "d"}  # rows keep them
    with pytest.raises(RuntimeError, match="released"):
        anchor.encoder.run({})


def _rounds(p50s: list[float]) -> dict:
    return {"p50": float(np.median(p50s)), "round_ids": list(range(len(p50s))), "round_p50s": p50s}


def test_verdicts_are_met_or_missed_only_beyond_the_rounds_noise() -> None:
    assert compare.verdict(31.0, 30.0, (29.0, 33.0), at_least=True) == "within noise"
    assert compare.verdict(31.0, 30.0, (30.5, 33.0), at_least=True) == "met"
    assert compare.verdict(28.0, 30.0, (27.0, 29.5), at_least=True) == "missed"
    assert compare.verdict(1.9, 2.0, (1.7, 2.1), at_least=False) == "within noise"
    assert compare.verdict(None, 2.0, None, at_least=False) == "not measured"
    # Paired by round: the anchor and ours slowed down together in round 2, so the ratio stays near 10.
    anchor = {"total": _rounds([100.0, 104.0, 150.0, 98.0, 101.0])}
    ours = {"total": _rounds([10.0, 10.2, 15.0, 9.9, 10.0])}
    low, high = compare.ratio_band(anchor, ours)
    assert 9.8 < low <= high < 10.3
    assert compare.ratio_band({"total": _rounds([5.0])}, ours) is None
    assert compare.value_band(ours, scale=0.1) == (0.99, 1.5)


def test_best_vs_best_skips_precisions_that_lose_accuracy_and_spans_thread_counts() -> None:
    image = {"encoder": 4.0}
    rows = [_timing("ours", "ours", "onnxruntime", "image", 10.0, image) | {"threads": 1},
            _timing("ours", "ours", "openvino", "image", 4.0, image) | {"precision": "int8"},
            _timing("ours", "ours", "openvino", "image", 6.0, image) | {"precision": "bf16"},
            _timing("lite", "anchor", "onnxruntime", "image", 200.0, image),
            _timing("lite", "anchor", "openvino", "image", 150.0, image) | {"precision": "bf16"}]
    lost = {"box": 0.2, "auto": 0.3}
    results = {"timings": rows, "accuracy": {"ours": {"variants": [
        {"backend": "openvino", "precision": "int8", "dice_points_lost": {"box": 0.2, "auto": 1.7}},
        {"backend": "openvino", "precision": "bf16", "dice_points_lost": lost}]}}}
    assert compare.accurate_precisions(results, "ours") == {("openvino", "bf16")}
    assert compare._best(results, "ours")["precision"] == "bf16"  # int8 is faster but lost 1.7 points
    assert compare._best(results, "lite")["precision"] == "fp32"  # its bf16 accuracy was not measured
    rows[0]["total"]["p50"] = 3.0  # the one-thread FP32 row is now the fastest accurate one
    assert compare._best(results, "ours")["threads"] == 1


def test_the_3d_loop_over_the_pipeline_makes_the_calls_of_the_shipped_volume_segmenter() -> None:
    """The anchors' 3D loop and ours (the runtime's VolumeSegmenter) are one protocol: same slices, same boxes,
    same encoder and decoder calls, same masks."""
    from edge_medsam.benchmark.engines import load_graph
    from edge_medsam.benchmark.scenarios import Pipeline, Variant, ct_case, run_ct_case, run_volume_case
    from edge_medsam.benchmark.subjects import bundle_subject

    subject = bundle_subject(cached_bundle())
    variant = Variant(subject, "onnxruntime", "fp32", 1,
                      *(load_graph(subject, g, "onnxruntime", "fp32", 1) for g in ("encoder", "decoder")))
    case = ct_case(slices=6, size=64, boxes=2, seed=3)
    assert case.voxel_boxes.shape == (2, 6) and case.slices.shape == (6, 64, 64)
    shipped, mirrored = run_volume_case(variant, case), run_ct_case(Pipeline(variant), case)
    assert shipped["encoder_calls"] == mirrored["encoder_calls"] > 0
    assert shipped["decoder_calls"] == mirrored["decoder_calls"] > len(case.boxes)  # it propagated
    assert set(np.unique(shipped["labels"])) <= {0, 1, 2}
