"""Open a model bundle (a folder or a .zip) and check that this runtime can use it before any graph is loaded.

Checks on opening: the manifest's format and version, the graph I/O contract, the preprocessing section, and
that the bundle's intensity rules are the ones this package applies. The sha256 of a graph variant is checked
when that variant is first used (``Bundle.graph_path``), so a bundle with unused damaged files still opens.
Zipped bundles are extracted safely (``io.zips``: no absolute paths, ``..`` or links, bounded size) into a cache folder
keyed by the archive's sha256, and reused from there.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.io.files import cache_root
from edge_medsam.io.zips import extract_zip
from edge_medsam.modalities import MODALITIES, PERCENTILES
from edge_medsam.preprocess import PreprocessConfig
from edge_medsam.runtime.manifest import (
    DECODER_IO,
    ENCODER_IO,
    MANIFEST,
    GraphVariant,
    Manifest,
    read_manifest,
    sha256_file,
    verify_bundle,
)

MAX_EXTRACTED_BYTES = 8 << 30  # a zipped bundle larger than this when unpacked is refused (zip bombs)
DEMO_BUNDLE = Path(__file__).resolve().parents[1] / "assets" / "demo_bundle"  # shipped with the package, if built
ENGINE_FOLDER = "tensorrt"  # TensorRT engines built on the device live here, beside the shipped files
_EXPORT_FIX = "use a bundle made by `edge-medsam export` with this edge-medsam version"


@dataclass
class Bundle:
    """An opened bundle: its folder, manifest and preprocessing, and where its TensorRT engines belong."""

    root: Path
    source: Path
    manifest: Manifest
    preprocess: PreprocessConfig
    engine_dir: Path
    _verified: set[tuple[str, str, str]] = field(default_factory=set, repr=False)

    @property
    def name(self) -> str:
        """The model's name and version as the manifest gives them."""
        return f"{self.manifest.name} {self.manifest.version}"

    @property
    def low_res_size(self) -> int:
        """Side of the decoder's mask logits: 4g as the manifest's dims give it (stride 4 of the input for a
        stride-16 embedding, stride 2 for a stride-8 one); bundles without dims are stride 4."""
        side = self.manifest.model.get("dims", {}).get("4g")
        return int(side) if side is not None else self.preprocess.size // 4

    def has(self, graph: str, precision: str, fmt: str) -> bool:
        """True if the manifest lists (graph, precision, format)."""
        return any((v.graph, v.precision, v.format) == (graph, precision, fmt) for v in self.manifest.variants)

    def precisions(self, fmt: str | None = None) -> list[str]:
        """Precisions with both graphs present (in ``fmt``, or in any format)."""
        found = {(v.graph, v.precision) for v in self.manifest.variants if fmt is None or v.format == fmt}
        return sorted({p for g, p in found if (("decoder" if g == "encoder" else "encoder"), p) in found})

    def graph_path(self, graph: str, precision: str, fmt: str) -> Path:
        """The main file of a variant, after checking the sha256 of all its files (once per bundle)."""
        variant: GraphVariant = self.manifest.variant(graph, precision, fmt)
        key = (graph, precision, fmt)
        if key not in self._verified:
            try:
                verify_bundle(self.root, self.manifest, [variant])
            except EdgeMedSAMError as err:
                raise _from_source(err, self) from err
            self._verified.add(key)
        return self.root / variant.main

    def modality_name(self, index: int) -> str | None:
        """The bundle's name for a modality index (None for a slot without a modality)."""
        return next((name for name, i in self.manifest.modalities.items() if i == index), None)

    def modality_index(self, name: str) -> int | None:
        """The bundle's index for a modality name (None if the bundle does not know it)."""
        return self.manifest.modalities.get(name)

    def dynamic_limit(self, dim: str) -> int | None:
        """Largest value of a dynamic dimension ("objects", "points") the graphs were exported for, if recorded."""
        limit = self.manifest.model.get("dynamic", {}).get(dim, {}).get("max")
        return None if limit is None else int(limit)


def _from_source(err: EdgeMedSAMError, bundle: Bundle) -> EdgeMedSAMError:
    """Name the zip the user gave rather than the cache folder it was unpacked to."""
    if bundle.source == bundle.root:
        return err
    return EdgeMedSAMError(f"{err.problem} (unpacked to {err.path or bundle.root})", path=bundle.source, fix=err.fix)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def check_contract(manifest: Manifest, path: Path) -> None:
    """Refuse a bundle whose graph I/O names, dtypes or shapes differ from this runtime's contract."""
    want = _plain({"encoder": ENCODER_IO, "decoder": DECODER_IO})
    have = _plain(manifest.io)
    for graph in ("encoder", "decoder"):
        if have.get(graph) != want[graph]:
            raise EdgeMedSAMError(f"the bundle's {graph} inputs/outputs differ from what this runtime feeds", path=path,
                                  fix=_EXPORT_FIX)


def check_intensity(manifest: Manifest, path: Path) -> None:
    """Refuse a bundle whose intensity rules (percentiles, rule per modality) differ from this package's."""
    section = manifest.intensity
    if [float(v) for v in section.get("percentiles", [])] != [float(v) for v in PERCENTILES]:
        raise EdgeMedSAMError(f"the bundle clips intensities at percentiles {section.get('percentiles')}, this "
                              f"edge-medsam at {list(PERCENTILES)}", path=path,
                              fix="run the bundle with the edge-medsam version that exported it (manifest lineage)")
    rules = section.get("per_modality", {})
    for modality in MODALITIES:
        rule = rules.get(modality.name)
        if rule is not None and rule.get("intensity") != modality.intensity.value:
            raise EdgeMedSAMError(f"the bundle normalises {modality.name} as {rule.get('intensity')!r}, this "
                                  f"edge-medsam as {modality.intensity.value!r}", path=path,
                                  fix="run the bundle with the edge-medsam version that exported it (manifest lineage)")


def _preprocess(manifest: Manifest, path: Path) -> PreprocessConfig:
    try:
        config = PreprocessConfig.from_dict(manifest.preprocess)
    except (KeyError, TypeError, ValueError) as err:
        raise EdgeMedSAMError(f"the manifest's preprocess section is malformed ({err})", path=path,
                              fix=_EXPORT_FIX) from err
    size = manifest.model.get("dims", {}).get("S")
    if size is not None and int(size) != config.size:
        raise EdgeMedSAMError(f"the manifest says input size {config.size} but the graphs take {size}", path=path,
                              fix="re-export the bundle")
    return config


def _bundle_root(folder: Path) -> Path:
    """The folder holding manifest.json: the extraction root, or its single sub-folder (a zipped folder)."""
    if (folder / MANIFEST).is_file():
        return folder
    entries = [p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / MANIFEST).is_file():
        return entries[0]
    return folder


def unpack_zip(archive: Path, cache_dir: Path | None = None) -> Path:
    """Unpack a zipped bundle once into ``cache_dir/bundles/<sha256>`` (atomically) and return its folder."""
    digest = sha256_file(archive)
    bundles = (cache_dir or cache_root()) / "bundles"
    target = bundles / digest[:32]
    if not target.is_dir():
        bundles.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}.", suffix=".partial", dir=bundles))
        try:
            extract_zip(archive, staging, max_bytes=MAX_EXTRACTED_BYTES)
            try:
                os.replace(staging, target)
            except OSError:  # another process unpacked the same archive first
                if not target.is_dir():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _bundle_root(target)


def open_bundle(path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None,
                engine_dir: str | os.PathLike[str] | None = None) -> Bundle:
    """Open a bundle folder or .zip and check it against this runtime (graph hashes are checked on use)."""
    source = Path(path).expanduser()
    if source.is_dir():
        root = source
        default_engines = source / ENGINE_FOLDER
    elif source.is_file():
        if not zipfile.is_zipfile(source):
            raise EdgeMedSAMError("is neither a bundle folder nor a .zip of one", path=source,
                                  fix="point --bundle at the folder (or .zip) made by `edge-medsam export`")
        root = unpack_zip(source, Path(cache_dir) if cache_dir is not None else None)
        default_engines = source.with_name(f"{source.name}.{ENGINE_FOLDER}")
    else:
        raise EdgeMedSAMError("the bundle does not exist", path=source,
                              fix="point --bundle at the folder (or .zip) made by `edge-medsam export`")
    try:
        manifest = read_manifest(root)
    except EdgeMedSAMError as err:
        if root == source:
            raise
        raise EdgeMedSAMError(err.problem, path=source, fix=err.fix) from err
    check_contract(manifest, source)
    check_intensity(manifest, source)
    return Bundle(root=root, source=source, manifest=manifest, preprocess=_preprocess(manifest, source),
                  engine_dir=Path(engine_dir) if engine_dir is not None else default_engines)
