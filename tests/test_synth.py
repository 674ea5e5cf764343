"""Synthetic corpus: determinism, style shift, promised objects, Hounsfield units, instances, volumes, files."""

import json

import numpy as np
import pytest
from PIL import Image

from edge_medsam import InputError
from edge_medsam.data.synth import (
    HU_OFFSET,
    SYNTH_MODALITIES,
    generate_sample,
    generate_volume,
    write_corpus,
)
from edge_medsam.data.synth import corpus as corpus_module
from edge_medsam.data.synth.scene import KINDS
from edge_medsam.io import read_mask
from edge_medsam.modalities import get_modality

MODALITIES = list(SYNTH_MODALITIES)
REQUIRED = {"ct", "mr", "ultrasound", "xray", "dermoscopy", "endoscopy", "fundus", "microscopy"}


def test_at_least_the_eight_required_modalities():
    assert set(MODALITIES) >= REQUIRED
    assert all(get_modality(name).name == name for name in MODALITIES)


@pytest.mark.parametrize("modality", MODALITIES)
def test_same_seed_same_sample_other_seed_other_sample(modality):
    first, again, other = (generate_sample(modality, seed, 96) for seed in (5, 5, 6))
    assert np.array_equal(first.pixels, again.pixels) and np.array_equal(first.labels, again.labels)
    assert first.objects == again.objects
    assert not np.array_equal(first.pixels, other.pixels)
    assert not np.array_equal(first.labels, other.labels)


def test_seed_sequence_and_generator_seeds():
    seq = np.random.SeedSequence(11)
    assert np.array_equal(generate_sample("mr", seq, 64).pixels, generate_sample("mr", seq, 64).pixels)
    a = generate_sample("mr", np.random.default_rng(3), 64)
    b = generate_sample("mr", np.random.default_rng(3), 64)
    assert np.array_equal(a.pixels, b.pixels)


@pytest.mark.parametrize("modality", MODALITIES)
def test_style_shift_keeps_the_anatomy_and_changes_the_look(modality):
    plain = generate_sample(modality, 21, 96)
    shifted = generate_sample(modality, 21, 96, style_shift=True)
    assert np.array_equal(plain.labels, shifted.labels)
    assert plain.objects == shifted.objects
    assert plain.pixels.shape == shifted.pixels.shape and plain.pixels.dtype == shifted.pixels.dtype
    changed = np.abs(plain.pixels.astype(np.float64) - shifted.pixels.astype(np.float64))
    assert changed.mean() > (5.0 if plain.hounsfield else 2.0)


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_sample_holds_the_objects_its_modality_promises(modality, seed):
    entry = SYNTH_MODALITIES[modality]
    sample = generate_sample(modality, seed, 128, style_shift=bool(seed % 2))
    names = [obj.name for obj in sample.objects]
    assert set(entry.always) <= set(names)
    assert set(names) <= set(entry.always) | set(entry.sometimes)
    assert [obj.label for obj in sample.objects] == list(range(1, len(names) + 1))
    assert all(obj.kind in KINDS for obj in sample.objects)
    areas = np.bincount(sample.labels.ravel(), minlength=len(names) + 1)
    assert len(areas) == len(names) + 1
    assert [obj.area for obj in sample.objects] == areas[1:].tolist()
    assert sample.labels.shape == (128, 128) and sample.labels.dtype in (np.uint8, np.uint16)
    colour = get_modality(modality).colour
    assert sample.pixels.shape == ((128, 128, 3) if colour else (128, 128))
    assert sample.pixels.dtype == (np.int16 if sample.hounsfield else np.uint8)
    assert sample.hounsfield == (modality == "ct") and sample.modality == modality


def test_several_objects_small_and_large_across_the_corpus():
    for modality in MODALITIES:
        samples = [generate_sample(modality, seed, 256) for seed in range(4)]
        assert max(len(s.objects) for s in samples) >= 2, modality
        fraction = min(obj.area for s in samples for obj in s.objects) / 256**2
        assert fraction < 0.01, f"{modality}: no small target"


def test_ct_is_in_hounsfield_units():
    sample = generate_sample("ct", 4, 256)
    hu = sample.pixels.astype(np.float64)
    assert abs(np.median(hu[:12, :12]) + 1000) < 30  # air outside the body
    mask = {obj.name: sample.labels == obj.label for obj in sample.objects}
    liver = np.median(hu[mask["liver"]])
    assert 60 < liver < 160
    assert np.percentile(hu[mask["vertebra"]], 90) > 600  # bone
    lesion = next(obj for obj in sample.objects if obj.name == "lesion")
    contrast = liver - np.median(hu[sample.labels == lesion.label])
    assert 10 < contrast < 70  # a low-contrast lesion: a few tens of HU
    fat = np.median(hu[(hu > -200) & (hu < -50)])
    assert -130 < fat < -70


def test_microscopy_nuclei_are_touching_instances():
    sample = generate_sample("microscopy", 2, 256)
    assert len(sample.objects) >= 30
    assert {obj.name for obj in sample.objects} == {"nucleus"} and {obj.kind for obj in sample.objects} == {"instance"}
    labels = sample.labels.astype(np.int64)
    right, down = (labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])
    touching = sum(int(((a > 0) & (b > 0) & (a != b)).sum()) for a, b in (right, down))
    assert touching > 50


def test_more_than_255_instances_use_16_bit_labels():
    for seed in range(40):
        sample = generate_sample("microscopy", seed, 128)
        if len(sample.objects) > 255:
            assert sample.labels.dtype == np.uint16 and int(sample.labels.max()) == len(sample.objects)
            return
    pytest.fail("no microscopy sample with more than 255 nuclei in 40 seeds")


def test_ct_volume_is_consistent_across_slices():
    volume = generate_volume(1, size=64, slices=16)
    assert volume.hounsfield.shape == volume.labels.shape == (64, 64, 16)
    assert volume.hounsfield.dtype == np.int16 and volume.labels.dtype == np.uint8
    assert abs(np.median(volume.hounsfield[:4, :4, :]) + 1000) < 30
    spacing = volume.spacing
    assert spacing[0] == spacing[1] and 2.0 < spacing[2] <= 10.0
    assert np.sign(np.diag(volume.affine)[:3]).tolist() == [-1.0, -1.0, 1.0]  # LPS-ordered voxels, RAS+ affine
    areas = np.bincount(volume.labels.ravel(), minlength=len(volume.objects) + 1)
    assert [obj.area for obj in volume.objects] == areas[1:].tolist()
    for obj in volume.objects:  # ellipsoids: every object fills one unbroken run of slices
        slices = np.flatnonzero((volume.labels == obj.label).any(axis=(0, 1)))
        assert slices.tolist() == list(range(slices[0], slices[-1] + 1)), obj
    liver = next(obj for obj in volume.objects if obj.name == "liver")
    assert ((volume.labels == liver.label).sum(axis=(0, 1)) > 0).sum() >= 4


def test_style_shifted_volume_keeps_its_labels():
    plain, shifted = generate_volume(2, 48, 6), generate_volume(2, 48, 6, style_shift=True)
    assert np.array_equal(plain.labels, shifted.labels)
    assert not np.array_equal(plain.hounsfield, shifted.hounsfield)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: generate_sample("nope", 0), "unknown modality"),
    (lambda: generate_sample("ct", 0, size=8), "size"),
    (lambda: generate_sample("ct", -1), "seed"),
    (lambda: generate_volume(0, 64, slices=0), "slice count"),
    (lambda: write_corpus("unused", per_modality=-1), "per-modality"),
    (lambda: write_corpus("unused", seed=-3), "seed"),
    (lambda: write_corpus("unused", modalities=["ct", "nope"]), "unknown modality"),
])
def test_bad_arguments_raise_input_errors(call, message):
    with pytest.raises(InputError, match=message):
        call()


def _corpus(path, **overrides):
    options = {"per_modality": 2, "size": 64, "seed": 9, "modalities": ["ct", "microscopy", "fundus"],
               "volumes": 1, "volume_slices": 4}
    return write_corpus(path, **{**options, **overrides})


def test_write_corpus_layout_and_manifest(tmp_path):
    manifest_path = _corpus(tmp_path / "corpus")
    root = manifest_path.parent
    manifest = json.loads(manifest_path.read_text())
    assert manifest["format"] == "edge-medsam-corpus" and manifest["version"] == 1
    assert manifest["generator"].startswith("edge_medsam.data.synth ")
    assert (manifest["seed"], manifest["size"], manifest["style_shift"]) == (9, 64, False)
    assert manifest["modalities"] == ["ct", "microscopy", "fundus"]
    assert [s["id"] for s in manifest["samples"]] == [f"{m}_{i:04d}" for m in manifest["modalities"] for i in range(2)]
    for entry in manifest["samples"]:
        modality = entry["modality"]
        assert entry["image"] == f"images/{modality}/{entry['id']}.png"
        assert entry["mask"] == f"masks/{modality}/{entry['id']}.png"
        labels = read_mask(root / entry["mask"])
        areas = np.bincount(labels.ravel(), minlength=len(entry["objects"]) + 1)[1:].tolist()
        assert [o["area"] for o in entry["objects"]] == areas
        assert all(set(o) == {"label", "name", "kind", "area"} for o in entry["objects"])
        picture = Image.open(root / entry["image"])
        if modality == "ct":
            assert entry["intensity"] == {"units": "HU", "offset": HU_OFFSET}
            hu = np.asarray(picture).astype(np.int32) + HU_OFFSET
            assert picture.mode.startswith("I") and abs(np.median(hu[:4, :4]) + 1000) < 30
        else:
            assert "intensity" not in entry
            assert picture.mode == ("RGB" if get_modality(modality).colour else "L")
    (volume,) = manifest["volumes"]
    assert volume["image"] == "volumes/ct/ct_vol_000.nii.gz"
    assert volume["labels"] == "volumes/ct/ct_vol_000_labels.nii.gz"
    nibabel = pytest.importorskip("nibabel")
    image, labels = nibabel.load(root / volume["image"]), nibabel.load(root / volume["labels"])
    assert image.get_data_dtype() == np.int16 and image.shape == labels.shape == (64, 64, 4)
    assert np.allclose(image.affine, labels.affine)
    voxels = np.bincount(np.asarray(labels.dataobj).ravel(), minlength=len(volume["objects"]) + 1)[1:].tolist()
    assert [o["voxels"] for o in volume["objects"]] == voxels
    assert not list(root.rglob(".tmp-*"))


def test_write_corpus_is_byte_identical_on_rerun_and_skips_a_finished_corpus(tmp_path):
    first, second = _corpus(tmp_path / "a").parent, _corpus(tmp_path / "b").parent
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    stamps = {f: (first / f).stat().st_mtime_ns for f in files}
    _corpus(tmp_path / "a")
    assert stamps == {f: (first / f).stat().st_mtime_ns for f in files}


def test_a_smaller_corpus_removes_files_it_does_not_list(tmp_path):
    root = _corpus(tmp_path / "c").parent
    (root / "images" / "ct" / "keep_me.png").write_bytes(b"not ours")
    _corpus(tmp_path / "c", per_modality=1, modalities=["ct"], volumes=0)
    assert sorted(p.name for p in (root / "images" / "ct").iterdir()) == ["ct_0000.png", "keep_me.png"]
    assert not (root / "images" / "fundus").exists() or not any((root / "images" / "fundus").iterdir())
    assert not any((root / "volumes" / "ct").iterdir())


def test_an_interrupted_run_leaves_no_manifest(tmp_path, monkeypatch):
    root = _corpus(tmp_path / "d").parent
    calls = []

    def failing(*args, **kwargs):
        calls.append(args)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return generate_sample(*args, **kwargs)

    monkeypatch.setattr(corpus_module, "generate_sample", failing)
    with pytest.raises(KeyboardInterrupt):
        _corpus(tmp_path / "d", seed=10)
    assert not (root / "manifest.json").exists()
