"""Settings mappings (recipe sections, stored configs, options) checked against the dataclass that takes them:
unknown keys name the nearest valid one, and values must fit the field's type."""

from __future__ import annotations

import contextlib
import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from edge_medsam.errors import InputError

_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text", Path: "a path",
          type(None): "null", list: "a list", tuple: "a list", dict: "a mapping"}


def check_keys(given: Iterable[str], known: Iterable[str], where: str) -> None:
    """Raise the one-line error for keys of ``given`` not in ``known``, suggesting the nearest valid key."""
    known = sorted(known)
    unknown = sorted(set(given) - set(known), key=str)
    if not unknown:
        return
    fixes = [_nearest(key, known) for key in unknown]
    fix = fixes[0] if len(unknown) == 1 else "; ".join(f"{k!r}: {f}" for k, f in zip(unknown, fixes, strict=True))
    names = ", ".join(map(repr, unknown))
    raise InputError(f"unknown key{'s' * (len(unknown) > 1)} {names} in {where}", fix=fix)


def check_choice(value: str, choices: Iterable[str], what: str) -> None:
    """Raise the one-line error for a ``value`` not among ``choices``, suggesting the nearest one."""
    choices = list(choices)
    if value not in choices:
        raise InputError(f"unknown {what} {value!r}", fix=_nearest(str(value), choices))


def check_fields(cls: type, data: Any, where: str, taken: Iterable[str] = ()) -> None:
    """Check a mapping's keys against the fields of ``cls`` (less ``taken``: those the caller sets) and each
    value against its field's type (a mapping stands for a dataclass, a list for a tuple, an int for a float)."""
    if not isinstance(data, Mapping):
        raise InputError(f"{where} is {data!r}, not a mapping", fix=f"write {where} as 'key: value' lines")
    clash = sorted(set(data) & set(taken))
    if clash:
        raise InputError(f"{where} cannot set {', '.join(map(repr, clash))}", fix="remove it: it is set elsewhere")
    check_keys(data, {f.name for f in fields(cls)} - set(taken), where)
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if not _fits(value, hints[key]):
            word = _word(hints[key])
            raise InputError(f"{key}={value!r} in {where} is not {word}",
                             fix=f"set {key} in {where} to {word}{_quoted(value, hints[key])}")


def from_mapping(cls: type, data: Any, where: str, **fixed: Any) -> Any:
    """``cls(**data, **fixed)`` once ``data`` passed :func:`check_fields`."""
    check_fields(cls, data, where, taken=fixed)
    return cls(**data, **fixed)


def _nearest(key: str, known: list[str]) -> str:
    near = difflib.get_close_matches(key, known, n=1)
    return f"did you mean {near[0]!r}?" if near else f"use one of {', '.join(known)}"


def _fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if hint is Any:
        return True
    if hint in (int, float):
        number = isinstance(value, int if hint is int else (int, float)) and not isinstance(value, bool)
        return number and math.isfinite(value)
    if hint is Path:
        return isinstance(value, (str, Path))
    if is_dataclass(hint):
        return isinstance(value, (Mapping, hint))
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(_fits, value, args))
        return not args or all(_fits(item, args[0]) for item in value)
    return isinstance(value, origin or hint)


def _word(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_word(arg) for arg in args)
    if origin in (list, tuple) and args:
        size = "" if origin is list or args[-1] is Ellipsis else f" of {len(args)}"
        return f"a list{size} ({_word(args[0])} each)"
    hint = origin or hint
    return _WORDS.get(hint, "a mapping" if is_dataclass(hint) else getattr(hint, "__name__", str(hint)))


def _quoted(value: Any, hint: Any) -> str:
    """A hint when YAML read a number as text."""
    if isinstance(value, str) and _fits(0, hint):
        with contextlib.suppress(ValueError):
            float(value)
            return " (YAML reads quoted numbers and 1e-3 as text: write 3 or 1.0e-3)"
    return ""
