"""Malformed DICOM header values: name the element, and read the file without it where the pixels do not need it.

pydicom keeps a number element (VR IS or DS) that holds letters as text, and raises on a binary number of the
wrong length only when it is read; either would surface later as a bare ValueError far from its cause.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterator

from pydicom import config
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from edge_medsam.errors import InputError
from edge_medsam.io.files import PathLike

_NUMBER_VRS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "US or SS"})
_CONVERSION_ERRORS = (BytesLengthException, ValueError, TypeError, struct.error)
# Without these the stored values cannot be turned into pixels (or modality values).
NEEDED = frozenset({
    "Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "PlanarConfiguration", "NumberOfFrames", "RescaleSlope", "RescaleIntercept", "LUTDescriptor",
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor",
})
_FIX = "correct the element (e.g. with dcmodify) or export the file again from the archive"


def _vr(ds: Dataset, tag: BaseTag) -> str | None:
    element = ds.get_item(tag)
    if element is not None and element.VR:
        return str(element.VR)
    try:
        return dictionary_VR(tag)  # implicit VR files leave it to the dictionary
    except KeyError:
        return None  # a private element: nothing here reads it


def _problem(ds: Dataset, tag: BaseTag, vr: str) -> str | None:
    """What is wrong with a number element's value, or None."""
    try:
        value = ds[tag].value
    except _CONVERSION_ERRORS as err:
        return f"cannot be read as {vr} ({type(err).__name__})"
    values = value if isinstance(value, (list, MultiValue)) else [value]
    text = [v for v in values if isinstance(v, str) and v.strip()]  # valid IS/DS values are numbers here
    if not text:
        return None
    shown = "\\".join(str(v) for v in values)[:40]
    return f"holds '{shown}', not {'an integer' if vr == 'IS' else 'a decimal number'}"


def _malformed(ds: Dataset, within: str = "") -> Iterator[tuple[Dataset, BaseTag, str, str]]:
    """(dataset holding it, tag, name for messages, problem) for every malformed number element, sequences included."""
    for tag in list(ds.keys()):
        vr = _vr(ds, tag)
        keyword = keyword_for_tag(tag)
        name = f"{keyword or 'element'} {tag}{within}"
        if vr == "SQ":
            for item in ds[tag].value or []:
                yield from _malformed(item, within or f" in {keyword or tag}")
        elif vr in _NUMBER_VRS and (problem := _problem(ds, tag, vr)):
            yield ds, tag, name, problem


def drop_malformed(ds: Dataset, path: PathLike) -> None:
    """Raise InputError naming a malformed element the pixels need; remove any other one, with a warning."""
    with config.disable_value_validation():  # pydicom's own warning would not say which file or what follows
        found = list(_malformed(ds))
    for _, _, name, problem in found:
        if name.split()[0] in NEEDED:
            raise InputError(f"the header element {name} {problem}; the pixels cannot be read without it",
                             path=path, fix=_FIX)
    said = set()
    for holder, tag, name, problem in found:
        del holder[tag]
        if (name, problem) not in said:  # one line for the same fault in every per-frame item
            said.add((name, problem))
            warnings.warn(f"{path}: the header element {name} {problem}; read without it", stacklevel=4)
