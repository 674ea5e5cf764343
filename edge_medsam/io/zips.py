"""Safe zip extraction: no absolute paths, ``..`` or links, a bounded number of members and unpacked bytes."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath

from edge_medsam.errors import InputError
from edge_medsam.io.files import ZIP_ERRORS

MAX_MEMBERS = 100_000
_FIX = "re-create the zip from the folder's files (relative paths, no links)"
_TOO_BIG_FIX = "unzip it yourself and give the folder"


def _member_path(info: zipfile.ZipInfo, root: Path, archive: Path) -> Path:
    """Where a member goes under ``root``; InputError for a link or a path that leaves ``root``."""
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InputError(f"zip member {name!r} is a symbolic link", path=archive, fix=_FIX)
    target = root.joinpath(*parts).resolve()
    if name.startswith("/") or ":" in name.partition("/")[0] or ".." in parts or not target.is_relative_to(root):
        raise InputError(f"zip member {name!r} points outside the archive", path=archive, fix=_FIX)
    return target


def extract_zip(archive: Path, destination: Path, *, max_bytes: int, max_members: int = MAX_MEMBERS) -> None:
    """Extract ``archive`` into the folder ``destination``; InputError for an unsafe, oversized or damaged zip."""
    try:
        with zipfile.ZipFile(archive) as zf:
            root = destination.resolve()
            members = [(info, _member_path(info, root, archive)) for info in zf.infolist()]
            files = [(info, target) for info, target in members if not info.is_dir()]
            if len(files) > max_members:
                raise InputError(f"zip holds {len(files)} files, over the limit of {max_members}", path=archive,
                                 fix=_TOO_BIG_FIX)
            if sum(info.file_size for info, _ in files) > max_bytes:
                raise InputError(f"zip expands to more than {max_bytes} bytes", path=archive, fix=_TOO_BIG_FIX)
            written = 0
            for info, target in files:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)  # the sizes in the zip directory may lie; count what comes out
                        if written > max_bytes:
                            raise InputError(f"zip expands to more than {max_bytes} bytes", path=archive,
                                             fix=_TOO_BIG_FIX)
                        out.write(chunk)
    except InputError:
        raise
    except ZIP_ERRORS as err:
        raise InputError(f"not a readable zip archive, truncated or corrupt ({err})", path=archive,
                         fix="copy it again; encrypted zips are not supported") from err
