"""Rules for the files a use case will write, checked before any work."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def check_output(path: Path, overwrite: bool, option: str = "-o") -> None:
    """Refuse an output that exists (unless `overwrite`) or whose folder does not.

    Raises
    ------
    InputError
        Naming `option`, the path, and how to fix it.
    """
    if path.exists() and not overwrite:
        raise InputError(f"{option}: {path} already exists; pass --overwrite to replace it")
    if not path.parent.exists():
        raise InputError(f"{option}: folder {path.parent} does not exist")
