"""Rules for the files a use case will write, checked before any work.

Every request runs its outputs through :func:`check_output` (and a folder of outputs
through :func:`check_output_folder`): an output never exists unasked, never lands in a
missing or read-only folder, is never one of the request's inputs, and a label volume
is never written under a name that says another format.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import InputError

#: Suffixes of the TIFF files label and confidence volumes are written as.
TIFF_OUTPUT_SUFFIXES = (".tif", ".tiff")


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (after ``~`` and links are resolved)."""
    return a.expanduser().resolve() == b.expanduser().resolve()


def _within(inner: Path, outer: Path) -> bool:
    a, b = inner.expanduser().resolve(), outer.expanduser().resolve()
    return a == b or b in a.parents


def check_not_input(
    path: Path, inputs: Iterable[Path | None], option: str = "-o", *, inside: bool = False
) -> None:
    """Refuse an output that is one of `inputs` (or, with `inside`, holds one).

    Raises
    ------
    InputError
        Naming `option` and the input it would replace.
    """
    for given in inputs:
        if given is None:
            continue
        given = Path(given)
        if same_file(path, given) or (inside and _within(given, path)):
            raise InputError(
                f"{option}: writing {path} would replace the input {given}; name another output"
            )


def writable(folder: Path) -> bool:
    """Whether this process may create files in the existing `folder`."""
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def check_writable_folder(folder: Path, option: str = "-o") -> None:
    """Refuse a folder (or, if missing, its nearest existing parent) we cannot write to."""
    probe = folder.expanduser()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not writable(probe):
        raise InputError(f"{option}: folder {probe} is not writable; choose another folder")


def check_output(
    path: Path,
    overwrite: bool,
    option: str = "-o",
    *,
    inputs: Iterable[Path | None] = (),
    suffixes: Sequence[str] | None = None,
) -> None:
    """Refuse an output file that cannot or should not be written.

    Parameters
    ----------
    path : Path
        The file to write.
    overwrite : bool
        Whether an existing file may be replaced.
    option : str
        How the front end names the output (for the message).
    inputs : paths
        The request's inputs; the output must be none of them, even with `overwrite`.
    suffixes : sequence of str, optional
        Suffixes the output may end in (lower case, e.g. :data:`TIFF_OUTPUT_SUFFIXES`).

    Raises
    ------
    InputError
        Naming `option`, the path, and how to fix it: an input, a wrong suffix, an
        existing file (without `overwrite`), a folder, a missing or read-only folder.
    """
    check_not_input(path, inputs, option)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise InputError(
            f"{option}: expected a file name ending in {' or '.join(suffixes)}, got {path.name!r}"
        )
    if path.exists() and not overwrite:
        raise InputError(f"{option}: {path} already exists; pass --overwrite to replace it")
    if path.is_dir():
        raise InputError(f"{option}: {path} is a folder; give a file name")
    if not path.parent.exists():
        raise InputError(f"{option}: folder {path.parent} does not exist")
    check_writable_folder(path.parent, option)


def check_output_folder(
    folder: Path, option: str = "-o", *, inputs: Iterable[Path | None] = ()
) -> None:
    """Refuse an output folder that is a file, is or holds an input, or is not writable.

    A missing folder is fine (it is created) when its nearest existing parent is
    writable.
    """
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{option}: {folder} exists and is not a folder")
    check_not_input(folder, inputs, option, inside=False)
    check_writable_folder(folder, option)


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux ``MemAvailable``), or None
    where that cannot be told cheaply."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_memory(need: int, option: str, what: str) -> None:
    """Refuse a request whose known peak memory `need` (bytes) exceeds what is available.

    Raises
    ------
    InputError
        Naming `option`, `what` would be made and the size it needs.
    """
    have = available_memory()
    if have is not None and need > have:
        raise InputError(
            f"{option}: {what} needs about {_size(need)} of memory, this machine has "
            f"{_size(have)} available; ask for a smaller one"
        )


#: Bytes written per voxel, compressed, as measured on the 256³ sample (zlib TIFF):
#: a uint16 scan 0.47, class labels 0.01, confidence 0.05, uint32 instances 0.01.
#: Noisier data compresses less, so these are lower bounds: a check with them refuses
#: only what would surely not fit.
COMPRESSED_BYTES_PER_VOXEL = {"scan": 0.47, "labels": 0.01, "confidence": 0.05, "instances": 0.01}


def free_space(folder: Path) -> int | None:
    """Bytes free for this user on the file system of `folder` (or of its nearest
    existing parent); None where that cannot be told."""
    import shutil

    p = Path(folder)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return int(shutil.disk_usage(p).free)
    except OSError:
        return None


def expected_bytes(voxels: int, *kinds: str) -> int:
    """A lower bound on the bytes written for `voxels` voxels of each of `kinds` (keys of
    :data:`COMPRESSED_BYTES_PER_VOXEL`)."""
    return int(voxels * sum(COMPRESSED_BYTES_PER_VOXEL[k] for k in kinds))


def check_disk_space(folder: Path, need: int, option: str, what: str) -> None:
    """Refuse a request whose outputs would surely not fit on the disk of `folder`.

    `need` is a lower bound (:func:`expected_bytes`); a request can still fill the disk
    while it writes, and the writers then remove what they left half-written.

    Raises
    ------
    InputError
        Naming `option`, what would be written, the space it needs and what is free.
    """
    have = free_space(folder)
    if have is not None and need > have:
        raise InputError(
            f"{option}: {what} needs at least {_size(need)} of disk space, "
            f"{folder} has {_size(have)} free; free some space or write elsewhere"
        )
