"""Dataset layouts on disk → samples: folder pairs (with an optional manifest), SA-Med2D-20M, nnU-Net raw, MedSAM .npz.

``open_dataset`` finds the samples cheaply (file names, JSON, NIfTI and .npz headers; no pixel data) and
reports files it cannot use instead of failing on them; ``load_sample`` reads one sample through
``edge_medsam.io``; ``split_samples`` makes train/val/test splits that never cut a patient in two.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_medsam.errors import EdgeMedSAMError, InputError
from edge_medsam.io.types import Image2D, ReadLimits, Volume
from edge_medsam.modalities import MODALITIES, Modality, get_modality, modality_names

if TYPE_CHECKING:
    from edge_medsam.io.npz import LaptopCase

LAYOUTS = ("folder_pairs", "samed2d", "nnunet", "medsam_npz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".nii.gz", ".nii", ".npz")
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr")
MASK_NAME_ENDINGS = ("_mask", "_masks", "_seg", "_label", "_labels", "_gt", "-mask", "-seg", "-label")
SAMED2D_JSONS = ("SAMed2D_v1.json", "image2label_train.json", "label2image_test.json")
SAMED2D_CLASS_MAP = "SAMed2D_v1_class_mapping_id.json"
AXIS_LETTERS = "xyz"

# Dataset spellings of modalities that the registry does not list as aliases (MR sequence names in nnU-Net
# channel_names, MedSAM file prefixes).
_DATASET_ALIASES = {
    "microscope": "microscopy",
    **{seq: "mr" for seq in ("t1", "t1w", "t1c", "t1ce", "t1gd", "t2", "t2w", "flair", "adc", "dwi", "pd",
                             "swi", "mprage", "cine", "lge", "dce", "cmr")},
}
_MEDSAM_PREFIX = re.compile(r"^(2d|3d)(box)?[_-]", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    """One 2D training/evaluation item: a 2D file, or one slice of a volume, with its labels.

    ``image``/``mask``: a 2D image file (or a 2D MedSAM .npz) and its label-map file; ``mask_parts``: binary
    masks merged into one label map on load (SA-Med2D), label i + 1 for the i-th part. ``volume``/``labels``:
    a 3D file (NIfTI, 3D MedSAM .npz) and its label volume (a .npz holds its own), sliced at ``index`` along
    voxel ``axis``. ``hounsfield_offset``: where set, stored value + offset = Hounsfield units. ``objects``:
    label id → name where the layout says. ``case``: the patient/series, kept whole by ``split_samples``.
    """

    id: str
    modality: str
    image: Path | None = None
    mask: Path | None = None
    mask_parts: tuple[Path, ...] = ()
    volume: Path | None = None
    labels: Path | None = None
    axis: int | None = None
    index: int | None = None
    hounsfield_offset: float | None = None
    objects: Mapping[int, str] = field(default_factory=dict)
    case: str = ""

    def __post_init__(self) -> None:
        if (self.image is None) == (self.volume is None):
            raise ValueError(f"sample {self.id!r} needs exactly one of image and volume")
        if self.volume is not None and (self.axis is None or self.index is None):
            raise ValueError(f"volume sample {self.id!r} needs an axis and a slice index")

    @property
    def source(self) -> Path:
        """The file the pixels come from."""
        return self.volume if self.volume is not None else self.image  # type: ignore[return-value]


@dataclass(frozen=True)
class Skipped:
    """A file that was left out, and why."""

    path: Path
    reason: str


@dataclass
class Dataset:
    """The samples of one dataset folder, the files left out, and per-modality counts."""

    root: Path
    layout: str
    samples: list[Sample]
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def counts(self) -> dict[str, int]:
        """Number of samples per modality, in registry order."""
        counted = Counter(s.modality for s in self.samples)
        return {name: counted[name] for name in modality_names() if counted[name]}

    def summary(self) -> str:
        """A few human-readable lines: layout, counts per modality, files left out with the first reasons."""
        cases = len({s.case for s in self.samples})
        lines = [f"{self.root}: {self.layout} layout, {len(self.samples)} samples from {cases} cases"]
        lines += [f"  {name:<12} {count}" for name, count in self.counts().items()]
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} files:")
            lines += [f"    {s.path}: {s.reason}" for s in self.skipped[:10]]
            if len(self.skipped) > 10:
                lines.append(f"    … and {len(self.skipped) - 10} more")
        return "\n".join(lines)

    def verified(self, limits: ReadLimits | None = None, progress: bool = False) -> Dataset:
        """A copy without the samples that fail to load; their files join ``skipped`` with the reason."""
        kept, skipped = [], list(self.skipped)
        items: Any = self.samples
        if progress:
            from tqdm import tqdm

            items = tqdm(items, desc="checking samples", unit="sample")
        for sample in items:
            try:
                load_sample(sample, limits)
            except EdgeMedSAMError as err:
                skipped.append(Skipped(Path(err.path) if err.path else sample.source, str(err)))
            else:
                kept.append(sample)
        return Dataset(self.root, self.layout, kept, skipped)


# ---------------------------------------------------------------------------------------------------- names


def modality_from_name(name: str) -> Modality | None:
    """The modality a dataset's spelling stands for (``ct_00``, ``mr_t2w``, ``x_ray``, ``XRay``, ``Microscope``…)."""
    key = _MEDSAM_PREFIX.sub("", name.strip().lower())
    tokens = [t for t in re.split(r"[_\-\s.]+", key) if t]
    candidates = [key, re.sub(r"[_\-]?\d+$", "", key)]
    if tokens:
        candidates += ["_".join(tokens[:2]), tokens[0]]
    for candidate in candidates:
        try:
            return get_modality(_DATASET_ALIASES.get(candidate, candidate))
        except InputError:
            continue
    # CamelCase names such as "MammoCBIS" or "XRayChest": a long enough known spelling at the start
    spellings = [(s, m) for m in MODALITIES for s in (m.name, *m.aliases) if len(s) >= 5]  # "endo…" is not enough
    return next((m for s, m in sorted(spellings, key=lambda p: -len(p[0])) if key.startswith(s)), None)


def _split_name(name: str) -> tuple[str, str]:
    """(stem, suffix) with double suffixes such as .nii.gz kept together."""
    lower = name.lower()
    for suffix in (".nii.gz",):
        if lower.endswith(suffix):
            return name[: -len(suffix)], suffix
    dot = name.rfind(".")
    return (name, "") if dot <= 0 else (name[:dot], lower[dot:])


def _modality_arg(modality: str | int | Modality | None) -> Modality | None:
    if modality is None:
        return None
    try:
        return get_modality(modality)
    except InputError as err:
        raise InputError(f"unknown modality {modality!r}", fix=f"use one of {', '.join(modality_names())}") from err


def _unknown_modality(folder: Path, what: str) -> InputError:
    return InputError(f"cannot tell the modality of {what}", path=folder,
                      fix=f"name the folder after a modality ({', '.join(modality_names())}) or pass the modality "
                          "(--modality / modality=...)")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read JSON: {err}", path=path, fix="repair or regenerate this file") from err


def _object_names(value: Any) -> dict[int, str]:
    """Label id → name from a list of names (label = position + 1), {id: name}, {name: id} or [{label, name}]."""
    names: dict[int, str] = {}
    if isinstance(value, Mapping):
        for key, item in value.items():
            if str(key).lstrip("-").isdigit():
                names[int(key)] = str(item)
            elif isinstance(item, int) and not isinstance(item, bool):
                names[item] = str(key)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for position, item in enumerate(value):
            if isinstance(item, Mapping) and "name" in item:
                names[int(item.get("label", item.get("id", position + 1)))] = str(item["name"])
            elif isinstance(item, str):
                names[position + 1] = item
    return {label: name for label, name in names.items() if label > 0 and name.lower() != "background"}


# ---------------------------------------------------------------------------------------------------- volumes


def through_plane_axis(affine: np.ndarray, shape: Sequence[int]) -> int:
    """The voxel axis a stack of 2D slices was acquired along: a singleton axis, the coarsest, or the axial one."""
    if 1 in shape[:3]:
        return list(shape[:3]).index(1)
    spacing = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
    if spacing.max() > 1.1 * spacing.min():
        return int(np.argmax(spacing))
    return int(np.argmax(np.abs(np.asarray(affine, float)[2, :3]) / np.maximum(spacing, 1e-12)))


def _nibabel():
    try:
        import nibabel
    except ImportError as err:
        raise EdgeMedSAMError("reading NIfTI needs nibabel", fix="pip install 'edge-medsam[runtime]'") from err
    return nibabel


def _nifti_header(path: Path) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of a NIfTI (or NRRD) volume from its header."""
    if path.name.lower().endswith((".nrrd", ".nhdr")):
        from edge_medsam.io.files import optional_module

        return optional_module("nrrd").nrrd_header_geometry(path)
    try:
        image = _nibabel().load(str(path))
        return tuple(int(v) for v in image.shape), np.asarray(image.affine, float)
    except EdgeMedSAMError:
        raise
    except Exception as err:  # nibabel raises many types for damaged files
        raise InputError(f"cannot read NIfTI header: {err}", path=path, fix="re-export the volume") from err


def _label_data(path: Path) -> np.ndarray:
    if path.name.lower().endswith((".nrrd", ".nhdr")):
        from edge_medsam.io.files import optional_module

        return optional_module("nrrd").read_nrrd(path).voxels
    return np.asanyarray(_nibabel().load(str(path)).dataobj)


def _foreground_indices(labels: np.ndarray, axis: int) -> list[int]:
    others = tuple(a for a in range(labels.ndim) if a != axis)
    return np.flatnonzero(np.any(labels > 0, axis=others)).tolist()


def _volume_samples(
    volume: Path, labels: Path | None, *, case: str, modality: str, axis: int | None, foreground_only: bool,
    hounsfield_offset: float | None = None, objects: Mapping[int, str] | None = None,
) -> list[Sample]:
    """One sample per slice of a NIfTI volume (headers only, unless ``foreground_only`` needs the labels)."""
    shape, affine = _nifti_header(volume)
    if len(shape) != 3 and not (len(shape) == 4 and shape[3] == 1):
        raise InputError(f"volume of shape {shape} is not 3D", path=volume, fix="give one 3D volume per file")
    if labels is not None:
        label_shape, _ = _nifti_header(labels)
        if label_shape[:3] != shape[:3]:
            raise InputError(f"labels {labels} are {label_shape[:3]} but the volume {volume} is {shape[:3]}",
                             path=labels, fix="pair each volume with the label volume of its own grid")
    slicing = through_plane_axis(affine, shape) if axis is None else axis
    if foreground_only and labels is not None:
        data = _label_data(labels)
        indices = _foreground_indices(data.reshape(data.shape[:3]), slicing)
    else:
        indices = list(range(shape[slicing]))
    return [Sample(id=f"{case}--{AXIS_LETTERS[slicing]}_{i:04d}", modality=modality, volume=volume, labels=labels,
                   axis=slicing, index=i, hounsfield_offset=hounsfield_offset, objects=dict(objects or {}), case=case)
            for i in indices]


# ---------------------------------------------------------------------------------------------------- detection


def detect_layout(root: str | Path) -> str:
    """Which of LAYOUTS a dataset folder follows; InputError naming what each layout needs when none matches."""
    base = Path(root)
    if any((base / name).is_file() for name in SAMED2D_JSONS) or (base / "annotations" / SAMED2D_JSONS[0]).is_file():
        return "samed2d"
    if (base / "dataset.json").is_file() and (base / "imagesTr").is_dir():
        return "nnunet"
    if (base / "images").is_dir() and ((base / "masks").is_dir() or (base / "labels").is_dir()
                                       or (base / "manifest.json").is_file()):
        return "folder_pairs"
    if (base / "manifest.json").is_file():
        return "folder_pairs"
    if next(base.rglob("*.npz"), None) is not None:
        return "medsam_npz"
    raise InputError(
        "no known dataset layout here", path=base,
        fix="give a folder with images/ + masks/ (folder pairs), SAMed2D_v1.json or image2label_train.json "
            "(SA-Med2D), dataset.json + imagesTr/ (nnU-Net raw) or .npz files (MedSAM), or pass the layout")


def open_dataset(
    root: str | Path,
    layout: str = "auto",
    modality: str | int | Modality | None = None,
    *,
    axis: int | None = None,
    foreground_only: bool = False,
    include_volumes: bool = False,
    require_masks: bool = True,
    check_files: bool = True,
    channel: int = 0,
) -> Dataset:
    """Find the samples of a dataset folder; files that cannot be used are reported in ``skipped``, not fatal.

    ``layout``: "auto" or one of LAYOUTS. ``modality`` is used where the layout does not say it (no modality
    sub-folder, manifest entry, file-name prefix or channel name). Volumes (nnU-Net, 3D .npz, and the
    manifest's volumes with ``include_volumes``) become one sample per slice along ``axis`` (default: the
    through-plane axis; for .npz an axis of ``imgs`` (D, H, W), default 0), only slices with foreground if
    ``foreground_only``.
    Images without a mask are skipped unless ``require_masks`` is False. ``check_files`` checks that the
    files a JSON lists exist (a stat per file). ``channel``: the nnU-Net input channel.
    Raises InputError for a missing folder, an unknown layout/modality, or a dataset with no usable sample.
    """
    base = Path(root)
    if not base.is_dir():
        raise InputError("dataset folder does not exist", path=base, fix="give the folder that holds the dataset")
    chosen = detect_layout(base) if layout == "auto" else layout
    if chosen not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}", fix=f"use auto or one of {', '.join(LAYOUTS)}")
    fallback = _modality_arg(modality)
    options = {"axis": axis, "foreground_only": foreground_only, "require_masks": require_masks}
    if chosen == "folder_pairs":
        samples, skipped = _folder_pairs(base, fallback, include_volumes=include_volumes, **options)
    elif chosen == "samed2d":
        samples, skipped = _samed2d(base, fallback, check_files=check_files)
    elif chosen == "nnunet":
        samples, skipped = _nnunet(base, fallback, channel=channel, **options)
    else:
        samples, skipped = _medsam_npz(base, fallback, **options)
    if not samples:
        reasons = Counter(s.reason for s in skipped).most_common(3)
        detail = "; ".join(f"{reason} ({count}x)" for reason, count in reasons) or "no files found"
        raise InputError(f"no usable samples in this {chosen} dataset: {detail}", path=base,
                         fix="check the folder and the report of skipped files")
    return Dataset(base, chosen, samples, skipped)


# ---------------------------------------------------------------------------------------------------- folder pairs


def _scan(folder: Path, skipped: list[Skipped]) -> dict[str, Path]:
    """Supported files under ``folder`` keyed by their relative path without suffix; others reported."""
    found: dict[str, Path] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.startswith("."):
            continue
        stem, suffix = _split_name(path.name)
        if suffix and suffix not in IMAGE_SUFFIXES:
            skipped.append(Skipped(path, f"not a supported image type ({' '.join(IMAGE_SUFFIXES)})"))
            continue
        key = path.relative_to(folder).with_name(stem).as_posix()  # no suffix: DICOM files often have none
        if key in found:
            skipped.append(Skipped(path, f"same name as {found[key].name}; which one is meant is unclear"))
            continue
        found[key] = path
    return found


def _mask_keys(key: str) -> list[str]:
    """Names a mask may carry for an image key: the same, or with a mask-ish ending."""
    return [key] + [key + ending for ending in MASK_NAME_ENDINGS]


def _folder_modality(relative: Path, fallback: Modality | None, images_dir: Path) -> Modality:
    for part in relative.parent.parts:
        found = modality_from_name(part)
        if found is not None:
            return found
    if fallback is not None:
        return fallback
    if relative.parent.parts:
        raise _unknown_modality(images_dir / relative.parts[0], f"the images in sub-folder {relative.parts[0]!r}")
    raise _unknown_modality(images_dir, "images that sit directly in this folder")


def _folder_pairs(
    root: Path, fallback: Modality | None, *, axis: int | None, foreground_only: bool, require_masks: bool,
    include_volumes: bool,
) -> tuple[list[Sample], list[Skipped]]:
    manifest = root / "manifest.json"
    if manifest.is_file():
        data = _read_json(manifest)
        if _is_sample_manifest(data) or not (root / "images").is_dir():  # a foreign manifest.json is not ours
            return _manifest(root, manifest, data, fallback, axis=axis, foreground_only=foreground_only,
                             require_masks=require_masks, include_volumes=include_volumes)
    skipped: list[Skipped] = []
    images_dir = root / "images"
    masks_dir = root / "masks" if (root / "masks").is_dir() else root / "labels"
    images = _scan(images_dir, skipped)
    masks = _scan(masks_dir, skipped) if masks_dir.is_dir() else {}
    # Masks are found by relative path, or by bare name when images sit in modality folders and masks do not.
    by_name: dict[str, list[str]] = {}
    for key in masks:
        by_name.setdefault(key.rsplit("/", 1)[-1], []).append(key)
    used: set[str] = set()
    samples = []
    for key, image in images.items():
        mask_key = next((k for k in _mask_keys(key) if k in masks), None)
        if mask_key is None:
            name = key.rsplit("/", 1)[-1]
            found = [k for cand in _mask_keys(name) for k in by_name.get(cand, []) if k not in used]
            mask_key = found[0] if len(found) == 1 else None
        if mask_key is None and require_masks:
            skipped.append(Skipped(image, f"no mask with the same name in {masks_dir}"))
            continue
        relative = image.relative_to(images_dir)
        mod = _folder_modality(relative, fallback, images_dir)
        if mask_key is not None:
            used.add(mask_key)
        samples.append(Sample(id=key, modality=mod.name, image=image,
                              mask=masks[mask_key] if mask_key is not None else None, case=key))
    skipped += [Skipped(masks[k], f"mask without an image of the same name in {images_dir}")
                for k in masks if k not in used]
    return samples, skipped


def _offset(intensity: Any) -> float | None:
    if isinstance(intensity, Mapping) and str(intensity.get("units", "")).upper() in ("HU", "HOUNSFIELD"):
        return float(intensity.get("offset", 0.0))
    return None


def _is_sample_manifest(data: Any) -> bool:
    return isinstance(data, Mapping) and (data.get("format") == "edge-medsam-corpus"
                                          or isinstance(data.get("samples"), list))


def _manifest(
    root: Path, manifest: Path, data: Any, fallback: Modality | None, *, axis: int | None, foreground_only: bool,
    require_masks: bool, include_volumes: bool,
) -> tuple[list[Sample], list[Skipped]]:
    """Samples as a manifest lists them: {"samples": [{id, modality, image, mask, objects, intensity}], "volumes"}."""
    if not _is_sample_manifest(data) or not isinstance(data.get("samples", []), list):
        raise InputError("manifest is not an object with a 'samples' list", path=manifest,
                         fix="write {\"samples\": [{\"id\", \"modality\", \"image\", \"mask\"}, ...]}")
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    for position, entry in enumerate(data.get("samples", [])):
        if not isinstance(entry, Mapping) or "image" not in entry:
            skipped.append(Skipped(manifest, f"samples[{position}] has no 'image'"))
            continue
        image = root / entry["image"]
        mask = root / entry["mask"] if entry.get("mask") else None
        mod = _entry_modality(entry, fallback, manifest, position)
        missing = next((p for p in (image, mask) if p is not None and not p.is_file()), None)
        if missing is not None:
            skipped.append(Skipped(missing, "listed in the manifest but missing"))
            continue
        if mask is None and require_masks:
            skipped.append(Skipped(image, "no mask in the manifest"))
            continue
        sample_id = str(entry.get("id", _split_name(image.name)[0]))
        samples.append(Sample(id=sample_id, modality=mod.name, image=image, mask=mask,
                              hounsfield_offset=_offset(entry.get("intensity")),
                              objects=_object_names(entry.get("objects", [])), case=str(entry.get("case", sample_id))))
    for position, entry in enumerate(data.get("volumes", []) if include_volumes else []):
        path = entry.get("volume", entry.get("image")) if isinstance(entry, Mapping) else None
        if path is None:
            skipped.append(Skipped(manifest, f"volumes[{position}] has no 'volume'"))
            continue
        labels_path = entry.get("labels", entry.get("mask"))
        volume, labels = root / path, root / labels_path if labels_path else None
        case = str(entry.get("case", entry.get("id", _split_name(volume.name)[0])))
        mod = _entry_modality(entry, fallback, manifest, position)
        offset = _offset(entry.get("intensity"))
        if offset is None and mod.name == "ct":
            offset = 0.0  # NIfTI CT stores Hounsfield units
        try:
            samples += _volume_samples(volume, labels, case=case, modality=mod.name, axis=axis,
                                       foreground_only=foreground_only, hounsfield_offset=offset,
                                       objects=_object_names(entry.get("objects", [])))
        except InputError as err:
            skipped.append(Skipped(Path(err.path) if err.path else volume, err.problem))
    return samples, skipped


def _entry_modality(entry: Mapping[str, Any], fallback: Modality | None, manifest: Path, position: int) -> Modality:
    name = entry.get("modality")
    if name is None:
        if fallback is None:
            raise _unknown_modality(manifest, f"manifest entry {position} (it has no 'modality')")
        return fallback
    found = modality_from_name(str(name))
    if found is None:
        raise InputError(f"manifest entry {position} has unknown modality {name!r}", path=manifest,
                         fix=f"use one of {', '.join(modality_names())}")
    return found


# ---------------------------------------------------------------------------------------------------- SA-Med2D


def _samed2d_pairs(root: Path) -> list[tuple[str, list[str]]]:
    """(image, [masks]) as the JSON files write them, from every SA-Med2D/SAM-Med2D JSON present."""
    pairs: dict[str, list[str]] = {}
    for name in SAMED2D_JSONS:
        path = next((p for p in (root / name, root / "annotations" / name) if p.is_file()), None)
        if path is None:
            continue
        data = _read_json(path)
        if not isinstance(data, Mapping):
            raise InputError("SA-Med2D JSON is not an object", path=path, fix="regenerate it")
        if name.startswith("label2image"):
            for mask, image in data.items():
                pairs.setdefault(str(image), []).append(str(mask))
        else:
            for image, masks in data.items():
                pairs.setdefault(str(image), []).extend(str(m) for m in ([masks] if isinstance(masks, str) else masks))
    return list(pairs.items())


def _samed2d_base(root: Path, first: str) -> Path:
    """The folder the JSON's relative paths start from: the dataset root, or its parent (SAM-Med2D's data_demo/)."""
    return next((b for b in (root, root.parent) if (b / first).exists()), root)


def _samed2d_class_names(root: Path) -> dict[str, dict[str, str]]:
    """dataset → class id (as written in mask names, e.g. "0003") → class name, from the class-mapping JSON."""
    path = next((p for p in (root / SAMED2D_CLASS_MAP, root / "annotations" / SAMED2D_CLASS_MAP) if p.is_file()), None)
    if path is None:
        return {}
    data = _read_json(path)
    names: dict[str, dict[str, str]] = {}
    for dataset, mapping in (data.items() if isinstance(data, Mapping) else []):
        if isinstance(mapping, Mapping):
            names[str(dataset)] = {f"{int(v):04d}": str(k) for k, v in mapping.items() if str(v).isdigit()}
    return names


def _samed2d(root: Path, fallback: Modality | None, *, check_files: bool) -> tuple[list[Sample], list[Skipped]]:
    pairs = _samed2d_pairs(root)
    skipped: list[Skipped] = []
    if not pairs:
        return [], skipped
    base = _samed2d_base(root, pairs[0][0])
    class_names = _samed2d_class_names(root)
    samples = []
    for image_rel, mask_rels in pairs:
        image = base / image_rel
        stem = _split_name(image.name)[0]
        if check_files and not image.is_file():
            skipped.append(Skipped(image, "listed in the JSON but missing"))
            continue
        masks = [base / m for m in mask_rels]
        if check_files:
            skipped += [Skipped(m, "mask listed in the JSON but missing") for m in masks if not m.is_file()]
            masks = [m for m in masks if m.is_file()]
        if not masks:
            skipped.append(Skipped(image, "no mask"))
            continue
        parts = stem.split("--")
        if len(parts) >= 4:  # <modality_sub>--<dataset>--<case>--<axis>_<slice>
            mod, dataset, case = modality_from_name(parts[0]), parts[1], "--".join(parts[:3])
            sep = "--"
        else:  # SAM-Med2D demo style: <case>_<slice>.png with masks <case>_<slice>_<class>_<instance>.png
            mod, dataset, case = None, "", re.sub(r"_\d+$", "", stem)
            sep = "_"
        mod = mod or fallback
        if mod is None:
            what = f"modality prefix {parts[0]!r} is not a known modality" if sep == "--" else "no modality in the name"
            skipped.append(Skipped(image, f"{what} (pass modality=...)"))
            continue
        objects = {}
        for label, mask in enumerate(masks, start=1):
            tail = _split_name(mask.name)[0]
            tail = tail[len(stem) + len(sep):] if tail.startswith(stem + sep) else tail
            class_id = tail.rsplit("_", 1)[0] if "_" in tail else tail
            objects[label] = class_names.get(dataset, {}).get(class_id, class_id)
        samples.append(Sample(id=stem, modality=mod.name, image=image, mask_parts=tuple(masks), objects=objects,
                              case=case))
    return samples, skipped


# ---------------------------------------------------------------------------------------------------- nnU-Net


def _nnunet_modality(name: str) -> Modality | None:
    return get_modality("ct") if name.strip().upper() == "CT" else modality_from_name(name)


def _nnunet(
    root: Path, fallback: Modality | None, *, axis: int | None, foreground_only: bool, require_masks: bool,
    channel: int,
) -> tuple[list[Sample], list[Skipped]]:
    spec_path = root / "dataset.json"
    spec = _read_json(spec_path)
    if not isinstance(spec, Mapping):
        raise InputError("dataset.json is not an object", path=spec_path, fix="write nnU-Net's dataset.json")
    channels = spec.get("channel_names", spec.get("modality", {})) or {}
    channel_name = str(channels.get(str(channel), channels.get(channel, ""))) if isinstance(channels, Mapping) else ""
    mod = _nnunet_modality(channel_name) if channel_name else None
    mod = mod or fallback
    if mod is None:
        raise InputError(f"channel {channel} is named {channel_name or 'nothing'!r}, not a modality", path=spec_path,
                         fix=f"pass the modality (one of {', '.join(modality_names())})")
    ending = str(spec.get("file_ending", ".nii.gz")).lower()
    if ending not in IMAGE_SUFFIXES + VOLUME_SUFFIXES or ending == ".npz":
        raise InputError(f"file_ending {ending!r} is not supported", path=spec_path,
                         fix=f"convert the images to NIfTI or one of {' '.join(IMAGE_SUFFIXES[:-1])}")
    if not (root / "imagesTr").is_dir():
        raise InputError("no imagesTr/ folder next to dataset.json", path=root, fix="give an nnU-Net raw dataset folder")
    objects = _object_names(spec.get("labels", {}))
    offset = 0.0 if mod.name == "ct" and ending in VOLUME_SUFFIXES else None  # NIfTI CT stores Hounsfield units
    pattern = re.compile(rf"^(?P<case>.+)_(?P<channel>\d{{4}}){re.escape(ending)}$", re.IGNORECASE)
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    for image in sorted((root / "imagesTr").iterdir()):
        match = pattern.match(image.name)
        if image.name.startswith(".") or not image.is_file():
            continue
        if match is None:
            skipped.append(Skipped(image, f"not named <case>_<4-digit channel>{ending}"))
            continue
        if int(match["channel"]) != channel:
            continue
        case = match["case"]
        labels: Path | None = root / "labelsTr" / f"{case}{ending}"
        if not labels.is_file():
            if require_masks:
                skipped.append(Skipped(image, f"no labelsTr/{case}{ending}"))
                continue
            labels = None
        if ending not in VOLUME_SUFFIXES:
            samples.append(Sample(id=case, modality=mod.name, image=image, mask=labels, objects=objects, case=case))
            continue
        try:
            samples += _volume_samples(image, labels, case=case, modality=mod.name, axis=axis,
                                       foreground_only=foreground_only, hounsfield_offset=offset, objects=objects)
        except InputError as err:
            skipped.append(Skipped(Path(err.path) if err.path else image, err.problem))
    return samples, skipped


# ---------------------------------------------------------------------------------------------------- MedSAM npz


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every array in a .npz, read from the member headers without loading the data."""
    shapes = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape = np.lib.format.read_array_header_1_0(member)[0]
                    elif version == (2, 0):
                        shape = np.lib.format.read_array_header_2_0(member)[0]
                    else:  # no public header reader for newer versions: read the member
                        shape = np.lib.format.read_array(member, allow_pickle=False).shape
                shapes[info.filename[:-4]] = tuple(int(v) for v in shape)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise InputError(f"cannot read the .npz archive: {err}", path=path, fix="re-save it with numpy.savez") from err
    return shapes


def _medsam_npz(
    root: Path, fallback: Modality | None, *, axis: int | None, foreground_only: bool, require_masks: bool,
) -> tuple[list[Sample], list[Skipped]]:
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    for path in sorted(root.rglob("*.npz")):
        try:
            shapes = npz_shapes(path)
        except InputError as err:
            skipped.append(Skipped(path, err.problem))
            continue
        if "imgs" not in shapes:
            skipped.append(Skipped(path, "no 'imgs' array (not a MedSAM .npz)"))
            continue
        if "gts" not in shapes and require_masks:
            skipped.append(Skipped(path, "no 'gts' array"))
            continue
        names = [path.stem, *reversed(path.relative_to(root).parent.parts)]
        mod = next((m for m in map(modality_from_name, names) if m is not None), fallback)
        if mod is None:
            skipped.append(Skipped(path, "modality unknown from the file or folder name (pass modality=...)"))
            continue
        imgs, gts = shapes["imgs"], shapes.get("gts")
        is_2d = len(imgs) == 2 or (len(imgs) == 3 and imgs[-1] == 3 and (gts is None or len(gts) == 2))
        case = path.stem
        if is_2d:
            samples.append(Sample(id=case, modality=mod.name, image=path, case=case))
            continue
        if len(imgs) != 3 or (gts is not None and tuple(gts) != tuple(imgs)):
            skipped.append(Skipped(path, f"imgs {imgs} / gts {gts} are neither a 2D image nor a (D, H, W) volume"))
            continue
        slicing = 0 if axis is None else axis
        indices = range(imgs[slicing])
        if foreground_only and gts is not None:
            try:
                with np.load(path, allow_pickle=False) as data:
                    indices = _foreground_indices(data["gts"], slicing)
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
                skipped.append(Skipped(path, f"cannot read 'gts': {err}"))
                continue
        samples += [Sample(id=f"{case}--{AXIS_LETTERS[slicing]}_{i:04d}", modality=mod.name, volume=path,
                           axis=slicing, index=i, case=case) for i in indices]
    return samples, skipped


# ---------------------------------------------------------------------------------------------------- loading


@lru_cache(maxsize=2)
def _read_whole(path: Path, mtime_ns: int, limits: ReadLimits | None) -> Volume | LaptopCase:
    """The last files read whole (image and label volumes), so the slices of one case do not re-read them."""
    from edge_medsam.io import read_laptop_npz, read_volume

    return read_laptop_npz(path, limits) if path.suffix == ".npz" else read_volume(path, limits)


def _whole(path: Path, limits: ReadLimits | None) -> Any:
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as err:
        raise InputError("file is missing", path=path, fix="restore it or open the dataset again") from err
    return _read_whole(path, mtime, limits)


def _check_shape(labels: np.ndarray, image: Image2D, mask_path: Path, image_path: Path) -> np.ndarray:
    if tuple(labels.shape[:2]) != image.shape:
        raise InputError(f"mask {mask_path} is {labels.shape[1]}x{labels.shape[0]} pixels but image {image_path} is "
                         f"{image.shape[1]}x{image.shape[0]}", path=mask_path,
                         fix="pair each image with the mask drawn on it (same width and height)")
    return labels


def _merge_parts(parts: Sequence[Path], image: Image2D) -> np.ndarray:
    """One label map from binary masks, label i + 1 for part i, painted largest first (a tumour stays on top)."""
    from edge_medsam.io import read_mask

    binaries = [(label, _check_shape(read_mask(path), image, path, image.path or parts[0]) > 0)
                for label, path in enumerate(parts, start=1)]
    merged = np.zeros(image.shape, np.int32)
    for label, binary in sorted(binaries, key=lambda item: -int(item[1].sum())):
        merged[binary] = label
    return merged


def _npz_sample(sample: Sample, limits: ReadLimits | None) -> tuple[Image2D, np.ndarray | None]:
    """A 2D MedSAM case, or one slice of a 3D one along its ``imgs`` (D, H, W) array axis."""
    from edge_medsam.io import read_laptop_npz

    if sample.volume is None:
        case = read_laptop_npz(sample.source, limits)
        return case.to_image(), case.gts
    case = _whole(sample.volume, limits)
    take = (slice(None),) * sample.axis + (sample.index,)  # type: ignore[operator]
    spacing = None
    if case.spacing is not None and len(case.spacing) == 3:  # (x, y, z), the reverse of the array axes
        spacing = tuple(v for i, v in enumerate(case.spacing[::-1]) if i != sample.axis)
    image = Image2D(np.array(case.imgs[take]), path=sample.volume, spacing=spacing,
                    meta={"format": "npz", "slice": {"axis": sample.axis, "index": sample.index}})
    return image, None if case.gts is None else np.array(case.gts[take])


def _orientation(volume: Volume) -> str:
    """Which world direction (RAS letters) each voxel axis runs along, e.g. "RAS" or "LPS"."""
    columns = np.asarray(volume.affine, float)[:3, :3].T
    return "".join(("RAS" if col[np.argmax(np.abs(col))] > 0 else "LPI")[int(np.argmax(np.abs(col)))]
                   for col in columns)


def load_sample(sample: Sample, limits: ReadLimits | None = None) -> tuple[Image2D, np.ndarray | None, Modality]:
    """Read one sample: (image with the file's values, int label map or None when it has none, modality).

    Pixels stored as Hounsfield units + offset come back in Hounsfield units (float32, ``hounsfield`` True).
    Raises InputError naming the file for anything unreadable, and naming both files for a mask whose size
    differs from its image.
    """
    from edge_medsam.io import read_image, read_mask, slice_volume

    modality = get_modality(sample.modality)
    labels: np.ndarray | None = None
    if sample.source.suffix == ".npz":
        image, labels = _npz_sample(sample, limits)
    elif sample.volume is not None:
        volume = _whole(sample.volume, limits)
        image = slice_volume(volume, sample.axis, sample.index)
        image.pixels = np.array(image.pixels)  # a copy: the volume stays cached for the next slice
        if sample.labels is not None:
            label_volume = _whole(sample.labels, limits)
            if label_volume.shape != volume.shape or _orientation(label_volume) != _orientation(volume):
                raise InputError(f"labels {sample.labels} ({label_volume.shape}, {_orientation(label_volume)}) do not "
                                 f"lie on the grid of volume {sample.volume} ({volume.shape}, {_orientation(volume)})",
                                 path=sample.labels, fix="pair each volume with labels saved on its own grid")
            labels = slice_volume(label_volume, sample.axis, sample.index).pixels
    else:
        image = read_image(sample.image, limits)
        if sample.mask is not None:
            labels = _check_shape(read_mask(sample.mask), image, sample.mask, sample.image)  # type: ignore[arg-type]
        elif sample.mask_parts:
            labels = _merge_parts(sample.mask_parts, image)
    if labels is not None:
        labels = _as_label_map(labels, sample)
    if sample.hounsfield_offset is not None:
        image = replace(image, pixels=image.pixels.astype(np.float32) + np.float32(sample.hounsfield_offset),
                        hounsfield=True)
    return image, labels, modality


def _as_label_map(labels: np.ndarray, sample: Sample) -> np.ndarray:
    arr = np.asarray(labels)
    if np.issubdtype(arr.dtype, np.floating) and not (np.isfinite(arr).all() and np.array_equal(arr, np.round(arr))):
        raise InputError("label map has non-integer values", path=sample.labels or sample.mask or sample.source,
                         fix="store labels as integers (0 = background)")
    return arr.astype(np.int32)


# ---------------------------------------------------------------------------------------------------- splits


def _allocate(n: int, weights: np.ndarray) -> list[int]:
    """Split n items by weights (largest remainder), giving every positive weight one item while n allows."""
    exact = weights * n
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    for i in np.flatnonzero((weights > 0) & (counts == 0)):
        donor = int(np.argmax(counts))
        if counts[donor] > 1:
            counts[donor] -= 1
            counts[i] += 1
    return counts.tolist()


def split_samples(
    samples: Sequence[Sample], fractions: Sequence[float] | Mapping[str, float], seed: int = 0
) -> list[list[Sample]] | dict[str, list[Sample]]:
    """Split samples by case (a case's slices never straddle splits), per modality, reproducibly for a seed.

    ``fractions`` are relative sizes, e.g. (0.8, 0.1, 0.1) or {"train": 0.8, "val": 0.2}; the result has the
    same form. Cases are ordered by a hash of (seed, case), so a case stays in its split however the samples
    are listed, and each modality gets its share of every split (at least one case each while it has enough).
    """
    names = list(fractions) if isinstance(fractions, Mapping) else None
    weights = np.asarray(list(fractions.values()) if isinstance(fractions, Mapping) else fractions, float)
    if weights.ndim != 1 or weights.size == 0 or (weights < 0).any() or weights.sum() <= 0 or \
            not np.isfinite(weights).all():
        raise InputError(f"split fractions {list(weights)} are not non-negative numbers with a positive sum",
                         fix="give e.g. 0.8,0.1,0.1")
    weights = weights / weights.sum()
    case_modality: dict[str, str] = {}
    for sample in samples:
        case_modality.setdefault(sample.case or sample.id, sample.modality)
    split_of: dict[str, int] = {}
    for mod in sorted(set(case_modality.values())):
        cases = sorted((c for c, m in case_modality.items() if m == mod),
                       key=lambda c: hashlib.sha256(f"{seed}\0{c}".encode()).hexdigest())
        start = 0
        for split, count in enumerate(_allocate(len(cases), weights)):
            split_of.update((c, split) for c in cases[start:start + count])
            start += count
    out: list[list[Sample]] = [[] for _ in weights]
    for sample in samples:
        out[split_of[sample.case or sample.id]].append(sample)
    return dict(zip(names, out, strict=True)) if names is not None else out
