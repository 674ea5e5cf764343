"""Real-scan evaluation (boxes per lesion, baselines, per-case means), teacher labels for unlabelled real images,
and the content-keyed cache of teacher embeddings."""

import numpy as np
import pytest
import torch
from PIL import Image
from test_real_material import _sdist

from edge_medsam.data.layouts import open_dataset
from edge_medsam.data.real import write_real
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.evaluation.real_scans import (
    box_filled,
    ellipse_in_box,
    evaluate_real_scans,
    real_scan_markdown,
    real_slices,
)
from edge_medsam.metrics import score_mask
from edge_medsam.models.reference import build_reference
from edge_medsam.models.teachers.base import Teacher, TeacherFeatures
from edge_medsam.runtime.protocol import Prediction
from edge_medsam.training.pseudo_labels import PseudoLabelConfig, PseudoLabeller, candidate_boxes
from edge_medsam.training.teacher_cache import EmbeddingCache, onnx_encoder


@pytest.fixture(scope="module")
def real_samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    write_real(root / "out", _sdist(root / "pyradiomics-3.0.1.tar.gz"), only="labelled")
    return open_dataset(root / "out", include_volumes=True, foreground_only=True).samples


class Oracle:
    """Answers each box with the lesion it was drawn around (or with nothing)."""

    supports_auto = False
    detected_modality = None

    def __init__(self, name, empty=False):
        self.name, self.empty, self.truth = name, empty, None

    def set_image(self, image01, modality):
        self.shape = image01.shape[:2]

    def predict(self, boxes=None, **_):
        masks = np.stack([np.zeros(self.shape, bool) if self.empty else self.lookup[tuple(np.round(b, 3))]
                          for b in boxes])
        logits = np.where(masks, 10.0, -10.0).astype(np.float32)
        return Prediction(logits, logits[:, None, :4, :4], np.ones(len(boxes), np.float32))


def test_baselines_are_exact_on_their_own_shapes():
    shape = (64, 80)
    box = np.array([10.0, 20.0, 50.0, 44.0])
    filled = box_filled(box, shape)
    assert filled.sum() == 40 * 24 and filled[20:44, 10:50].all()
    ellipse = ellipse_in_box(box, shape)
    assert ellipse.sum() == pytest.approx(np.pi * 20 * 12, rel=0.03)
    assert score_mask(ellipse_in_box(box, shape), ellipse).dice == 1.0
    assert not (ellipse & ~filled).any()


def test_every_lesion_slice_gets_tight_and_jittered_boxes(real_samples):
    slices = real_slices(real_samples)
    assert slices and {s.case for s in slices} == {s.case for s in real_samples}
    again = real_slices(real_samples)
    for item, other in zip(slices, again, strict=True):
        assert item.lesions and all(m.any() for m in item.lesions)
        assert item.boxes["tight"].shape == item.boxes["jittered"].shape == (len(item.lesions), 4)
        assert np.array_equal(item.boxes["jittered"], other.boxes["jittered"])  # seeded by slice and lesion
        for box, mask in zip(item.boxes["tight"], item.lesions, strict=True):
            ys, xs = np.nonzero(mask)
            assert tuple(box) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert any(not np.array_equal(s.boxes["tight"], s.boxes["jittered"]) for s in slices)


def test_scores_per_case_and_overall_as_the_mean_of_cases(real_samples):
    slices = real_slices(real_samples)
    oracle = Oracle("oracle")
    oracle.lookup = {tuple(np.round(b, 3)): m for s in slices for kind in s.boxes for b, m in
                     zip(s.boxes[kind], s.lesions, strict=True)}
    report = evaluate_real_scans([oracle, Oracle("nothing", empty=True)], real_samples).to_dict()
    summary = report["summary"]
    assert set(summary) == {"box_filled", "ellipse_in_box", "oracle", "nothing"}
    for kind in ("tight", "jittered"):
        assert summary["oracle"][kind]["all"]["dice"] == 1.0 and summary["nothing"][kind]["all"]["dice"] == 0.0
        cases = {c: v for c, v in summary["ellipse_in_box"][kind].items() if c != "all"}
        assert summary["ellipse_in_box"][kind]["all"]["dice"] == pytest.approx(np.mean([v["dice"] for v in cases.values()]))
    assert summary["box_filled"]["tight"]["all"]["dice"] == 1.0  # the fake lesions are rectangles
    assert sum(c["objects"] for c in report["cases"].values()) == summary["oracle"]["tight"]["all"]["objects"]
    text = real_scan_markdown(report)
    assert "| oracle |" in text and "jittered boxes" in text


def test_candidate_boxes_lie_around_the_images_own_regions():
    image = np.zeros((96, 128, 3), np.float32)
    image[20:50, 30:70] = 0.5
    image[60:90, 90:120] = 1.0
    boxes = candidate_boxes(image, PseudoLabelConfig())
    found = {tuple(b) for b in boxes.astype(int).tolist()}
    assert (30, 20, 70, 50) in found and (90, 60, 120, 90) in found
    assert len(candidate_boxes(np.full((32, 32, 3), 0.3, np.float32), PseudoLabelConfig())) == 0


class BoxTeacher(Teacher):
    """A stand-in teacher (LiteMedSAM's profile) whose answer to a box is the bright pixels inside it."""

    def __init__(self, iou=0.95):
        super().__init__(build_reference("litemedsam").profile)
        self.iou = iou
        self.weight = torch.nn.Parameter(torch.full((1,), iou))

    def encode(self, model_input):
        return TeacherFeatures(model_input.mean(1, keepdim=True))

    def decode(self, features, boxes=None, multimask=None, **_):
        grey = torch.nn.functional.interpolate(features.embedding, size=(256, 256))[0, 0]
        masks = []
        for x0, y0, x1, y1 in boxes[0].tolist():
            inside = torch.zeros_like(grey, dtype=torch.bool)
            inside[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))] = True
            masks.append(torch.where(inside & (grey > 0.25), 5.0, -5.0))
        return torch.stack(masks)[:, None], torch.full((len(masks), 1), self.iou)


def test_teacher_labels_keep_confident_self_consistent_distinct_objects(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_MEDSAM_CACHE", str(tmp_path))
    image = np.zeros((200, 300, 3), np.float32)
    image[40:100, 50:150] = 0.6
    image[120:180, 200:280] = 0.9
    labels = PseudoLabeller(BoxTeacher()).label(image)
    assert labels.shape == (200, 300) and labels.max() == 2
    for y, x in ((70, 100), (150, 240)):
        obj = labels == labels[y, x]
        assert labels[y, x] > 0 and score_mask(obj, image[..., 0] == image[y, x, 0]).dice > 0.95
    assert PseudoLabeller(BoxTeacher(iou=0.3)).label(image).max() == 0  # the teacher is not sure: nothing kept
    with pytest.raises(EdgeMedSAMError, match="cannot label 2D images"):
        PseudoLabeller(torch.nn.Linear(1, 1))


def test_teacher_labels_are_written_once_and_reused(tmp_path, monkeypatch):
    from edge_medsam.data.layouts import Sample
    from edge_medsam.training.pseudo_labels import pseudo_label

    monkeypatch.setenv("EDGE_MEDSAM_CACHE", str(tmp_path / "cache"))
    image = np.zeros((120, 160), np.uint8)
    image[30:80, 40:110] = 200
    Image.fromarray(image).save(tmp_path / "scan.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "blank.png")
    samples = [Sample(id=name, modality="mr", image=tmp_path / f"{name}.png") for name in ("scan", "blank")]
    labelled = pseudo_label(samples, BoxTeacher(), tmp_path / "labels")
    assert [s.id for s in labelled] == ["scan"] and labelled[0].objects == {1: "teacher"}
    record = tmp_path / "labels" / "pseudo_labels.json"
    stamp = record.stat().st_ino
    assert pseudo_label(samples, BoxTeacher(), tmp_path / "labels") == labelled
    assert record.stat().st_ino == stamp  # reused, not written again
    pseudo_label(samples, BoxTeacher(iou=0.8), tmp_path / "labels")  # another teacher: labelled anew
    assert record.stat().st_ino != stamp


def test_embedding_cache_is_keyed_by_teacher_and_content(tmp_path):
    teacher = build_reference("litemedsam")
    cache = EmbeddingCache(teacher, tmp_path)
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    assert cache.get(x) is None
    embedding = torch.randn(1, 256, 64, 64)
    cache.put(x, embedding)
    assert torch.allclose(cache.get(x), embedding, atol=2e-2)
    assert cache.get(x + 1e-3) is None
    other = build_reference("litemedsam")
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    assert EmbeddingCache(other, tmp_path).get(x) is None
    assert not list(tmp_path.rglob(".tmp-*"))


@pytest.mark.slow
def test_onnx_encoder_matches_pytorch_and_is_exported_once(tmp_path):
    teacher = build_reference("litemedsam")
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    encode = onnx_encoder(teacher, tmp_path)
    with torch.no_grad():
        want = teacher.encode(x).embedding
    assert (encode(x) - want).abs().max().item() < 1e-3 * max(1.0, want.abs().max().item())
    graphs = list(tmp_path.rglob("encoder.onnx"))
    assert len(graphs) == 1
    stamp = graphs[0].stat().st_mtime_ns
    onnx_encoder(teacher, tmp_path)
    assert graphs[0].stat().st_mtime_ns == stamp
