"""Shared assertion for the I/O tests: a bad input raises InputError naming the file and a fix."""

from pathlib import Path

import pytest

from edge_medsam import InputError


def raises_for(path: Path, call, *args, match: str | None = None, **kwargs) -> InputError:
    """Call ``call`` and check it raises InputError whose message names ``path`` and says "fix:"."""
    with pytest.raises(InputError) as info:
        call(*args, **kwargs)
    text = str(info.value)
    assert Path(path).name in text and "fix:" in text, text
    if match:
        assert match in text, text
    return info.value
