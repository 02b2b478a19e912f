"""Atomic writes: a temp path beside the target, renamed over it only on success.

Every file the tool writes (volumes, tables, meshes, models, autosaves) goes through
:func:`atomic_path`, so a crash or a cancel never leaves a half-written file under the
user's name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Write to a temp path beside `path`, renamed over `path` only on success.

    The temp name keeps the suffix (writers that choose the format by extension work)
    and starts with a dot (folder readers skip it). On an exception the temp file or
    folder is removed and the exception propagates; `path` is untouched. Missing
    parent folders are created.

    Raises
    ------
    InputError
        If `path` exists and `overwrite` is False.
    """
    target = Path(path)
    if not overwrite and target.exists():
        raise InputError(
            f"{target}: already exists; pass --overwrite (overwrite=True) to replace it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{secrets.token_hex(4)}.tmp{target.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: nothing was written to the temp path")
        if tmp.is_dir() and target.is_dir():
            shutil.rmtree(target)  # os.replace cannot replace a non-empty folder
        os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise
