"""`edge-medsam compare-runs`: two runs' evaluation figures side by side, non-zero exit beyond the tolerance."""

from __future__ import annotations

import json

import pytest

from edge_medsam.cli import main
from edge_medsam.errors import InputError
from edge_medsam.run_compare import compare_runs


def _run(folder, box_dice: float, refined: float, objects: list[float] | None = None):
    report = folder / "evaluate" / "student_held_out" / "metrics.json"
    report.parent.mkdir(parents=True)
    if objects is not None:  # per-object box Dice, as the evaluation writes them
        rows = [f"box,img{i},ct,organ,1,{dice},0.4,0" for i, dice in enumerate(objects)]
        report.with_name("objects.csv").write_text("mode,sample,modality,class,label,dice,nsd,clicks\n"
                                                   + "\n".join(rows) + "\n")
    report.write_text(json.dumps({
        "overall": {"box": {"dice": box_dice, "nsd": 0.4}, "auto": {"dice": 0.88, "nsd": None}},
        "modality_recognition": {"accuracy": 0.98, "n": 66},
        "correction": {"auto_dice": 0.71, "refined_dice": refined, "images": 21}}))
    (folder / "pipeline.json").write_text(json.dumps(
        {"evaluate": {"done": True, "outputs": {"reports": {"student_held_out": str(report)}}}}))
    return folder


def test_figures_of_both_runs_are_paired(tmp_path):
    deltas = compare_runs(_run(tmp_path / "a", 0.55, 0.80), _run(tmp_path / "b", 0.56, 0.70))
    by_name = {d.figure: d for d in deltas}
    assert set(by_name) == {"box dice", "box nsd", "auto dice", "modality accuracy", "wrong self-prompts auto",
                            "wrong self-prompts refined"}
    assert by_name["box dice"].delta == pytest.approx(0.01)
    assert by_name["wrong self-prompts refined"].delta == pytest.approx(-0.10)


def test_noise_is_twice_the_standard_error_of_paired_object_differences(tmp_path):
    a = _run(tmp_path / "a", 0.5, 0.8, objects=[0.4, 0.6, 0.5, 0.5])
    b = _run(tmp_path / "b", 0.55, 0.8, objects=[0.5, 0.6, 0.6, 0.5])  # differences 0.1, 0, 0.1, 0
    box = next(d for d in compare_runs(a, b) if d.figure == "box dice")
    assert box.noise == pytest.approx(2 * 0.057735 / 2, rel=1e-4)  # sd 0.0577 over 4 objects
    assert box.delta == pytest.approx(0.05) and box.within(0.0)  # 0.05 is inside the noise of 0.058
    c = _run(tmp_path / "c", 0.6, 0.8, objects=[0.5, 0.7, 0.6, 0.6])  # every object 0.1 better than in a
    shifted = next(d for d in compare_runs(a, c) if d.figure == "box dice")
    assert shifted.noise == pytest.approx(0.0, abs=1e-9) and not shifted.within(0.02)
    nsd = next(d for d in compare_runs(a, b) if d.figure == "box nsd")
    assert nsd.noise == pytest.approx(0.0)  # identical per-object NSD
    refined = next(d for d in compare_runs(a, b) if d.figure == "wrong self-prompts refined")
    assert refined.noise is None  # no per-object list for image-level figures: the tolerance decides


def test_exit_code_says_whether_the_runs_agree(tmp_path, capsys):
    a, b, c = _run(tmp_path / "a", 0.55, 0.80), _run(tmp_path / "b", 0.56, 0.80), _run(tmp_path / "c", 0.50, 0.80)
    assert main(["compare-runs", str(a), str(b), "--out", str(tmp_path / "cmp.md")]) == 0
    assert "largest difference 0.0100" in (tmp_path / "cmp.md").read_text()
    assert main(["compare-runs", str(a), str(c)]) == 1
    assert "**beyond noise**" in capsys.readouterr().out


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"no pipeline\.json"):
        compare_runs(tmp_path, tmp_path)
    assert main(["compare-runs", str(tmp_path), str(tmp_path)]) == 2
