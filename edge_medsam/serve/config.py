"""The node's configuration file (YAML): where series come from, which are segmented, where SEGs go.

Every section is checked on load against the dataclass below (unknown keys name the nearest valid one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from edge_medsam.config_check import check_fields
from edge_medsam.errors import InputError
from edge_medsam.io.files import existing_file


@dataclass(frozen=True)
class OrthancSettings:
    """An Orthanc to follow (``/changes``, StableSeries) and to upload SEGs to."""

    url: str = "http://127.0.0.1:8042"
    username: str | None = None
    password: str | None = None
    poll_seconds: float = 2.0
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class DicomwebSettings:
    """A DICOMweb archive (QIDO-RS, WADO-RS, STOW-RS at ``url``, e.g. Orthanc's ``/dicom-web``): polled every
    ``poll_seconds`` for series; a series is queued once its instance count has not changed for ``stable_seconds``."""

    url: str = "http://127.0.0.1:8042/dicom-web"
    username: str | None = None
    password: str | None = None
    poll_seconds: float = 5.0
    stable_seconds: float = 10.0
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class ScpSettings:
    """The C-STORE receiver: only calling AE titles in ``allowed_ae_titles`` are answered."""

    ae_title: str = "EDGEMEDSAM"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_ae_titles: list[str] = field(default_factory=list)
    stable_seconds: float = 5.0


@dataclass(frozen=True)
class DestinationSettings:
    """Where SEGs are stored: ``orthanc`` (REST upload to the orthanc section's url), ``dicomweb`` (STOW-RS to the
    dicomweb section's url) or ``dicom`` (C-STORE)."""

    kind: str = "orthanc"
    host: str = "127.0.0.1"
    port: int = 4242
    ae_title: str = "ORTHANC"


@dataclass(frozen=True)
class Rule:
    """Series whose Modality, SeriesDescription and BodyPartExamined match these regexes (unset = any).

    ``prompt``: ``self`` (the model's self-prompt on every slice) or ``skip`` (matched series are not segmented).
    """

    modality: str | None = None
    series_description: str | None = None
    body_part: str | None = None
    prompt: str = "self"
    segment_label: str = "foreground"


@dataclass(frozen=True)
class NodeSettings:
    """The whole file. Paths are relative to the file's folder. ``health_port`` 0 turns the endpoint off (a
    ``--workers-only`` process has none: the feeding node's /status covers the shared queue)."""

    queue: Path = Path("edge-medsam-queue.sqlite")
    storage: Path = Path("edge-medsam-storage")
    bundle: Path | None = None
    backend: str = "auto"
    threads: int | None = None
    workers: int = 1
    lease_seconds: float = 120.0
    max_attempts: int = 5
    retry_seconds: float = 2.0
    health_host: str = "127.0.0.1"
    health_port: int = 8089
    log: Path | None = None
    orthanc: OrthancSettings | None = None
    dicomweb: DicomwebSettings | None = None
    scp: ScpSettings | None = None
    destination: DestinationSettings = field(default_factory=DestinationSettings)
    rules: list[Rule] = field(default_factory=lambda: [Rule()])


PROMPTS = ("self", "skip")
DESTINATIONS = ("orthanc", "dicomweb", "dicom")
_SECTIONS = {"orthanc": OrthancSettings, "dicomweb": DicomwebSettings, "scp": ScpSettings,
             "destination": DestinationSettings}


def _section(cls: type, data: Any, where: str) -> Any:
    check_fields(cls, data, where)
    return cls(**data)


def _rule(data: Any, where: str) -> Rule:
    rule = _section(Rule, data, where)
    if rule.prompt not in PROMPTS:
        raise InputError(f"prompt {rule.prompt!r} in {where} is not one of {', '.join(PROMPTS)}",
                         fix="write prompt: self (segment) or prompt: skip (leave the series alone)")
    for name in ("modality", "series_description", "body_part"):
        pattern = getattr(rule, name)
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as err:
                raise InputError(f"{name} {pattern!r} in {where} is not a regular expression ({err})",
                                 fix="write a Python regular expression, e.g. CT|MR") from err
    return rule


def _resolve(value: Path | None, base: Path) -> Path | None:
    return None if value is None else (base / Path(value).expanduser())


def settings_from_mapping(data: Any, base: Path, where: str = "the serve config") -> NodeSettings:
    """NodeSettings from a parsed file, paths made relative to ``base``."""
    check_fields(NodeSettings, data or {}, where)
    data = dict(data or {})
    for key, cls in _SECTIONS.items():
        if data.get(key) is not None and not is_dataclass(data[key]):
            data[key] = _section(cls, data[key], f"{where} section {key}")
    if "rules" in data:
        data["rules"] = [_rule(item, f"{where} rule {i + 1}") for i, item in enumerate(data["rules"])]
    settings = NodeSettings(**data)
    if settings.destination.kind not in DESTINATIONS:
        raise InputError(f"destination kind {settings.destination.kind!r} in {where} is not one of "
                         f"{', '.join(DESTINATIONS)}", fix="write kind: orthanc, kind: dicomweb or kind: dicom")
    for kind in ("orthanc", "dicomweb"):
        if settings.destination.kind == kind and getattr(settings, kind) is None:
            raise InputError(f"{where} stores SEGs by {kind} but has no {kind} section",
                             fix=f"add {kind}: {{url: ...}}, or use destination kind: dicom")
    if settings.orthanc is None and settings.dicomweb is None and settings.scp is None:
        raise InputError(f"{where} has no orthanc, dicomweb or scp section: no series can arrive",
                         fix="add orthanc: {url: ...} or dicomweb: {url: ...} to follow an archive, or scp: {...} "
                             "to receive C-STOREs")
    if settings.scp is not None and not settings.scp.allowed_ae_titles:
        raise InputError(f"the scp section of {where} allows no AE title, so no modality could send",
                         fix="list the senders' calling AE titles in scp: allowed_ae_titles: [...]")
    if settings.workers < 1:
        raise InputError(f"workers {settings.workers} in {where} is below 1", fix="run at least one worker")
    paths = {f.name: _resolve(getattr(settings, f.name), base) for f in fields(NodeSettings)
             if f.name in ("queue", "storage", "bundle", "log")}
    return NodeSettings(**{**settings.__dict__, **paths})


def load_settings(path: str | Path) -> NodeSettings:
    """Read and check a serve config file."""
    file = existing_file(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise InputError(f"is not valid YAML ({str(err).splitlines()[0]})", path=file,
                         fix="check the indentation and quoting near the named line") from err
    try:
        return settings_from_mapping(data, file.parent.resolve())
    except InputError as err:
        raise InputError(err.problem, path=file, fix=err.fix) from err
