"""Evaluation: the SAM-Med2D protocol (checked with an oracle), torch segmenters' prompt mapping, reports, CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edge_medsam.cli import main
from edge_medsam.cli.evaluate import parse_fractions
from edge_medsam.data.layouts import load_sample, open_dataset, split_samples
from edge_medsam.data.prompt_batch import pack_prompts
from edge_medsam.data.prompts import box_from_mask
from edge_medsam.errors import InputError
from edge_medsam.evaluation import Prediction, Segmenter, StudentSegmenter, TeacherSegmenter, evaluate
from edge_medsam.evaluation.protocol import check_modes, select_objects
from edge_medsam.modalities import get_modality, normalise_intensity
from edge_medsam.models.files import save_model
from edge_medsam.models.student import EdgeStudent, student_preset
from edge_medsam.models.teachers import build_sam
from edge_medsam.preprocess import geometry_for

ORGANS = {1: "liver", 2: "kidney"}


# ------------------------------------------------------------------------------------------ fixtures


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _disc(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _write_dataset(root: Path) -> Path:
    """MR (grey, non-square, two organs), dermoscopy (colour, one lesion), microscopy (12 cells)."""
    rng = np.random.default_rng(0)
    for i in range(2):
        shape = (40, 56)
        labels = np.zeros(shape, np.uint8)
        labels[6 + i:20, 8:30 - i] = 1
        labels[_disc(shape, 28, 42, 7 + i)] = 2
        image = (rng.integers(0, 40, shape) + 90 * (labels > 0) + 40 * (labels == 2)).astype(np.uint8)
        _png(root / "images" / "mr" / f"mr_{i}.png", image)
        _png(root / "masks" / "mr" / f"mr_{i}.png", labels)
    shape = (48, 48)
    labels = _disc(shape, 22, 26, 12).astype(np.uint8)
    image = rng.integers(0, 60, (*shape, 3)).astype(np.uint8) + (labels[..., None] * np.array([150, 80, 40])).astype(
        np.uint8)
    _png(root / "images" / "dermoscopy" / "derm_0.png", image)
    _png(root / "masks" / "dermoscopy" / "derm_0.png", labels)
    shape = (64, 64)
    labels = np.zeros(shape, np.uint8)
    for k in range(12):
        labels[_disc(shape, 8 + 16 * (k // 4), 8 + 16 * (k % 4), 2 + k % 5)] = k + 1
    image = (rng.integers(0, 50, (*shape, 3)) + 150 * (labels[..., None] > 0)).astype(np.uint8)
    _png(root / "images" / "microscopy" / "cells_0.png", image)
    _png(root / "masks" / "microscopy" / "cells_0.png", labels)
    return root


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models gain nothing from intra-op threads, and on a busy 2-core machine they thrash.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("eval_data"))


@pytest.fixture(scope="module")
def samples(data_root: Path) -> list:
    # Organ names for MR (as a manifest would give them); other modalities fall back to label_<k>.
    return [replace(s, objects=ORGANS) if s.modality == "mr" else s for s in open_dataset(data_root)]


@pytest.fixture(scope="module")
def student() -> EdgeStudent:
    torch.manual_seed(0)
    return EdgeStudent(student_preset("tiny")).eval()


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return build_sam("vit_tiny", image_size=256, adapter="med2d").eval()


def _key(image01: np.ndarray) -> bytes:
    return np.ascontiguousarray(image01).tobytes()


class Oracle:
    """Answers from the ground truth in the ORIGINAL geometry: the object whose tight box is the box prompt, or
    under the first positive click. With ``radius`` it only reveals the object within that distance of each
    positive click, so refinement clicks are needed."""

    name = "oracle"
    supports_auto = True

    def __init__(self, samples: list, radius: float | None = None):
        self.truth: dict[bytes, tuple[np.ndarray, object]] = {}
        for sample in samples:
            image, labels, modality = load_sample(sample)
            image01 = normalise_intensity(image.pixels, modality, hounsfield=image.hounsfield)
            self.truth[_key(image01)] = (labels, modality)
        self.radius = radius
        self.detected_modality = None
        self.calls: list[dict] = []

    def set_image(self, image01: np.ndarray, modality) -> None:
        self.labels, truth = self.truth[_key(image01)]
        self.detected_modality = modality or truth

    def _object(self, box: np.ndarray | None, coords: np.ndarray | None, labels: np.ndarray | None) -> np.ndarray:
        if box is not None:
            ids = [k for k in np.unique(self.labels) if k and np.array_equal(box_from_mask(self.labels == k), box)]
            assert len(ids) == 1, f"box {box} is no object's tight box"
            return self.labels == ids[0]
        positives = coords[labels == 1].astype(int)
        obj = self.labels == self.labels[positives[0, 1], positives[0, 0]]
        assert obj[positives[0, 1], positives[0, 0]] and self.labels[positives[0, 1], positives[0, 0]] > 0
        if self.radius is None:
            return obj
        near = np.zeros_like(obj)
        for x, y in positives:
            near |= _disc(obj.shape, y, x, self.radius)
        return obj & near

    def predict(self, boxes=None, points=None, point_labels=None, mask_input=None, multimask=True) -> Prediction:
        n = len(boxes) if boxes is not None else len(points)
        self.calls.append({"n": n, "points": None if points is None else points.shape, "mask_input": mask_input})
        masks = np.stack([self._object(None if boxes is None else boxes[i], None if points is None else points[i],
                                       None if points is None else point_labels[i]) for i in range(n)])
        return Prediction(np.where(masks, 4.0, -4.0).astype(np.float32), np.zeros((n, 1, 16, 16), np.float32),
                          np.ones(n, np.float32))

    def predict_auto(self, points=None, point_labels=None, mask_input=None) -> Prediction:
        union = self.labels[None] > 0
        return Prediction(np.where(union, 4.0, -4.0).astype(np.float32), np.zeros((1, 1, 16, 16), np.float32),
                          np.ones(1, np.float32))


# ------------------------------------------------------------------------------------------ protocol


def test_oracle_scores_perfectly_in_every_mode(samples: list) -> None:
    oracle = Oracle(samples)
    assert isinstance(oracle, Segmenter)
    report = evaluate(oracle, samples, max_objects=None, progress=False)
    overall = report.overall()
    assert set(overall) == {"box", "1pt", "5pt", "auto", "refine"}
    for mode, scores in overall.items():
        assert scores["dice"] == pytest.approx(1.0) and scores["nsd"] == pytest.approx(1.0), mode
    assert overall["box"]["n"] == 2 * 2 + 1 + 12 and overall["auto"]["n"] == 4
    assert overall["5pt"]["clicks"] == 1.0  # an exact mask needs no correction
    assert overall["refine"]["clicks"] == 0.0 and report.correction_summary()["images"] == 0
    assert report.recognition_summary()["accuracy"] == 1.0
    summary = report.summary()["box"]
    assert set(summary["mr"]) == {"liver", "kidney", "all"}
    assert "label_12" in summary["microscopy"] and summary["dermoscopy"]["label_1"]["n"] == 1


def test_five_clicks_refine_with_the_previous_mask(samples: list) -> None:
    oracle = Oracle(samples, radius=3.0)
    report = evaluate(oracle, samples, prompts="1pt,5pt", max_objects=None, progress=False)
    by_mode = {mode: {(o.sample, o.label): o for o in report.objects if o.mode == mode} for mode in ("1pt", "5pt")}
    assert by_mode["1pt"].keys() == by_mode["5pt"].keys()
    for key, one in by_mode["1pt"].items():
        five = by_mode["5pt"][key]
        assert one.clicks == 1 and 1 <= five.clicks <= 5
        assert five.dice >= one.dice - 1e-9
    overall = report.overall()
    assert overall["5pt"]["clicks"] > 2 and overall["5pt"]["dice"] > overall["1pt"]["dice"] + 0.1
    # Every call after a first click carries the previous low-res logits as the mask prompt.
    assert all((call["mask_input"] is not None) == (call["points"][1] > 1) for call in oracle.calls)


class MissesOneObject(Oracle):
    """A self-prompt that misses the largest object; a correcting click adds (positive) or removes (negative) the
    object under it, starting from the previous mask (passed along as ``last``, the low-res logits being a
    stand-in). A prompted click (``predict``) segments the clicked object alone, as the oracle does."""

    def set_image(self, image01: np.ndarray, modality) -> None:
        super().set_image(image01, modality)
        ids, sizes = np.unique(self.labels[self.labels > 0], return_counts=True)
        self.last = (self.labels > 0) & (self.labels != ids[sizes.argmax()])

    def predict_auto(self, points=None, point_labels=None, mask_input=None) -> Prediction:
        if points is None:
            return Prediction(np.where(self.last, 4.0, -4.0)[None].astype(np.float32),
                              np.zeros((1, 1, 16, 16), np.float32), np.ones(1, np.float32))
        self.calls.append({"points": points.shape, "mask_input": mask_input})
        mask = self.last.copy()
        for (x, y), label in zip(points[0].astype(int), point_labels[0], strict=True):
            obj = (self.labels == self.labels[y, x]) & (self.labels[y, x] > 0)
            mask = mask | obj if label == 1 else mask & ~obj
        self.last = mask
        return Prediction(np.where(mask, 4.0, -4.0)[None].astype(np.float32), np.zeros((1, 1, 16, 16), np.float32),
                          np.ones(1, np.float32))


def test_refinement_clicks_correct_a_wrong_self_prompt(samples: list) -> None:
    segmenter = MissesOneObject(samples)
    report = evaluate(segmenter, samples, prompts="auto,refine", max_objects=None, progress=False)
    overall = report.overall()
    assert overall["refine"]["dice"] == pytest.approx(1.0) and overall["auto"]["dice"] < 0.95
    correction = report.correction_summary()
    assert correction["images"] >= 1 and correction["refined_dice"] == pytest.approx(1.0)
    assert correction["improved"] == correction["images"] and correction["clicks"] == pytest.approx(1.0)
    # The first correction already carries the self-prompt's logits as the mask prompt.
    assert segmenter.calls and all(call["mask_input"] is not None for call in segmenter.calls)
    assert "Where the self-prompt is wrong" in report.markdown()


def test_objects_are_capped_evenly_over_sizes() -> None:
    labels = np.zeros((40, 200), np.int32)
    for k in range(1, 21):  # label k is k pixels wide: sizes rank like labels
        labels[5:10, 10 * (k - 1):10 * (k - 1) + (k % 10) + 1] = k
    picked = [o.label for o in select_objects(labels, {}, max_objects=5)]
    assert len(picked) == 5 and picked == sorted(picked)
    sizes = {k: int((labels == k).sum()) for k in range(1, 21)}
    assert min(sizes[k] for k in picked) == min(sizes.values())
    assert max(sizes[k] for k in picked) == max(sizes.values())
    assert picked == [o.label for o in select_objects(labels, {}, max_objects=5)]
    assert len(select_objects(labels, {}, max_objects=None)) == 20
    assert select_objects(labels, {3: "cell"}, None)[2].name == "cell"


def test_prompt_modes_are_checked() -> None:
    assert check_modes("5pt, box") == ("box", "5pt")
    with pytest.raises(InputError, match="unknown prompt modes"):
        check_modes("box,3pt")


# ------------------------------------------------------------------------------------------ torch segmenters


def test_teacher_segmenter_maps_prompts_into_its_frame(teacher, monkeypatch: pytest.MonkeyPatch) -> None:
    image01 = np.random.default_rng(1).random((48, 80, 3), dtype=np.float32)
    segmenter = TeacherSegmenter(teacher)
    segmenter.set_image(image01, None)
    seen = {}
    decode = teacher.decode

    def spy(features, points=None, boxes=None, mask_input=None, multimask=None):
        seen.update(points=points, boxes=boxes, mask_input=mask_input)
        return decode(features, points=points, boxes=boxes, mask_input=mask_input, multimask=multimask)

    monkeypatch.setattr(teacher, "decode", spy)
    boxes = np.array([[4, 6, 30, 40], [50, 2, 80, 48]], np.float32)
    points = np.array([[[10, 20], [0, 0]], [[60, 30], [70, 10]]], np.float32)
    labels = np.array([[1, -1], [1, 0]])
    prediction = segmenter.predict(boxes=boxes, points=points, point_labels=labels)
    geometry = geometry_for(48, 80, 256, keep_aspect=False)  # SAM-Med2D stretches to 256 x 256
    np.testing.assert_allclose(seen["boxes"][0].numpy(), geometry.boxes_to_model(boxes))
    np.testing.assert_allclose(seen["points"][0][0].numpy(), geometry.points_to_model(points))
    assert seen["points"][1][0].tolist() == labels.tolist()
    assert prediction.masks_logits.shape == (2, 48, 80) and prediction.masks_logits.dtype == np.float32
    assert prediction.low_res.shape == (2, 1, 64, 64) and prediction.scores.shape == (2,)
    again = segmenter.predict(points=points[:1, :1], point_labels=labels[:1, :1], mask_input=prediction.low_res[:1])
    assert seen["mask_input"].shape == (1, 1, 64, 64) and again.masks_logits.shape == (1, 48, 80)
    assert len(segmenter.predict(boxes=np.zeros((0, 4), np.float32))) == 0


def test_student_segmenter_maps_prompts_and_recognises(student, monkeypatch: pytest.MonkeyPatch) -> None:
    image01 = np.random.default_rng(2).random((40, 72, 3), dtype=np.float32)
    segmenter = StudentSegmenter(student)
    segmenter.set_image(image01, None)
    assert segmenter.detected_modality is not None  # recognised (random weights: any modality)
    segmenter.set_image(image01, get_modality("fundus"))
    assert segmenter.detected_modality.name == "fundus"
    seen = {}
    decode = student.decode

    def spy(features, self_prompt, **kwargs):
        seen.update(kwargs)
        return decode(features, self_prompt, **kwargs)

    monkeypatch.setattr(student, "decode", spy)
    boxes = np.array([[4, 6, 30, 40], [40, 2, 72, 40]], np.float32)
    points = np.array([[[10, 20]], [[60, 30]]], np.float32)
    labels = np.array([[1], [0]])
    prediction = segmenter.predict(boxes=boxes, points=points, point_labels=labels)
    geometry = geometry_for(40, 72, 256)  # the student keeps the aspect ratio
    coords, packed = pack_prompts(list(geometry.boxes_to_model(boxes)),
                                  [(c, lab) for c, lab in zip(geometry.points_to_model(points), labels, strict=True)])
    np.testing.assert_allclose(seen["points"].numpy(), coords)
    assert seen["labels"].tolist() == packed.tolist() == [[1, 2, 3], [0, 2, 3]]
    assert prediction.masks_logits.shape == (2, 40, 72) and prediction.low_res.shape == (2, 1, 64, 64)
    auto = segmenter.predict_auto()
    assert auto.masks_logits.shape == (1, 40, 72)


def test_student_and_teacher_reports_are_written_and_deterministic(student, teacher, samples: list,
                                                                   tmp_path: Path) -> None:
    first = evaluate(StudentSegmenter(student), samples, max_objects=4, progress=False)
    second = evaluate(StudentSegmenter(student), samples, max_objects=4, progress=False)
    assert first.summary() == second.summary() and first.recognition == second.recognition
    assert set(first.overall()) == {"box", "1pt", "5pt", "auto", "refine"}
    assert first.summary()["box"]["microscopy"]["all"]["n"] == 4  # 12 cells capped to 4
    assert len(first.encode_ms) >= first.images == 4 and first.latency()["decode_ms"]["n"] > 0
    paths = first.write(tmp_path / "student")
    metrics = json.loads(paths["json"].read_text())
    assert metrics["images"] == 4 and metrics["modality_recognition"]["n"] == 4
    assert set(metrics["summary"]) == {"box", "1pt", "5pt", "auto", "refine"}
    markdown = paths["markdown"].read_text()
    assert "| modality | class | n | box Dice | box NSD | 1pt Dice" in markdown and "## Automatic" in markdown
    assert paths["csv"].read_text().splitlines()[0] == "mode,sample,modality,class,label,dice,nsd,clicks"

    teacher_report = evaluate(TeacherSegmenter(teacher), samples, max_objects=4, progress=False)
    assert teacher_report.modes == ("box", "1pt", "5pt") and "no self-prompt" in teacher_report.notes[0]
    assert "## Automatic" not in teacher_report.markdown()


# ------------------------------------------------------------------------------------------ CLI


def test_cli_eval_end_to_end(student, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = save_model(student, tmp_path / "student.pt")
    out = tmp_path / "report"
    code = main(["eval", "--model", str(model), "--data", str(data_root), "--split", "all", "--limit", "3",
                 "--prompts", "box,1pt,auto", "--max-objects", "3", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "| modality | class | n | box Dice | box NSD | 1pt Dice | 1pt NSD |" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 3 and metrics["settings"]["split"] == "all"
    assert set(metrics["summary"]["box"]) == {"mr", "dermoscopy", "microscopy", "all"}  # --limit takes turns
    assert (out / "metrics.md").read_text().startswith("# Evaluation of student")


def test_two_split_fractions_reproduce_a_training_runs_held_out_set(samples: list) -> None:
    test_fraction = 0.5  # training splits (1 - test_fraction, test_fraction) by case and modality
    held_out = split_samples(samples, (1 - test_fraction, test_fraction), seed=3)[1]
    assert split_samples(samples, parse_fractions("0.5,0.5"), seed=3)["test"] == held_out
    assert set(parse_fractions("0.8,0.1,0.1")) == {"train", "val", "test"}
    with pytest.raises(InputError, match="two or three"):
        parse_fractions("1")


@pytest.mark.parametrize(("extra", "message"), [
    (["--prompts", "box,3pt"], "unknown prompt modes"),
    (["--model", "missing.pt"], "model file not found"),
    (["--split", "test", "--split-fractions", "1,0,0"], "test split of 4 samples is empty"),
])
def test_cli_eval_reports_bad_inputs_in_one_line(student, data_root: Path, tmp_path: Path, extra: list[str],
                                                 message: str, capsys: pytest.CaptureFixture) -> None:
    options = {"--model": str(save_model(student, tmp_path / "student.pt")), "--data": str(data_root),
               "--out": str(tmp_path / "out"), "--split": "all", **dict(zip(extra[::2], extra[1::2], strict=True))}
    args = ["eval", *(part for option in options.items() for part in option)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
