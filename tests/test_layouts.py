"""Dataset layouts: detection, sample discovery, modality resolution, loading, reporting and splits."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from edge_medsam.data.layouts import (
    Sample,
    detect_layout,
    load_sample,
    modality_from_name,
    npz_shapes,
    open_dataset,
    split_samples,
    through_plane_axis,
)
from edge_medsam.errors import InputError


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _picture(seed: int, shape=(12, 16)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def _mask(shape=(12, 16), value=1) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[3:8, 4:10] = value
    return mask


def _nifti(path: Path, data: np.ndarray, spacing=(1.0, 1.0, 3.0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.Nifti1Image(data, np.diag([*spacing, 1.0])).to_filename(path)
    return path


def _reasons(dataset) -> dict[str, str]:
    return {s.path.name: s.reason for s in dataset.skipped}


# ------------------------------------------------------------------------------------------ names and detection


@pytest.mark.parametrize(("name", "expected"), [
    ("ct_00", "ct"), ("mr_t1", "mr"), ("mr_t2w", "mr"), ("x_ray", "xray"), ("ultrasound_00", "ultrasound"),
    ("dermoscopy_00", "dermoscopy"), ("endoscopy_00", "endoscopy"), ("fundus_photography", "fundus"),
    ("pet_00", "pet"), ("CT_AbdTumor_case01", "ct"), ("MR_Brain", "mr"), ("US_Breast", "ultrasound"),
    ("XRay_Chest", "xray"), ("Dermoscopy_ISIC", "dermoscopy"), ("Endoscopy_Kvasir", "endoscopy"),
    ("Fundus_REFUGE", "fundus"), ("Microscopy_Cells", "microscopy"), ("Microscope_NeurIPS", "microscopy"),
    ("OCT_Retina", "oct"), ("MammoCBIS", "mammography"), ("Mammo_INbreast", "mammography"), ("PET_Lymph", "pet"),
    ("2DBox_CXR_demo", "xray"), ("3DBox_MR_demo", "mr"), ("T2", "mr"), ("ct", "ct"), ("Fundus", "fundus"),
])
def test_modality_names_used_by_datasets_resolve(name, expected):
    assert modality_from_name(name).name == expected


@pytest.mark.parametrize("name", ["train", "images", "amos_0004_75", "endometrium", "weird_00", "case01"])
def test_names_that_are_not_modalities_do_not_resolve(name):
    assert modality_from_name(name) is None


def test_no_known_layout_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(InputError, match="no known dataset layout") as err:
        detect_layout(tmp_path)
    assert str(tmp_path) in str(err.value) and "imagesTr" in str(err.value) and "images/ + masks/" in str(err.value)
    with pytest.raises(InputError, match="does not exist"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(InputError, match="unknown layout"):
        open_dataset(tmp_path, layout="coco")


def test_through_plane_axis():
    assert through_plane_axis(np.diag([0.8, 0.8, 5.0, 1.0]), (64, 64, 20)) == 2
    assert through_plane_axis(np.diag([4.0, 0.7, 0.7, 1.0]), (20, 64, 64)) == 0
    assert through_plane_axis(np.diag([1.0, 1.0, 1.0, 1.0]), (30, 30, 30)) == 2  # isotropic: the axial axis
    rotated = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], float)  # j runs along z
    assert through_plane_axis(rotated, (30, 30, 30)) == 1
    assert through_plane_axis(np.eye(4), (30, 1, 30)) == 1


# ------------------------------------------------------------------------------------------ folder pairs


def _folder_pairs(root: Path) -> Path:
    _png(root / "images/ct/a.png", _picture(0))
    _png(root / "masks/ct/a.png", _mask())
    _png(root / "images/ct/b.png", _picture(1))
    _png(root / "masks/ct/b_mask.png", _mask(value=255))  # a mask-ish name ending pairs too
    _png(root / "images/mr/c.png", _picture(2))
    _png(root / "masks/mr/c.png", _mask(value=2))
    _png(root / "images/mr/unpaired.png", _picture(3))
    _png(root / "masks/mr/orphan.png", _mask())
    (root / "images/ct/readme.txt").write_text("not an image")
    return root


def test_folder_pairs_counts_modalities_and_reports_unpaired_files(tmp_path):
    dataset = open_dataset(_folder_pairs(tmp_path))
    assert dataset.layout == "folder_pairs"
    assert dataset.counts() == {"ct": 2, "mr": 1}
    assert sorted(s.id for s in dataset) == ["ct/a", "ct/b", "mr/c"]
    assert next(s for s in dataset if s.id == "ct/b").mask.name == "b_mask.png"
    reasons = _reasons(dataset)
    assert set(reasons) == {"unpaired.png", "orphan.png", "readme.txt"}
    assert "no mask" in reasons["unpaired.png"] and "without an image" in reasons["orphan.png"]
    assert "not a supported image type" in reasons["readme.txt"]
    summary = dataset.summary()
    assert "folder_pairs layout, 3 samples" in summary and "skipped 3 files" in summary and "ct" in summary


def test_folder_pairs_keep_unpaired_images_when_asked(tmp_path):
    dataset = open_dataset(_folder_pairs(tmp_path), require_masks=False)
    unpaired = next(s for s in dataset if s.id == "mr/unpaired")
    assert unpaired.mask is None
    image, labels, modality = load_sample(unpaired)
    assert labels is None and modality.name == "mr" and image.shape == (12, 16)


def test_folder_pairs_with_flat_masks_folder_match_by_name(tmp_path):
    _png(tmp_path / "images/dermoscopy/lesion1.png", _picture(0))
    _png(tmp_path / "masks/lesion1.png", _mask())
    dataset = open_dataset(tmp_path)
    assert dataset.counts() == {"dermoscopy": 1} and not dataset.skipped


def test_folder_pairs_modality_from_the_argument_or_a_clear_error(tmp_path):
    _png(tmp_path / "images/x1.png", _picture(0))
    _png(tmp_path / "masks/x1.png", _mask())
    with pytest.raises(InputError, match="cannot tell the modality") as err:
        open_dataset(tmp_path)
    assert str(tmp_path / "images") in str(err.value) and "ct, mr, pet" in str(err.value)
    assert open_dataset(tmp_path, modality="ultrasound").counts() == {"ultrasound": 1}
    assert open_dataset(tmp_path, modality=3).counts() == {"xray": 1}
    with pytest.raises(InputError, match="unknown modality 'sonar'") as err:
        open_dataset(tmp_path, modality="sonar")
    assert "mammography" in str(err.value)


def test_unknown_modality_folder_is_named_in_the_error(tmp_path):
    _png(tmp_path / "images/foo/x1.png", _picture(0))
    _png(tmp_path / "masks/foo/x1.png", _mask())
    with pytest.raises(InputError, match="sub-folder 'foo'") as err:
        open_dataset(tmp_path)
    assert str(tmp_path / "images" / "foo") in str(err.value) and "dermoscopy" in str(err.value)


def test_folder_pairs_load_and_mask_shape_mismatch_names_both_files(tmp_path):
    dataset = open_dataset(_folder_pairs(tmp_path))
    sample = next(s for s in dataset if s.id == "ct/b")
    image, labels, modality = load_sample(sample)
    assert modality.name == "ct" and image.shape == (12, 16)
    assert labels.dtype == np.int32 and set(np.unique(labels)) == {0, 1}  # 0/255 mask became 0/1
    _png(tmp_path / "masks/ct/a.png", _mask(shape=(10, 16)))
    with pytest.raises(InputError) as err:
        load_sample(next(s for s in dataset if s.id == "ct/a"))
    message = str(err.value)
    assert "masks/ct/a.png" in message and "images/ct/a.png" in message and "16x10" in message


def test_corrupt_files_are_reported_by_verification_and_the_rest_loads(tmp_path):
    _folder_pairs(tmp_path)
    (tmp_path / "images/ct/a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)  # truncated
    dataset = open_dataset(tmp_path)
    checked = dataset.verified()
    assert len(checked) == len(dataset) - 1
    assert checked.counts() == {"ct": 1, "mr": 1}
    bad = [s for s in checked.skipped if s.path.name == "a.png"]
    assert bad and "images/ct/a.png" in str(bad[0].path)


# ------------------------------------------------------------------------------------------ corpus manifest


def _corpus(root: Path) -> Path:
    hu = np.full((12, 16), -1000, np.int32)
    hu[2:10, 2:14] = 40
    hu[4:6, 5:7] = 300
    _png(root / "images/ct/ct_000.png", (hu + 1024).astype(np.uint16))
    _png(root / "masks/ct/ct_000.png", _mask(value=2))
    _png(root / "images/fundus/fundus_000.png", np.zeros((12, 16, 3), np.uint8))
    _png(root / "masks/fundus/fundus_000.png", _mask())
    volume = np.full((6, 7, 4), -1000, np.int16)
    labels = np.zeros((6, 7, 4), np.uint8)
    labels[2:4, 2:5, 1:3] = 1
    _nifti(root / "volumes/ct_vol_000.nii.gz", volume)
    _nifti(root / "volumes/ct_vol_000_labels.nii.gz", labels)
    manifest = {
        "format": "edge-medsam-corpus",
        "samples": [
            {"id": "ct_000", "modality": "ct", "image": "images/ct/ct_000.png", "mask": "masks/ct/ct_000.png",
             "objects": ["liver", "lesion"], "intensity": {"units": "HU", "offset": -1024}},
            {"id": "fundus_000", "modality": "fundus", "image": "images/fundus/fundus_000.png",
             "mask": "masks/fundus/fundus_000.png", "objects": [{"label": 1, "name": "optic disc"}]},
            {"id": "gone", "modality": "mr", "image": "images/mr/gone.png", "mask": "masks/mr/gone.png"},
        ],
        "volumes": [{"id": "ct_vol_000", "modality": "ct", "image": "volumes/ct_vol_000.nii.gz",
                     "mask": "volumes/ct_vol_000_labels.nii.gz", "intensity": {"units": "HU"}}],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_corpus_manifest_gives_modality_objects_and_hounsfield_offset(tmp_path):
    dataset = open_dataset(_corpus(tmp_path))
    assert dataset.layout == "folder_pairs" and dataset.counts() == {"ct": 1, "fundus": 1}
    ct = next(s for s in dataset if s.id == "ct_000")
    assert ct.hounsfield_offset == -1024 and dict(ct.objects) == {1: "liver", 2: "lesion"}
    assert next(s for s in dataset if s.id == "fundus_000").objects == {1: "optic disc"}
    assert "gone.png" in _reasons(dataset)
    image, labels, modality = load_sample(ct)
    assert modality.name == "ct" and image.hounsfield and image.pixels.dtype == np.float32
    assert image.pixels[0, 0] == -1000 and image.pixels[3, 3] == 40 and image.pixels[4, 5] == 300
    assert labels.max() == 2


def test_corpus_volumes_are_sliced_when_asked(tmp_path):
    dataset = open_dataset(_corpus(tmp_path), include_volumes=True, foreground_only=True)
    slices = [s for s in dataset if s.volume is not None]
    assert [s.index for s in slices] == [1, 2] and all(s.axis == 2 for s in slices)
    assert slices[0].id == "ct_vol_000--z_0001" and slices[0].hounsfield_offset == 0.0
    image, labels, _ = load_sample(slices[0])
    assert image.hounsfield and np.all(image.pixels == -1000)
    assert labels.sum() == 6 and labels.shape == image.shape


# ------------------------------------------------------------------------------------------ SA-Med2D


def _samed2d(root: Path) -> Path:
    big = np.zeros((12, 16), np.uint8)
    big[2:10, 2:14] = 255
    small = np.zeros((12, 16), np.uint8)
    small[4:6, 5:7] = 255  # inside the big one
    entries = {}
    for image_name, picture in [("ct_00--AbdomenCT1K--Case_00011--x_0040", 0), ("mr_t2w--ProstateX--P001--z_0003", 1),
                                ("x_ray--ChestX--img7--x_0000", 2), ("weird_00--Foo--C1--x_0001", 3)]:
        _png(root / "images" / f"{image_name}.png", _picture(picture))
        masks = []
        for cls, mask in (("0000_000", big), ("0003_000", small)):
            _png(root / "masks" / f"{image_name}--{cls}.png", mask)
            masks.append(f"masks/{image_name}--{cls}.png")
        entries[f"images/{image_name}.png"] = masks
    entries["images/mr_t2w--ProstateX--P001--z_0003.png"].append("masks/mr_t2w--ProstateX--P001--z_0003--0001_000.png")
    entries["images/ct_00--AbdomenCT1K--Case_00012--x_0001.png"] = ["masks/missing.png"]
    (root / "SAMed2D_v1.json").write_text(json.dumps(entries))
    classes = {"AbdomenCT1K": {"liver": 0, "kidney": 1, "spleen": 2, "pancreas": 3}}
    (root / "SAMed2D_v1_class_mapping_id.json").write_text(json.dumps(classes))
    return root


def test_samed2d_modalities_objects_and_reporting(tmp_path):
    dataset = open_dataset(_samed2d(tmp_path))
    assert dataset.layout == "samed2d"
    assert dataset.counts() == {"ct": 1, "mr": 1, "xray": 1}
    ct = next(s for s in dataset if s.modality == "ct")
    assert ct.objects == {1: "liver", 2: "pancreas"} and ct.case == "ct_00--AbdomenCT1K--Case_00011"
    assert next(s for s in dataset if s.modality == "xray").objects == {1: "0000", 2: "0003"}  # no class map entry
    reasons = _reasons(dataset)
    assert "not a known modality" in reasons["weird_00--Foo--C1--x_0001.png"]
    assert "missing" in reasons["mr_t2w--ProstateX--P001--z_0003--0001_000.png"]
    assert "missing" in reasons["ct_00--AbdomenCT1K--Case_00012--x_0001.png"]
    mr = next(s for s in dataset if s.modality == "mr")
    assert len(mr.mask_parts) == 2  # the missing third mask is left out


def test_samed2d_binary_masks_merge_into_one_label_map(tmp_path):
    dataset = open_dataset(_samed2d(tmp_path))
    ct = next(s for s in dataset if s.modality == "ct")
    image, labels, modality = load_sample(ct)
    assert modality.name == "ct" and labels.shape == image.shape == (12, 16)
    assert labels[4, 5] == 2 and labels[3, 3] == 1 and labels[0, 0] == 0  # the small one stays on top
    assert (labels == 1).sum() == 8 * 12 - 4 and (labels == 2).sum() == 4


def test_sam_med2d_training_jsons_with_repository_relative_paths(tmp_path):
    root = tmp_path / "data_demo"
    _png(root / "images/amos_0006_90.png", _picture(0))
    _png(root / "masks/amos_0006_90_liver_000.png", _mask(value=255))
    _png(root / "masks/amos_0006_90_inferior_vena_cava_000.png", _mask(value=255))
    _png(root / "images/amos_0004_75.png", _picture(1))
    _png(root / "masks/amos_0004_75_aorta_000.png", _mask(value=255))
    (root / "image2label_train.json").write_text(json.dumps({"data_demo/images/amos_0006_90.png": [
        "data_demo/masks/amos_0006_90_liver_000.png", "data_demo/masks/amos_0006_90_inferior_vena_cava_000.png"]}))
    (root / "label2image_test.json").write_text(json.dumps({
        "data_demo/masks/amos_0004_75_aorta_000.png": "data_demo/images/amos_0004_75.png"}))
    assert detect_layout(root) == "samed2d"
    with pytest.raises(InputError, match="no usable samples") as err:
        open_dataset(root)
    assert "no modality in the name" in str(err.value)
    dataset = open_dataset(root, modality="ct")
    assert dataset.counts() == {"ct": 2} and not dataset.skipped
    train = next(s for s in dataset if s.id == "amos_0006_90")
    assert train.objects == {1: "liver", 2: "inferior_vena_cava"} and train.case == "amos_0006"


# ------------------------------------------------------------------------------------------ nnU-Net


def _nnunet(root: Path, channel_name: str = "CT") -> Path:
    spec = {"channel_names": {"0": channel_name}, "labels": {"background": 0, "liver": 1, "tumour": 2},
            "numTraining": 3, "file_ending": ".nii.gz"}
    (root / "imagesTr").mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps(spec))
    for case, seed in (("liver_001", 0), ("liver_002", 1)):
        volume = np.random.default_rng(seed).integers(-1000, 400, (8, 9, 5)).astype(np.int16)
        labels = np.zeros((8, 9, 5), np.uint8)
        labels[2:5, 3:6, 1] = 1
        labels[3, 4, 3] = 2
        _nifti(root / "imagesTr" / f"{case}_0000.nii.gz", volume)
        _nifti(root / "labelsTr" / f"{case}.nii.gz", labels)
    _nifti(root / "imagesTr" / "liver_003_0000.nii.gz", np.zeros((8, 9, 5), np.int16))  # no labels
    (root / "imagesTr" / "liver_004_0000.nii.gz").write_bytes(b"not a nifti at all")
    (root / "labelsTr" / "liver_004.nii.gz").write_bytes(b"not a nifti either")
    (root / "imagesTr" / "notes.nii.gz").write_bytes(b"")
    return root


def test_nnunet_volumes_become_slices_along_the_through_plane_axis(tmp_path):
    dataset = open_dataset(_nnunet(tmp_path))
    assert dataset.layout == "nnunet" and dataset.counts() == {"ct": 10}
    first = dataset[0]
    assert first.axis == 2 and first.index == 0 and first.case == "liver_001" and first.id == "liver_001--z_0000"
    assert first.objects == {1: "liver", 2: "tumour"} and first.hounsfield_offset == 0.0
    reasons = _reasons(dataset)
    assert "no labelsTr/liver_003.nii.gz" in reasons["liver_003_0000.nii.gz"]
    assert "cannot read NIfTI header" in reasons["liver_004_0000.nii.gz"]
    assert "not named" in reasons["notes.nii.gz"]
    assert len(split_samples(dataset.samples, (0.5, 0.5), seed=1)[0]) == 5


def test_nnunet_foreground_filter_axis_choice_and_loading(tmp_path):
    root = _nnunet(tmp_path)
    dataset = open_dataset(root, foreground_only=True)
    assert [(s.case, s.index) for s in dataset] == [("liver_001", 1), ("liver_001", 3), ("liver_002", 1),
                                                    ("liver_002", 3)]
    image, labels, modality = load_sample(dataset[0])
    assert modality.name == "ct" and image.hounsfield and labels.shape == image.shape
    assert sorted(image.shape) == [8, 9] and labels.sum() == 9 and set(np.unique(labels)) == {0, 1}
    expected = nib.load(root / "imagesTr/liver_001_0000.nii.gz").get_fdata()[:, :, 1]
    assert sorted(image.pixels.ravel().tolist()) == sorted(expected.ravel().tolist())
    along_i = open_dataset(root, axis=0)
    assert along_i.counts() == {"ct": 16} and along_i[0].id == "liver_001--x_0000"


def test_nnunet_channel_names_resolve_or_ask_for_the_modality(tmp_path):
    assert open_dataset(_nnunet(tmp_path / "a", "T2")).counts() == {"mr": 10}
    root = _nnunet(tmp_path / "b", "noNorm")
    with pytest.raises(InputError, match="channel 0 is named 'noNorm'") as err:
        open_dataset(root)
    assert "dataset.json" in str(err.value) and "ultrasound" in str(err.value)
    dataset = open_dataset(root, modality="pet")
    assert dataset.counts() == {"pet": 10} and dataset[0].hounsfield_offset is None


def test_nnunet_labels_on_another_grid_are_an_error_naming_both_files(tmp_path):
    root = _nnunet(tmp_path)
    labels = np.zeros((8, 9, 5), np.uint8)
    nib.Nifti1Image(labels, np.diag([-1.0, 1.0, 3.0, 1.0])).to_filename(root / "labelsTr/liver_002.nii.gz")
    sample = next(s for s in open_dataset(root) if s.case == "liver_002")
    with pytest.raises(InputError, match="do not lie on the grid") as err:
        load_sample(sample)
    assert "labelsTr/liver_002.nii.gz" in str(err.value) and "imagesTr/liver_002_0000.nii.gz" in str(err.value)
    with pytest.raises(ValueError, match="exactly one of image and volume"):
        Sample(id="x", modality="ct")


def test_nnunet_2d_datasets_and_unsupported_file_endings(tmp_path):
    spec = {"channel_names": {"0": "Endoscopy"}, "labels": {"background": 0, "polyp": 1}, "file_ending": ".png"}
    (tmp_path / "dataset.json").write_text(json.dumps(spec))
    _png(tmp_path / "imagesTr/polyp_01_0000.png", _picture(0))
    _png(tmp_path / "labelsTr/polyp_01.png", _mask())
    dataset = open_dataset(tmp_path)
    assert dataset.counts() == {"endoscopy": 1} and dataset[0].mask.name == "polyp_01.png"
    assert dataset[0].objects == {1: "polyp"} and dataset[0].hounsfield_offset is None
    (tmp_path / "dataset.json").write_text(json.dumps({**spec, "file_ending": ".mha"}))
    with pytest.raises(InputError, match=r"file_ending '\.mha' is not supported"):
        open_dataset(tmp_path)
    with pytest.raises(InputError, match="cannot read JSON"):
        open_dataset(tmp_path / "imagesTr", layout="nnunet")


# ------------------------------------------------------------------------------------------ MedSAM npz


def _medsam(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    gts2d = _mask()
    np.savez_compressed(root / "CT_Abd_case01.npz", imgs=np.stack([_picture(0)] * 3, -1), gts=gts2d,
                        spacing=np.array([1.0, 1.0]))
    gts3d = np.zeros((4, 12, 16), np.uint8)
    gts3d[2, 3:5, 3:5] = 1
    np.savez_compressed(root / "MR_Prostate_case02.npz", imgs=np.zeros((4, 12, 16), np.uint8), gts=gts3d,
                        spacing=np.array([3.0, 0.5, 0.5]))
    (root / "US").mkdir()
    np.savez_compressed(root / "US" / "breast_7.npz", imgs=_picture(1), gts=gts2d)
    np.savez_compressed(root / "something_else.npz", imgs=_picture(2), gts=gts2d)
    np.savez_compressed(root / "Fundus_nolabels.npz", imgs=_picture(2))
    (root / "CT_broken.npz").write_bytes(b"PK\x03\x04 truncated")
    return root


def test_medsam_npz_2d_cases_and_3d_slices(tmp_path):
    dataset = open_dataset(_medsam(tmp_path))
    assert dataset.layout == "medsam_npz"
    assert dataset.counts() == {"ct": 1, "mr": 4, "ultrasound": 1}
    assert next(s for s in dataset if s.modality == "ct").image.name == "CT_Abd_case01.npz"
    mr = [s for s in dataset if s.modality == "mr"]
    assert [s.index for s in mr] == [0, 1, 2, 3] and {s.case for s in mr} == {"MR_Prostate_case02"}
    reasons = _reasons(dataset)
    assert "modality unknown" in reasons["something_else.npz"]
    assert "no 'gts'" in reasons["Fundus_nolabels.npz"]
    assert "cannot read" in reasons["CT_broken.npz"]
    assert open_dataset(tmp_path, modality="oct").counts()["oct"] == 1  # the argument names the rest
    assert npz_shapes(tmp_path / "MR_Prostate_case02.npz")["imgs"] == (4, 12, 16)


def test_medsam_npz_loading_and_foreground_filter(tmp_path):
    dataset = open_dataset(_medsam(tmp_path), foreground_only=True)
    mr = [s for s in dataset if s.modality == "mr"]
    assert [s.index for s in mr] == [2]
    image, labels, modality = load_sample(mr[0])
    assert modality.name == "mr" and image.shape == (12, 16) and labels.sum() == 4
    ct = next(s for s in dataset if s.modality == "ct")
    image, labels, _ = load_sample(ct)
    assert image.pixels.shape == (12, 16, 3) and labels.shape == (12, 16) and labels.max() == 1


# ------------------------------------------------------------------------------------------ splits


def _slices(case: str, modality: str, n: int) -> list[Sample]:
    return [Sample(id=f"{case}--z_{i:04d}", modality=modality, image=Path(f"{case}_{i}.png"), case=case)
            for i in range(n)]


def test_splits_keep_cases_whole_are_deterministic_and_order_free():
    samples = [s for i in range(10) for s in _slices(f"ct_case{i}", "ct", 5)]
    samples += [s for i in range(5) for s in _slices(f"mr_case{i}", "mr", 3)]
    train, val, test = split_samples(samples, (0.6, 0.2, 0.2), seed=3)
    assert len(train) + len(val) + len(test) == len(samples)
    cases = [{s.case for s in part} for part in (train, val, test)]
    assert not (cases[0] & cases[1]) and not (cases[0] & cases[2]) and not (cases[1] & cases[2])
    assert all({s.modality for s in part} == {"ct", "mr"} for part in (train, val, test))  # every modality
    assert [len(c) for c in cases] == [6 + 3, 2 + 1, 2 + 1]
    again = split_samples(list(reversed(samples)), [0.6, 0.2, 0.2], seed=3)
    assert [{s.id for s in part} for part in again] == [{s.id for s in part} for part in (train, val, test)]
    other = split_samples(samples, (0.6, 0.2, 0.2), seed=4)
    assert {s.case for s in other[0]} != cases[0]


def test_splits_by_name_and_bad_fractions():
    samples = _slices("a", "ct", 2) + _slices("b", "ct", 2)
    parts = split_samples(samples, {"train": 0.5, "val": 0.5})
    assert set(parts) == {"train", "val"} and len(parts["train"]) == len(parts["val"]) == 2
    with pytest.raises(InputError, match="fractions"):
        split_samples(samples, (0.5, -0.1))
    with pytest.raises(InputError, match="fractions"):
        split_samples(samples, ())
