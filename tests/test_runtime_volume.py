"""Volumes in the runtime: 3D box propagation, slice prompts, self-prompted volumes and the embedding cache.

The test bundle has random weights, so what the masks cover is arbitrary: these tests check the mechanics
(which slices are visited, when propagation stops, how often the encoder runs, the label volume's grid).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from runtime_bundle import cached_bundle

from edge_medsam.data.synth import generate_volume
from edge_medsam.errors import InputError
from edge_medsam.io import Volume, read_laptop_npz, read_volume, slice_volume, write_nifti
from edge_medsam.runtime import Predictor, SlicePrompt, VolumeSegmenter
from edge_medsam.runtime.volume import EmbeddingCache, SliceMask

SLICES = 12


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.from_bundle(cached_bundle(), backend="onnxruntime", threads=2)


@pytest.fixture(scope="module")
def ct(tmp_path_factory: pytest.TempPathFactory) -> tuple[Volume, np.ndarray]:
    """A synthetic CT read back from NIfTI (Hounsfield units, nothing declares the modality) and its labels."""
    synth = generate_volume(0, size=64, slices=SLICES)
    path = tmp_path_factory.mktemp("ct") / "ct.nii.gz"
    write_nifti(path, synth.hounsfield, synth.affine)
    return read_volume(path), synth.labels


def display_box3d(volume: Volume, labels: np.ndarray, label: int) -> list[float]:
    """The MedSAM-on-Laptop box of one label in display pixels and axial slice indices."""
    grid = Volume(labels, volume.affine)
    planes = [slice_volume(grid, "axial", k).pixels == label for k in range(SLICES)]
    ks = [k for k, plane in enumerate(planes) if plane.any()]
    union = np.any(planes, axis=0)
    rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(ks[0]), float(cols[-1] + 1), float(rows[-1] + 1), float(ks[-1])]


def labelled_slices(volume: Volume, labels: np.ndarray, label: int) -> list[int]:
    grid = Volume(labels, volume.affine)
    return [k for k in range(SLICES) if (slice_volume(grid, "axial", k).pixels == label).any()]


def test_box3d_propagates_within_its_slices(predictor: Predictor, ct: tuple[Volume, np.ndarray]) -> None:
    volume, truth = ct
    box = display_box3d(volume, truth, 1)  # the liver: slices 3..11
    runs = predictor.encoder_runs
    segmenter = VolumeSegmenter(predictor, volume, modality="ct")
    result = segmenter.segment([box])
    z0, z1 = int(box[2]), int(box[5])
    assert result.labels.shape == volume.shape and result.labels.dtype == np.uint16
    found = labelled_slices(volume, result.labels, 1)
    middle = (z0 + z1) // 2
    assert middle in found and set(found) <= set(range(z0, z1 + 1))
    assert found == list(range(found[0], found[-1] + 1))  # propagation is slice by slice, without gaps
    assert result.objects[0].slices == found and result.objects[0].voxels == int((result.labels == 1).sum())
    assert result.modality == "ct" and result.modality_source == "given"
    # Every visited slice was encoded exactly once.
    assert result.encoder_runs == predictor.encoder_runs - runs == result.cache_misses <= z1 - z0 + 1
    assert {"encoder", "decoder", "preprocess"} <= set(result.latency_ms)


def test_objects_share_the_embedding_cache(predictor: Predictor, ct: tuple[Volume, np.ndarray]) -> None:
    volume, truth = ct
    boxes = [display_box3d(volume, truth, label) for label in (1, 2, 3)]  # liver, stomach, spleen overlap in z
    segmenter = VolumeSegmenter(predictor, volume, modality="ct")
    result = segmenter.segment(boxes)
    visited = set()
    for obj in result.objects:
        visited |= set(obj.slices)
    assert result.cache_hits > 0
    assert result.encoder_runs == result.cache_misses == len(segmenter.cache) <= SLICES
    assert [o.label for o in result.objects] == [1, 2, 3]
    assert set(np.unique(result.labels)) <= {0, 1, 2, 3}


def test_propagation_stops_at_an_empty_slice(predictor: Predictor, ct: tuple[Volume, np.ndarray],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    volume, _ = ct
    segmenter = VolumeSegmenter(predictor, volume, modality="ct")
    asked = []
    blob = np.zeros((segmenter.height, segmenter.width), bool)
    blob[20:30, 20:30] = True

    def fake(index: int, **prompt: np.ndarray) -> SliceMask:
        asked.append((index, prompt.get("box")))
        return SliceMask(blob if 4 <= index <= 7 else np.zeros_like(blob), 0.5, np.zeros((1, 16, 16), np.float32))

    monkeypatch.setattr(segmenter, "predict_slice", fake)
    found = segmenter.segment_box3d([15, 15, 0, 35, 35, SLICES - 1])
    assert sorted(found) == [4, 5, 6, 7]
    assert [i for i, _ in asked] == [5, 6, 7, 8, 4, 3]  # middle, up until empty, then down until empty
    np.testing.assert_array_equal(asked[1][1], [17, 17, 33, 33])  # the mask's box grown by 3 pixels


def test_points_on_a_slice_propagate_through_the_volume(predictor: Predictor, ct: tuple[Volume, np.ndarray]) -> None:
    volume, _ = ct
    segmenter = VolumeSegmenter(predictor, volume, modality="auto")
    assert segmenter.plan.rule.name == "ct" and segmenter.plan.hounsfield  # Hounsfield units recognised as CT
    assert segmenter.plan.source == "model" and segmenter.plan.index >= 0  # the model named it on slice 6
    result = segmenter.segment(slice_prompts=[SlicePrompt(8, np.array([[30.0, 32.0]]), np.array([1]))])
    assert 8 in result.objects[0].slices and result.objects[0].prompt == "points"
    assert result.encoder_runs == result.cache_misses


def test_self_prompted_volume_encodes_each_slice_once(predictor: Predictor, ct: tuple[Volume, np.ndarray]) -> None:
    volume, _ = ct
    segmenter = VolumeSegmenter(predictor, volume, modality="auto")
    result = segmenter.segment()
    assert result.encoder_runs == SLICES and result.cache_hits >= 1  # the recognition slice was reused
    assert result.objects[0].prompt == "auto" and set(np.unique(result.labels)) <= {0, 1}
    again = segmenter.segment()
    assert again.encoder_runs == SLICES  # nothing more encoded: every slice came from the cache


def test_bad_3d_boxes_are_refused(predictor: Predictor, ct: tuple[Volume, np.ndarray]) -> None:
    volume, _ = ct
    segmenter = VolumeSegmenter(predictor, volume, modality="ct")
    with pytest.raises(InputError, match=r"outside the volume's slices 0\.\.11") as err:
        segmenter.segment([[0, 0, 0, 10, 10, 40]])
    assert str(volume.path) in str(err.value)
    with pytest.raises(InputError, match=r"3D box .* outside the 64x64 image"):
        segmenter.segment([[0, 0, 2, 100, 10, 4]])
    with pytest.raises(InputError, match="z_max below z_min"):
        segmenter.segment([[0, 0, 5, 10, 10, 2]])


def test_challenge_boxes_index_the_case_arrays(predictor: Predictor, tmp_path: Path) -> None:
    """A 3D .npz case's box [x, y, z] addresses imgs[z, y, x]: the displayed slice z is imgs[z]."""
    imgs = np.random.default_rng(0).integers(0, 255, (5, 30, 40), dtype=np.uint8)
    np.savez_compressed(tmp_path / "3DBox_MR_0001.npz", imgs=imgs, boxes=np.array([[2, 3, 1, 20, 25, 3]]))
    volume = read_laptop_npz(tmp_path / "3DBox_MR_0001.npz").to_volume()
    segmenter = VolumeSegmenter(predictor, volume)
    assert segmenter.plan.source == "file" and segmenter.plan.rule.name == "mr"
    for k in range(5):
        np.testing.assert_array_equal(segmenter.slice_image(k).pixels, imgs[k])
    labels = segmenter.segment([[2, 3, 1, 20, 25, 3]]).labels.transpose(2, 1, 0)  # back to the case's (z, y, x)
    assert labels[0].max() == 0 and labels[4].max() == 0


def test_lru_cache_evicts_the_least_recently_used() -> None:
    cache = EmbeddingCache(2)
    made = []

    def make(key: int):
        return lambda: made.append(key) or key

    for key in (1, 2, 1, 3, 2):
        cache.get(key, make(key))
    assert made == [1, 2, 3, 2] and (cache.hits, cache.misses) == (1, 4) and len(cache) == 2
    with pytest.raises(InputError):
        EmbeddingCache(0)


def test_label_volume_keeps_the_source_grid(predictor: Predictor, ct: tuple[Volume, np.ndarray],
                                            tmp_path: Path) -> None:
    from edge_medsam.io import write_nifti_labels

    volume, truth = ct
    result = VolumeSegmenter(predictor, volume, modality="ct").segment([display_box3d(volume, truth, 8)])
    written = read_volume(write_nifti_labels(tmp_path / "seg.nii.gz", result.labels, volume))
    np.testing.assert_allclose(written.affine, volume.affine)
    np.testing.assert_array_equal(written.voxels, result.labels)
