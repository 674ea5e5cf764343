"""Which series are segmented: the first rule whose Modality, SeriesDescription and BodyPartExamined regexes
all match (full match, case-insensitive; an unset field matches anything). Non-image series (SEG, RTSTRUCT, SR,
presentation states...) are never segmented, so the node's own SEGs do not come back to it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge_medsam.serve.config import Rule

NOT_IMAGES = frozenset({"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "SR", "PR", "KO", "DOC", "REG", "FID"})


@dataclass(frozen=True)
class SeriesTags:
    """The series-level tags the rules read."""

    modality: str = ""
    series_description: str = ""
    body_part: str = ""


def _matches(pattern: str | None, value: str) -> bool:
    return pattern is None or re.fullmatch(pattern, value, flags=re.IGNORECASE) is not None


def select_rule(rules: list[Rule], tags: SeriesTags) -> Rule | None:
    """The rule that decides this series, or None when none matches (or it holds no images)."""
    if tags.modality.upper() in NOT_IMAGES:
        return None
    for rule in rules:
        if (_matches(rule.modality, tags.modality) and _matches(rule.series_description, tags.series_description)
                and _matches(rule.body_part, tags.body_part)):
            return rule
    return None
