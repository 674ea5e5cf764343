"""The CVPR 2025 interactive 3D protocol: click simulation on hand-made volumes, AUC arithmetic, NSD with the
spacing, challenge .npz cases, the protocol loop with scripted interactors, and the CLI end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from edge_medsam.errors import EdgeMedSAMError, InputError
from edge_medsam.evaluation.clicks3d import largest_component, next_click, simulate_clicks
from edge_medsam.evaluation.interactive3d import Interactive3DCase, click_auc, run_case, score_step
from edge_medsam.evaluation.interactive3d_cases import gt_boxes, load_case
from edge_medsam.io import Volume
from edge_medsam.io.challenge_npz import (
    ChallengeBox,
    ChallengeCase,
    read_challenge_gts,
    read_challenge_npz,
    write_challenge_npz,
    write_challenge_segs,
)
from edge_medsam.metrics import surface_dice
from edge_medsam.runtime.protocol import Click3D, VolumeInteractor

SHAPE = (20, 22, 24)


def blob(shape: tuple[int, int, int], low: tuple[int, int, int], size: tuple[int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(a, a + s) for a, s in zip(low, size, strict=True))] = True
    return mask


# ------------------------------------------------------------------------------------------------ click simulation


def test_the_click_goes_to_the_largest_missed_component_at_its_edt_maximum() -> None:
    truth = (blob(SHAPE, (1, 1, 1), (3, 3, 3)) | blob(SHAPE, (8, 6, 4), (7, 7, 7))).astype(np.uint8)
    click = next_click(np.zeros(SHAPE, np.uint8), truth, 1)
    # An odd cube has one deepest voxel: its centre (4 voxels from the background, its neighbours 3).
    assert click == Click3D(label=1, i=11, j=9, k=7, positive=True)


def test_an_oversegmented_region_gets_a_background_click() -> None:
    truth = blob(SHAPE, (2, 2, 2), (4, 4, 4)).astype(np.uint8)
    prediction = truth | blob(SHAPE, (10, 10, 10), (5, 5, 5))
    click = next_click(prediction.astype(np.uint8), truth, 1)
    assert click == Click3D(label=1, i=12, j=12, k=12, positive=False)
    assert prediction[click.i, click.j, click.k] and not truth[click.i, click.j, click.k]


def test_no_click_where_the_prediction_is_exact() -> None:
    truth = np.zeros(SHAPE, np.uint8)
    truth[blob(SHAPE, (2, 2, 2), (4, 4, 4))] = 1
    truth[blob(SHAPE, (10, 10, 10), (4, 4, 4))] = 2
    prediction = truth.copy()
    prediction[prediction == 2] = 0  # object 2 missed, object 1 exact
    clicks = simulate_clicks(prediction, truth, [1, 2])
    assert [c.label for c in clicks] == [2] and clicks[0].positive
    assert next_click(truth, truth, 1) is None and simulate_clicks(truth, truth, [1, 2]) == []


def test_components_are_26_connected() -> None:
    # Two 4^3 cubes touching only at one corner (128 voxels together) against a separate 5^3 cube (125): with
    # 26-connectivity the pair is the larger component, with 6- or 18-connectivity the single cube would be.
    pair = blob(SHAPE, (0, 0, 0), (4, 4, 4)) | blob(SHAPE, (4, 4, 4), (4, 4, 4))
    single = blob(SHAPE, (12, 12, 12), (5, 5, 5))
    chosen = largest_component(pair | single)
    assert chosen.sum() == 128 and (chosen == pair).all()
    click = next_click(np.zeros(SHAPE, np.uint8), (pair | single).astype(np.uint8), 1)
    assert pair[click.i, click.j, click.k]


def test_ties_are_broken_by_the_seeded_generator() -> None:
    truth = blob(SHAPE, (6, 6, 6), (4, 4, 4)).astype(np.uint8)  # eight central voxels share the EDT maximum
    clicks = {next_click(np.zeros(SHAPE, np.uint8), truth, 1) for _ in range(3)}
    assert len(clicks) == 1
    click = clicks.pop()
    assert {click.i, click.j, click.k} <= {7, 8}


# ------------------------------------------------------------------------------------------------------- metrics


def test_auc_is_the_trapezoid_over_the_five_click_steps() -> None:
    assert click_auc([0.5, 0.6, 0.7, 0.8, 0.9, 1.0]) == pytest.approx(0.8 + 0.7 + 0.8 + 0.9)  # box score ignored
    assert click_auc([0.0, 1.0, 1.0, 1.0, 1.0, 1.0]) == pytest.approx(4.0)
    assert click_auc([0.2, 0.4, 0.4, 0.4, 0.4]) == pytest.approx(0.3 + 0.4 * 3)
    with pytest.raises(ValueError):
        click_auc([1.0, 1.0])


def test_nsd_uses_the_spacing_of_each_axis() -> None:
    truth = blob(SHAPE, (5, 5, 5), (8, 8, 8))
    shifted = np.roll(truth, 1, axis=2)  # one voxel along k
    assert surface_dice(shifted, truth, (1.0, 1.0, 1.0)) == pytest.approx(1.0)
    assert surface_dice(shifted, truth, (3.0, 1.0, 1.0)) == pytest.approx(1.0)  # i is coarse, the shift is along k
    assert surface_dice(shifted, truth, (1.0, 1.0, 3.0)) < 0.9  # 3 mm along k: the k faces are out of tolerance


def test_case_nsd_follows_the_challenge_gate() -> None:
    truth = np.zeros(SHAPE, np.uint8)
    truth[blob(SHAPE, (1, 1, 1), (6, 6, 6))] = 1
    truth[blob(SHAPE, (10, 10, 10), (8, 8, 8))] = 2
    prediction = np.where(truth == 1, 1, 0).astype(np.uint8)
    prediction[blob(SHAPE, (10, 10, 10), (8, 8, 1))] = 2  # one slab of object 2: Dice 0.22
    dices, nsds, case_dice, case_nsd = score_step(prediction, truth, [1, 2], (1.0, 1.0, 1.0))
    assert dices[1] == 1.0 and 0.2 < dices[2] < 0.25 and case_dice > 0.2
    assert 0 < nsds[2] < 1 and case_nsd == pytest.approx((1.0 + nsds[2]) / 2)
    prediction[prediction == 2] = 0
    prediction[blob(SHAPE, (10, 10, 10), (2, 2, 2))] = 2  # Dice of object 2 below 0.2: its NSD counts 0 ...
    dices, nsds, case_dice, case_nsd = score_step(prediction, truth, [1, 2], (1.0, 1.0, 1.0))
    assert dices[2] < 0.2 and nsds[2] == 0.0
    # ... but the case's mean Dice is above 0.2, so the case NSD averages the objects' surface scores as computed.
    assert case_nsd == pytest.approx((1.0 + surface_dice(prediction == 2, truth == 2)) / 2)
    _, _, case_dice, case_nsd = score_step(np.zeros(SHAPE, np.uint8), truth, [1, 2], (1.0, 1.0, 1.0))
    assert case_dice == 0.0 and case_nsd == 0.0


# ------------------------------------------------------------------------------------------------ challenge .npz


def challenge_arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (6, 10, 12)).astype(np.uint8)  # (Z, Y, X)
    gts = np.zeros_like(imgs)
    gts[1:4, 2:5, 3:8] = 1
    gts[2:6, 6:9, 1:3] = 2
    return imgs, gts


def test_a_challenge_case_reads_as_the_challenge_writes_it(tmp_path: Path) -> None:
    imgs, gts = challenge_arrays()
    boxes = [{k: np.int64(v) for k, v in ChallengeBox.from_mask(gts == label).to_dict().items()} for label in (1, 2)]
    clicks = [{"fg": [[np.int64(2), np.int64(3), np.int64(4)]], "bg": []}, {"fg": [], "bg": [[3, 7, 2], [4, 7, 1]]}]
    path = tmp_path / "case.npz"
    np.savez_compressed(path, imgs=imgs, gts=gts, spacing=np.array([0.8, 0.9, 2.5]), boxes=boxes, clicks=clicks,
                        clicks_order=[["fg", None], ["bg", "bg"]], prev_pred=gts)  # the evaluation's own call
    case = read_challenge_npz(path)
    assert case.boxes == {1: ChallengeBox(1, 3, 2, 3, 2, 7, 4), 2: ChallengeBox(2, 5, 4, 1, 6, 2, 8)}
    assert case.boxes[1].voxel_box() == (3, 2, 1, 7, 4, 3)
    assert case.click_sequence() == [(1, (2, 3, 4), True), (2, (3, 7, 2), False), (2, (4, 7, 1), False)]
    volume = case.volume()
    assert volume.shape == (12, 10, 6) and (volume.voxels == imgs.transpose(2, 1, 0)).all()
    assert volume.spacing == pytest.approx((0.8, 0.9, 2.5))
    assert (case.truth() == gts.transpose(2, 1, 0)).all() and (case.prev_pred == gts).all()

    again = read_challenge_npz(write_challenge_npz(tmp_path / "again.npz", case))
    assert (again.boxes, again.clicks, again.clicks_order) == (case.boxes, case.clicks, case.clicks_order)
    assert (again.imgs == imgs).all() and (again.gts == gts).all() and again.spacing == case.spacing

    segs = write_challenge_segs(tmp_path / "out.npz", gts, [gts, gts])
    with np.load(segs) as out:
        assert (out["segs"] == gts).all() and out["all_segs"].shape == (2, *gts.shape)
    gts_only = tmp_path / "gts.npz"
    np.savez_compressed(gts_only, gts=gts)
    assert (read_challenge_gts(gts_only, imgs.shape) == gts).all()


class _Exploit:
    def __reduce__(self) -> tuple:
        return (print, ("this must never run",))


@pytest.mark.parametrize(("arrays", "problem"), [
    ({"boxes": [{"z_min": 1, "z_max": 2}]}, "lacks z_mid"),
    ({"boxes": [{**ChallengeBox(1, 9, 2, 0, 0, 1, 1).to_dict()}]}, "box 0 z 1..9 is outside"),
    ({"boxes": np.array([_Exploit()], dtype=object)}, "objects other than numbers"),
    ({"clicks": [{"fg": [[1, 1, 1]], "bg": []}], "clicks_order": [["bg"]]}, "does not list each of its clicks"),
    ({"clicks": [{"fg": [[1, 1, 99]], "bg": []}], "clicks_order": [["fg"]]}, "outside the image"),
    ({"spacing": [1.0, -1.0, 1.0]}, "not 3 positive mm"),
])
def test_malformed_cases_are_one_line_errors(tmp_path: Path, arrays: dict, problem: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    imgs, gts = challenge_arrays()
    path = tmp_path / "bad.npz"
    np.savez(path, **{"imgs": imgs, "gts": gts, "spacing": [1.0, 1.0, 1.0], **arrays})
    with pytest.raises(InputError) as err:
        read_challenge_npz(path)
    assert problem in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
    assert "must never run" not in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- the protocol loop


class Scripted:
    """A VolumeInteractor that answers each step from a list, recording what it was given."""

    name = "scripted"

    def __init__(self, answers: list[np.ndarray]):
        self.answers = answers
        self.calls: list[tuple[dict, list[Click3D], np.ndarray | None]] = []

    def start(self, volume: Volume) -> None:
        self.calls.clear()

    def step(self, boxes, clicks, previous):
        self.calls.append((dict(boxes), list(clicks), previous))
        return self.answers[min(len(self.calls) - 1, len(self.answers) - 1)]


def synthetic_case(boxes: bool) -> Interactive3DCase:
    truth = np.zeros(SHAPE, np.uint16)
    truth[blob(SHAPE, (2, 2, 2), (6, 6, 6))] = 1
    truth[blob(SHAPE, (10, 10, 10), (6, 7, 8))] = 2
    volume = Volume(np.zeros(SHAPE, np.float32), np.diag([1.0, 1.0, 2.0, 1.0]))
    return Interactive3DCase("hand-made", volume, truth, gt_boxes(truth) if boxes else None)


def test_the_loop_hands_on_boxes_all_clicks_and_the_previous_prediction() -> None:
    case = synthetic_case(boxes=True)
    assert isinstance(Scripted([]), VolumeInteractor)
    half = case.truth.copy()
    half[half == 2] = 0
    interactor = Scripted([half, half, case.truth])
    result = run_case(interactor, case)
    assert len(interactor.calls) == 6 and result.has_box
    assert interactor.calls[0][0] == case.boxes and interactor.calls[0][2] is None
    assert [len(clicks) for _, clicks, _ in interactor.calls] == [0, 1, 2, 2, 2, 2]  # object 1 never needs a click
    assert [c.label for c in interactor.calls[2][1]] == [2, 2] and all(c.positive for c in interactor.calls[2][1])
    assert (interactor.calls[1][2] == half).all() and (interactor.calls[3][2] == case.truth).all()
    assert [s.case_dice for s in result.steps] == pytest.approx([0.5, 0.5, 1.0, 1.0, 1.0, 1.0])
    assert result.dsc_auc == pytest.approx(0.75 + 3.0) and result.final_dice == 1.0 and result.final_nsd == 1.0
    assert all(s.seconds is not None for s in result.steps) and result.limit_seconds == 180.0
    row = result.to_dict()
    assert row["box_dice"] == 0.5 and row["objects"]["2"]["final_dice"] == 1.0 and len(row["steps"]) == 6


def test_without_a_box_the_first_step_scores_zero_untimed() -> None:
    case = synthetic_case(boxes=False)
    interactor = Scripted([case.truth])
    result = run_case(interactor, case)
    assert len(interactor.calls) == 5 and interactor.calls[0][0] == {}
    assert (interactor.calls[0][2] == 0).all()  # the empty prediction the clicks were placed on
    assert [c.label for c in interactor.calls[0][1]] == [1, 2]
    assert result.steps[0].seconds is None and result.steps[0].case_dice == 0.0 and not result.has_box
    assert result.dsc_auc == pytest.approx(4.0)


def test_a_prediction_of_the_wrong_shape_is_an_error() -> None:
    with pytest.raises(EdgeMedSAMError, match="not integer labels of shape"):
        run_case(Scripted([np.zeros((2, 2, 2), np.uint16)]), synthetic_case(boxes=True))


class BoxFill:
    """A 2D Segmenter that fills its box (or a 5-pixel square around each positive click without a box)."""

    name = "boxfill"
    supports_auto = False
    detected_modality = None

    def __init__(self) -> None:
        self.encoded = 0
        self.shape = (0, 0)

    def set_image(self, image01: np.ndarray, modality: object) -> None:
        self.encoded += 1
        self.shape = image01.shape[:2]

    def predict(self, boxes=None, points=None, point_labels=None, mask_input=None, multimask=True):
        from edge_medsam.runtime.protocol import Prediction

        mask = np.zeros(self.shape, bool)
        if boxes is not None:
            x0, y0, x1, y1 = (round(float(v)) for v in boxes[0])
            mask[y0:y1, x0:x1] = True
        else:
            for (x, y), positive in zip(points[0], point_labels[0], strict=True):
                if positive:
                    mask[max(int(y) - 2, 0):int(y) + 3, max(int(x) - 2, 0):int(x) + 3] = True
        logits = np.where(mask, 1.0, -1.0).astype(np.float32)[None]
        return Prediction(logits, np.zeros((1, 1, 4, 4), np.float32), np.ones(1, np.float32))


def test_the_slice_baseline_propagates_boxes_and_corrects_only_clicked_slices() -> None:
    from edge_medsam.evaluation.interactive3d_baseline import SegmenterSlicePropagation

    case = synthetic_case(boxes=True)
    segmenter = BoxFill()
    interactor = SegmenterSlicePropagation(segmenter, modality="ct")
    assert isinstance(interactor, VolumeInteractor) and interactor.name == "boxfill-slice-propagation"
    interactor.start(case.volume)
    first = interactor.step(case.boxes, [], None)
    # The middle slice of each box is exact; propagation fills the grown box on every other slice of the z range.
    for label, box in case.boxes.items():
        k0, k1 = box[2], box[5]
        middle = (k0 + k1) // 2
        assert ((first[:, :, middle] == label) == (case.truth[:, :, middle] == label)).all()
        assert set(np.flatnonzero((first == label).any(axis=(0, 1)))) == set(range(k0, k1 + 1))
    encoded = segmenter.encoded
    previous = first
    clicks: list[Click3D] = []
    for _ in range(3):
        new = simulate_clicks(previous, case.truth, case.labels)
        clicks += new
        after = interactor.step(case.boxes, clicks, previous)
        changed = {int(k) for k in np.flatnonzero((after != previous).any(axis=(0, 1)))}
        assert changed <= {c.k for c in new}  # a 2D correction stays on its slice
        previous = after
    assert segmenter.encoded > encoded
    with pytest.raises(InputError, match="declares no modality"):
        SegmenterSlicePropagation(BoxFill()).start(case.volume)


def test_cases_load_from_volumes_and_labels(tmp_path: Path) -> None:
    from edge_medsam.io.nifti import write_nifti, write_nifti_labels

    case = synthetic_case(boxes=False)
    write_nifti(tmp_path / "v.nii.gz", case.volume.voxels, case.volume.affine)
    write_nifti_labels(tmp_path / "l.nii.gz", case.truth, case.volume)
    loaded = load_case(tmp_path / "v.nii.gz", tmp_path / "l.nii.gz", boxes="from-gt")
    assert loaded.name == "v" and (loaded.truth == case.truth).all() and loaded.boxes == gt_boxes(case.truth)
    assert loaded.boxes[2] == (10, 10, 10, 15, 16, 17)
    assert load_case(tmp_path / "v.nii.gz", tmp_path / "l.nii.gz").boxes is None
    with pytest.raises(InputError, match="needs its label volume"):
        load_case(tmp_path / "v.nii.gz")


# ------------------------------------------------------------------------------------------------------- the CLI


def test_the_cli_runs_the_protocol_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from runtime_bundle import cached_bundle

    from edge_medsam.cli import main
    from edge_medsam.data.synth import generate_volume
    from edge_medsam.io.nifti import write_nifti, write_nifti_labels

    synth = generate_volume(0, size=48, slices=4)
    write_nifti(tmp_path / "ct.nii.gz", synth.hounsfield, synth.affine)
    write_nifti_labels(tmp_path / "ct_labels.nii.gz", synth.labels, Volume(synth.hounsfield, synth.affine))
    labels_zyx = synth.labels.transpose(2, 1, 0)
    boxes = {label: ChallengeBox.from_mask(labels_zyx == label) for label in (1, 2)}
    challenge = ChallengeCase(imgs=np.clip(synth.hounsfield.transpose(2, 1, 0) / 4 + 128, 0, 255).astype(np.uint8),
                              spacing=synth.spacing, gts=np.where(labels_zyx <= 2, labels_zyx, 0), boxes=boxes)
    write_challenge_npz(tmp_path / "CT_case.npz", challenge)
    out = tmp_path / "out"
    code = main(["eval", "--protocol", "interactive3d", str(tmp_path / "ct.nii.gz"), str(tmp_path / "CT_case.npz"),
                 "--labels", str(tmp_path / "ct_labels.nii.gz"), str(tmp_path / "CT_case.npz"),
                 "--bundle", str(cached_bundle()), "--backend", "onnxruntime", "--boxes", "from-gt",
                 "--interactors", "ours,slice-propagation", "--save-segs", "--out", str(out)])
    assert code == 0
    rows = list(csv.DictReader((out / "cases.csv").open()))
    assert [(r["Model"], r["CaseName"]) for r in rows] == [("ours", "ct"), ("slice-propagation", "ct"),
                                                           ("ours", "CT_case"), ("slice-propagation", "CT_case")]
    assert {r["num_class"] for r in rows} == {str(len(np.unique(synth.labels)) - 1), "2"}
    data = json.loads((out / "results.json").read_text())
    for case in data["cases"]:
        assert len(case["steps"]) == 6 and case["has_box"]
        assert all(0.0 <= s["case_dice"] <= 1.0 and 0.0 <= s["case_nsd"] <= 1.0 for s in case["steps"])
        assert 0.0 <= case["dsc_auc"] <= 4.0
    assert "| ours |" in (out / "report.md").read_text()
    with np.load(out / "ours" / "CT_case.npz") as segs:
        assert segs["segs"].shape == challenge.imgs.shape and segs["all_segs"].shape[0] == 6
    assert main(["eval", "--protocol", "interactive3d", str(tmp_path / "ct.nii.gz"), "--labels", "a", "b",
                 "--bundle", str(cached_bundle()), "--out", str(out)]) == 2
    assert "2 label files for 1 cases" in capsys.readouterr().err
    assert main(["eval", "--data", str(tmp_path), "--out", str(out)]) == 2  # the 2D protocol still needs --model
    assert "--model is missing" in capsys.readouterr().err
