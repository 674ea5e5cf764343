"""3D corrections: clicks on any slice, carried to neighbours, several objects, voxel coordinates, the CLI.

The tiny test bundle has random weights, so its masks are arbitrary: with it these tests check what must hold
whatever the masks are (which slices and voxels can change, encoder runs). Directions (a positive click adds,
a negative one removes) and the stopping rule are checked with a fake decoder whose answer is known.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from runtime_bundle import cached_bundle

from edge_medsam.cli import main
from edge_medsam.data.synth import generate_volume
from edge_medsam.errors import InputError
from edge_medsam.io import Volume, insert_slice, read_volume, slice_volume, write_nifti
from edge_medsam.runtime import Predictor, VolumeSegmenter
from edge_medsam.runtime.corrections import CorrectionSession, SliceClick, mask_iou
from edge_medsam.runtime.interactor import RuntimeInteractor, SliceFrame
from edge_medsam.runtime.protocol import Click3D, VolumeInteractor
from edge_medsam.runtime.volume import SliceMask

SLICES = 12
SIZE = 64


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.from_bundle(cached_bundle(), backend="onnxruntime", threads=2)


@pytest.fixture(scope="module")
def ct() -> tuple[Volume, np.ndarray]:
    synth = generate_volume(0, size=SIZE, slices=SLICES)
    return Volume(synth.hounsfield.astype(np.float32), synth.affine, hounsfield=True), synth.labels


def voxel_box(truth: np.ndarray, label: int) -> tuple[int, ...]:
    where = np.argwhere(truth == label)
    return (*where.min(axis=0).tolist(), *where.max(axis=0).tolist())


def fake_decoder(segmenter: VolumeSegmenter, calls: list[int], fixed: np.ndarray | None = None):
    """predict_slice of a known model: the box filled, then a disc of radius 3 set (+) or cleared (-) per click;
    with ``fixed``, that mask whatever the prompt."""
    rows, cols = np.mgrid[:segmenter.height, :segmenter.width]

    def decode(index: int, *, box=None, points=None, labels=None, mask_input=None) -> SliceMask:
        calls.append(index)
        mask = np.zeros((segmenter.height, segmenter.width), bool)
        if fixed is not None:
            mask = fixed.copy()
        elif box is not None:
            x0, y0, x1, y1 = (round(float(v)) for v in box)
            mask[y0:y1, x0:x1] = True
        if points is not None and fixed is None:
            for (x, y), label in zip(points, labels, strict=True):
                mask[(rows - y) ** 2 + (cols - x) ** 2 <= 9] = bool(label)
        return SliceMask(mask, 0.9, np.where(mask[::2, ::2], 5.0, -5.0)[None].astype(np.float32), box)

    return decode


def test_voxels_map_to_the_displayed_slices_for_any_orientation() -> None:
    """A voxel marked in the volume is found by SliceFrame where slice_volume shows it, for every permutation and
    flip of the axes of a volume whose sides all differ."""
    shape = (5, 7, 4)
    rng = np.random.default_rng(0)
    for order, signs in itertools.product(itertools.permutations(range(3)), itertools.product((1, -1), repeat=3)):
        affine = np.eye(4)
        affine[:3, :3] = 0
        for axis, (world, sign) in enumerate(zip(order, signs, strict=True)):
            affine[world, axis] = sign * (1.0 + axis)
        frame = SliceFrame(Volume(np.zeros(shape, np.float32), affine))
        for voxel in ((0, 0, 0), (4, 6, 3), tuple(int(rng.integers(n)) for n in shape)):
            marked = np.zeros(shape, np.uint8)
            marked[voxel] = 1
            k, x, y = frame.display(*voxel)
            shown = slice_volume(Volume(marked, affine), 2, voxel[2]).pixels
            assert k == voxel[2] and shown[y, x] == 1, (order, signs, voxel)
        box = frame.box3d((1, 2, 0, 3, 5, 2))
        inside = np.zeros(shape, np.uint8)
        inside[1:4, 2:6, 0:3] = 1
        shown = slice_volume(Volume(inside, affine), 2, 1).pixels
        x0, y0, z0, x1, y1, z1 = (int(v) for v in box)
        assert (z0, z1) == (0, 2) and shown[y0:y1, x0:x1].all() and shown.sum() == (y1 - y0) * (x1 - x0)


def test_a_click_changes_only_its_object_within_its_range(predictor: Predictor, ct: tuple[Volume, np.ndarray]) -> None:
    volume, truth = ct
    interactor = RuntimeInteractor(predictor, modality="ct")
    assert isinstance(interactor, VolumeInteractor)
    interactor.start(volume)
    boxes = {1: voxel_box(truth, 1), 2: voxel_box(truth, 2)}
    before = interactor.step(boxes, [], None)
    assert before.shape == volume.shape and before.dtype == np.uint16 and set(np.unique(before)) <= {0, 1, 2}
    session = interactor.session
    lo, hi = boxes[1][2], boxes[1][5]
    clicks = []
    for positive, (i, j) in ((True, (30, 30)), (False, (20, 40)), (True, (40, 25))):
        clicks.append(Click3D(1, i, j, (lo + hi) // 2 + len(clicks) - 1, positive))
        after = interactor.step(boxes, clicks, before)
        changed = {k for k in range(SLICES) if not np.array_equal(after[..., k], before[..., k])}
        assert changed <= session.changed <= set(range(lo, hi + 1))  # untouched slices are bit-identical
        np.testing.assert_array_equal(after == 2, before == 2)  # the other object keeps every voxel
        before = after
    with pytest.raises(InputError, match="do not extend"):
        interactor.step(boxes, clicks[1:], before)


def test_each_slice_is_encoded_once_across_clicks_and_objects(predictor: Predictor,
                                                              ct: tuple[Volume, np.ndarray]) -> None:
    volume, truth = ct
    runs = predictor.encoder_runs
    interactor = RuntimeInteractor(predictor, modality="ct")
    interactor.start(volume)
    boxes = {label: voxel_box(truth, label) for label in (1, 2, 3)}
    clicks = [Click3D(label, 32, 32, k, k % 2 == 0) for k in range(2, 10) for label in (1, 3)]
    interactor.step(boxes, [], None)
    for n in range(1, len(clicks) + 1, 4):
        interactor.step(boxes, clicks[:n], None)
    segmenter = interactor.session.segmenter
    assert predictor.encoder_runs - runs == segmenter.cache.misses == len(segmenter.cache) <= SLICES
    assert segmenter.cache.hits > segmenter.cache.misses


def test_positive_clicks_add_and_negative_clicks_remove(predictor: Predictor, ct: tuple[Volume, np.ndarray],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    volume, _ = ct
    segmenter = VolumeSegmenter(predictor, volume, modality="ct", margin=0)
    calls: list[int] = []
    monkeypatch.setattr(segmenter, "predict_slice", fake_decoder(segmenter, calls))
    session = CorrectionSession(segmenter)
    session.add_box(1, [10, 10, 3, 30, 30, 8])
    assert session.plane(5)[20, 20] == 1 and session.plane(5)[40, 45] == 0
    session.add_click(SliceClick(1, 5, 45, 40, True))  # outside the box: the object grows there
    assert session.plane(5)[40, 45] == 1
    session.add_click(SliceClick(1, 5, 20, 20, False))  # inside: removed there
    assert session.plane(5)[20, 20] == 0 and session.plane(5)[15, 15] == 1
    assert session.changed <= set(range(3, 9))  # carried no further than the box's slices


def test_a_correction_stops_where_a_slice_no_longer_changes(predictor: Predictor, ct: tuple[Volume, np.ndarray],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    volume, _ = ct
    segmenter = VolumeSegmenter(predictor, volume, modality="ct", margin=0)
    fixed = np.zeros((SIZE, SIZE), bool)
    fixed[10:30, 10:30] = True
    calls: list[int] = []
    monkeypatch.setattr(segmenter, "predict_slice", fake_decoder(segmenter, calls, fixed))
    session = CorrectionSession(segmenter)
    session.add_box(1, [10, 10, 2, 30, 30, 9])
    before = session.labels.copy()
    calls.clear()
    assert session.add_click(SliceClick(1, 6, 20, 20, True)) == {6}
    assert calls == [6, 7, 5]  # the clicked slice, then one neighbour each way: unchanged, so the walk stops
    np.testing.assert_array_equal(session.labels, before)
    assert mask_iou(np.zeros(3, bool), np.zeros(3, bool)) == 1.0


def test_corrections_never_take_another_objects_voxels(predictor: Predictor, ct: tuple[Volume, np.ndarray],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A previous label volume to start from; object 1's positive click over object 2 leaves object 2 whole."""
    volume, _ = ct
    segmenter = VolumeSegmenter(predictor, volume, modality="ct", margin=0)
    calls: list[int] = []
    monkeypatch.setattr(segmenter, "predict_slice", fake_decoder(segmenter, calls))
    start = np.zeros(volume.shape, np.uint16)
    plane = np.zeros((SIZE, SIZE), np.uint16)
    plane[10:30, 10:30] = 1
    plane[30:40, 10:30] = 2
    for k in range(3, 9):
        insert_slice(start, plane, volume, "axial", k)
    session = CorrectionSession(segmenter, labels=start)
    assert sorted(session.objects) == [1, 2]
    session.add_click(SliceClick(1, 5, 20, 34, True))  # on object 2's voxels
    assert session.plane(5)[34, 20] == 2 and calls == [5, 6, 4]  # its neighbours did not change: the walk stopped
    np.testing.assert_array_equal(session.labels, start)


def test_predict_with_3d_clicks_end_to_end(predictor: Predictor, ct: tuple[Volume, np.ndarray], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    volume, truth = ct
    source = tmp_path / "ct.nii.gz"
    write_nifti(source, volume.voxels.astype(np.int16), volume.affine)
    box = SliceFrame(read_volume(source)).box3d(voxel_box(truth, 1))
    common = [str(source), "--bundle", str(cached_bundle()), "--modality", "ct", "--backend", "onnxruntime",
              "--box3d", *(f"{v:g}" for v in box)]
    code = main(["predict", *common, "--out", str(tmp_path / "boxed")])
    assert code == 0
    code = main(["predict", *common, "--out", str(tmp_path / "clicked"), "--click3d", "1,30,30,6,+",
                 "--click3d", "2,20,20,6,+"])
    out = capsys.readouterr().out
    record = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    assert code == 0 and record["kind"] == "3d" and [o["label"] for o in record["objects"]] == [1, 2]
    assert [o["clicks"] for o in record["objects"]] == [1, 1] and record["encoder_runs"] <= SLICES
    clicked = read_volume(tmp_path / "clicked" / "ct_seg.nii.gz").voxels
    boxed = read_volume(tmp_path / "boxed" / "ct_seg.nii.gz").voxels
    assert clicked.shape == boxed.shape == volume.shape and set(np.unique(clicked)) <= {0, 1, 2}
    code = main(["predict", *common, "--out", str(tmp_path / "bad"), "--click3d", "1,30,30"])
    assert code == 1 and "is not label,i,j,k,+|-" in capsys.readouterr().err


def test_undo_takes_back_clicks_boxes_and_slices(predictor: Predictor, ct: tuple[Volume, np.ndarray],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    volume, _ = ct
    segmenter = VolumeSegmenter(predictor, volume, modality="ct", margin=0)
    calls: list[int] = []
    monkeypatch.setattr(segmenter, "predict_slice", fake_decoder(segmenter, calls))
    session = CorrectionSession(segmenter)
    empty = session.labels.copy()
    session.add_box(1, [10, 10, 3, 30, 30, 8])
    boxed = session.labels.copy()
    first = segmenter.predict_slice(2, box=np.array([40, 40, 50, 50], np.float32))
    assert session.add_slice(2, 2, first) == set(range(SLICES))  # followed through every slice: the fake never ends
    sliced = session.labels.copy()
    session.add_click(SliceClick(1, 5, 45, 20, True))
    assert not np.array_equal(session.labels, sliced)
    for state in (sliced, boxed, empty):
        assert session.undo()
        np.testing.assert_array_equal(session.labels, state)
    assert not session.undo() and session.objects == {}


@pytest.mark.parametrize("propagation", ["box", "mask"])
def test_propagation_carries_the_neighbour_s_logits_only_in_mask_mode(predictor: Predictor,
                                                                    ct: tuple[Volume, np.ndarray],
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    propagation: str) -> None:
    volume, _ = ct
    segmenter = VolumeSegmenter(predictor, volume, modality="ct", propagation=propagation)
    given: dict[int, np.ndarray | None] = {}
    mask = np.zeros((SIZE, SIZE), bool)
    mask[20:30, 20:30] = True

    def decode(index: int, *, box=None, points=None, labels=None, mask_input=None) -> SliceMask:
        given[index] = mask_input
        return SliceMask(mask, 0.9, np.full((1, 8, 8), float(index), np.float32), box)

    monkeypatch.setattr(segmenter, "predict_slice", decode)
    assert sorted(segmenter.segment_box3d([15, 15, 2, 35, 35, 6])) == [2, 3, 4, 5, 6]
    assert given[4] is None  # the middle slice starts from the box alone
    for index, neighbour in ((5, 4), (6, 5), (3, 4), (2, 3)):
        if propagation == "mask":
            np.testing.assert_array_equal(given[index], np.full((1, 8, 8), float(neighbour), np.float32))
        else:
            assert given[index] is None
    with pytest.raises(InputError, match="unknown propagation"):
        VolumeSegmenter(predictor, volume, modality="ct", propagation="memory")


def test_the_interactor_starts_from_a_previous_prediction(predictor: Predictor, ct: tuple[Volume, np.ndarray]) -> None:
    volume, truth = ct
    interactor = RuntimeInteractor(predictor, modality="ct")
    interactor.start(volume)
    previous = np.where(np.isin(truth, (1, 2)), truth, 0).astype(np.uint16)
    np.testing.assert_array_equal(interactor.step({}, [], previous), previous)
    k = int(np.flatnonzero((previous == 1).any(axis=(0, 1)))[3])
    i, j = np.argwhere(previous[..., k] == 1)[0]
    after = interactor.step({}, [Click3D(1, int(i), int(j), k, False)], previous)
    assert ((after == 1) <= (previous == 1)).all()  # a negative click only removes
    np.testing.assert_array_equal(after == 2, previous == 2)
    interactor.start(volume)  # a new case forgets the previous one
    assert not interactor.step({}, [], None).any()
