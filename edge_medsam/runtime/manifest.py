"""The model bundle's manifest: the contract between the export pipeline (writer) and the runtime (reader).

A bundle is a folder (optionally zipped) holding ``manifest.json`` and the graph files it lists, each with its
sha256. Graph I/O is fixed by name (``ENCODER_IO`` / ``DECODER_IO``); shapes use symbolic names for dynamic
dimensions ("objects", "points"). The numbers preprocessing needs (input size, mean/std, resize rule, CT
windows, percentiles, modality indices) come from the manifest, never from constants in the runtime.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_medsam.errors import EdgeMedSAMError

FORMAT = "edge-medsam-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")
GRAPH_FORMATS = ("onnx", "openvino")
AUTO_MODALITY = -1
# The decoder's ``self_prompt_weight`` for prompted objects in students made before the manifest's model config
# recorded it (they were trained with the self-prompt on every object).
LEGACY_PROMPTED_WEIGHT = 1.0

# (name, dtype, shape) of every graph input/output; "S" = input size, "g" = S/16, "D" = embedding width,
# "C" = skip width, "M" = modality slots, "K" = masks per object, "objects"/"points" are dynamic.
ENCODER_IO: dict[str, list[tuple[str, str, list[str | int]]]] = {
    "inputs": [("image", "float32", [1, 3, "S", "S"]), ("modality", "int64", [1])],
    "outputs": [("embedding", "float32", [1, "D", "g", "g"]), ("skip8", "float32", [1, "C", "2g", "2g"]),
                ("skip4", "float32", [1, "C", "4g", "4g"]), ("dense_prompt", "float32", [1, "D", "g", "g"]),
                ("patch_logits", "float32", [1, 1, "g", "g"]), ("confidence", "float32", [1]),
                ("modality_logits", "float32", [1, "M"]), ("modality_index", "int64", [1])],
}
DECODER_IO: dict[str, list[tuple[str, str, list[str | int]]]] = {
    "inputs": [("embedding", "float32", [1, "D", "g", "g"]), ("skip8", "float32", [1, "C", "2g", "2g"]),
               ("skip4", "float32", [1, "C", "4g", "4g"]), ("dense_prompt", "float32", [1, "D", "g", "g"]),
               ("modality_index", "int64", [1]), ("point_coords", "float32", ["objects", "points", 2]),
               ("point_labels", "float32", ["objects", "points"]),
               ("mask_input", "float32", ["objects", 1, "4g", "4g"]), ("has_mask_input", "float32", ["objects"]),
               ("self_prompt_weight", "float32", ["objects"])],
    "outputs": [("masks", "float32", ["objects", "K", "4g", "4g"]), ("iou_predictions", "float32", ["objects", "K"])],
}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class GraphFile:
    """One file of a graph variant, with its size and hash."""

    file: str
    sha256: str
    bytes: int

    @classmethod
    def of(cls, root: Path, relative: str) -> GraphFile:
        """Describe ``root / relative`` as it is on disk now."""
        path = root / relative
        return cls(relative, sha256_file(path), path.stat().st_size)


@dataclass
class GraphVariant:
    """A graph (encoder or decoder) at one precision in one format: its files (ONNX: one; OpenVINO: xml + bin)."""

    graph: str
    precision: str
    format: str
    files: list[GraphFile]

    @property
    def main(self) -> str:
        """The file a backend opens (the .onnx or the .xml)."""
        return self.files[0].file


@dataclass
class Manifest:
    """Everything the runtime needs to preprocess, run and postprocess a bundle's graphs."""

    name: str
    version: str
    model: dict[str, Any]
    modalities: dict[str, int]
    preprocess: dict[str, Any]
    intensity: dict[str, Any]
    outputs: dict[str, Any]
    variants: list[GraphVariant] = field(default_factory=list)
    io: dict[str, Any] = field(default_factory=lambda: {"encoder": ENCODER_IO, "decoder": DECODER_IO})
    metrics: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def variant(self, graph: str, precision: str, fmt: str) -> GraphVariant:
        """The variant for (graph, precision, format); a clear error lists what the bundle has."""
        for v in self.variants:
            if (v.graph, v.precision, v.format) == (graph, precision, fmt):
                return v
        have = sorted({f"{v.precision}/{v.format}" for v in self.variants if v.graph == graph})
        raise EdgeMedSAMError(f"bundle {self.name!r} has no {precision} {fmt} {graph}",
                              fix=f"choose one of {', '.join(have) or 'nothing: re-export the bundle'}")

    @property
    def prompted_self_prompt_weight(self) -> float:
        """The decoder's ``self_prompt_weight`` for prompted objects (correcting the automatic mask uses 1)."""
        config = self.model.get("config", {})
        return float(config.get("prompted_self_prompt_weight", LEGACY_PROMPTED_WEIGHT))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "format": self.format, "format_version": self.format_version, "name": self.name, "version": self.version,
            "model": self.model, "modalities": self.modalities, "preprocess": self.preprocess,
            "intensity": self.intensity, "outputs": self.outputs, "io": self.io,
            "graphs": [{"graph": v.graph, "precision": v.precision, "format": v.format,
                        "files": [vars(f) for f in v.files]} for v in self.variants],
            "metrics": self.metrics, "lineage": self.lineage,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | None = None) -> Manifest:
        """Parse and check the format and version."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise EdgeMedSAMError("not an edge-medsam bundle manifest", path=path,
                                  fix="point --bundle at a folder made by `edge-medsam export`")
        if data.get("format_version") != FORMAT_VERSION:
            raise EdgeMedSAMError(f"bundle format version {data.get('format_version')} is not {FORMAT_VERSION}",
                                  path=path, fix="re-export the bundle with this version, or upgrade edge-medsam")
        try:
            variants = [GraphVariant(g["graph"], g["precision"], g["format"], [GraphFile(**f) for f in g["files"]])
                        for g in data["graphs"]]
            return cls(name=data["name"], version=data["version"], model=data["model"],
                       modalities={k: int(v) for k, v in data["modalities"].items()}, preprocess=data["preprocess"],
                       intensity=data["intensity"], outputs=data["outputs"], variants=variants, io=data["io"],
                       metrics=data.get("metrics", {}), lineage=data.get("lineage", {}))
        except (KeyError, TypeError, ValueError) as err:
            raise EdgeMedSAMError(f"manifest is missing or has a malformed field ({err})", path=path,
                                  fix="re-export the bundle; do not edit manifest.json by hand") from err


def read_manifest(bundle: str | Path) -> Manifest:
    """Read ``bundle/manifest.json`` (no file checks; see verify_bundle)."""
    path = Path(bundle) / MANIFEST
    if not path.is_file():
        raise EdgeMedSAMError("no manifest.json in the bundle folder", path=Path(bundle),
                              fix="point --bundle at a folder made by `edge-medsam export` (unzip it first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EdgeMedSAMError(f"manifest.json is not valid JSON ({err})", path=path,
                              fix="re-export or re-copy the bundle") from err
    return Manifest.from_dict(data, path)


def verify_bundle(bundle: str | Path, manifest: Manifest | None = None,
                  variants: list[GraphVariant] | None = None) -> Manifest:
    """Check that every listed file (or those of ``variants``) exists with its size and sha256; refuse otherwise."""
    root = Path(bundle)
    manifest = manifest or read_manifest(root)
    for variant in variants if variants is not None else manifest.variants:
        for f in variant.files:
            path = root / f.file
            if not path.resolve().is_relative_to(root.resolve()):
                raise EdgeMedSAMError(f"manifest lists a file outside the bundle: {f.file}", path=root,
                                      fix="use a bundle from a trusted export; do not edit manifest.json")
            if not path.is_file():
                raise EdgeMedSAMError(f"graph file {f.file} is missing", path=root,
                                      fix="copy the whole bundle folder again")
            if path.stat().st_size != f.bytes or sha256_file(path) != f.sha256:
                raise EdgeMedSAMError(f"graph file {f.file} does not match its sha256 (damaged or altered)", path=path,
                                      fix="copy the bundle again from its source or re-export it")
    return manifest


def intensity_section() -> dict[str, Any]:
    """The intensity rules of this package version, as a manifest records them."""
    from edge_medsam.modalities import CT_WINDOWS, DEFAULT_CT_WINDOW, MODALITIES, PERCENTILES

    return {"ct_windows": {k: list(v) for k, v in CT_WINDOWS.items()}, "default_ct_window": DEFAULT_CT_WINDOW,
            "percentiles": list(PERCENTILES),
            "per_modality": {m.name: {"intensity": m.intensity.value, "colour": m.colour} for m in MODALITIES}}
