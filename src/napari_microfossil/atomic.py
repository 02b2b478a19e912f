"""Atomic writes: a temp path beside the target, renamed over it only on success.

Every file the tool writes (volumes, tables, meshes, models, autosaves) goes through
:func:`atomic_path`, so a crash or a cancel never leaves a half-written file under the
user's name.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError

#: A temp file of an earlier write untouched this long was left by a killed run.
STALE_TEMP_S = 600.0


def _temp_name(target: Path, token: str) -> Path:
    return target.with_name(f".{target.stem}.{token}.tmp{target.suffix}")


#: What :func:`_temp_name` makes of any target: ``.<stem>.<8 hex>.tmp<suffix>``.
_ANY_TEMP = ".*." + "[0-9a-f]" * 8 + ".tmp*"


def remove_stale_temps(target: Path, *, older_than_s: float = STALE_TEMP_S) -> list[Path]:
    """Remove what killed writes left in `target`'s folder; returns what was removed.

    A write that is killed (``kill -9``, a power cut) cannot clean up after itself; the
    next write into the same folder does, whatever file it writes. Only this module's
    temp names (``.<stem>.<8 hex digits>.tmp<suffix>``) whose last change is older than
    `older_than_s` go: a write in progress keeps changing its temp file.
    """
    return remove_stale(target.parent, _ANY_TEMP, older_than_s=older_than_s)


def remove_stale(
    folder: Path, pattern: str = ".*.tmp.*", *, older_than_s: float = STALE_TEMP_S
) -> list[Path]:
    """Remove the temp files and folders matching `pattern` in `folder` that nothing has
    changed for `older_than_s` seconds; returns what was removed."""
    removed = []
    now = time.time()
    for stale in folder.glob(pattern):
        try:
            if now - stale.lstat().st_mtime <= older_than_s:
                continue
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            else:
                stale.unlink()
            removed.append(stale)
        except OSError:
            continue  # another process got there first, or it is not ours to remove
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Write to a temp path beside `path`, renamed over `path` only on success.

    The temp name keeps the suffix (writers that choose the format by extension work)
    and starts with a dot (folder readers skip it). On an exception the temp file or
    folder is removed and the exception propagates; `path` is untouched. Missing
    parent folders are created, and temp files that killed writes into the same folder
    left behind are removed (:func:`remove_stale_temps`).

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
    remove_stale_temps(target)
    tmp = _temp_name(target, secrets.token_hex(4))
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def work_dir(prefix: str, folder: str | os.PathLike[str] | None = None) -> Path:
    """A new temp folder ``<prefix><host>-<pid>-<random>`` in `folder` (default the
    system's temp folder), for a job's scratch files; the caller removes it.

    First removes the folders with this `prefix` that a process on this machine left
    when it was killed (its pid no longer runs): a killed job's scratch files, often
    gigabytes (a memory-mapped accumulator, a blockwise label file), do not stay forever.
    Folders of other machines (a shared disk) and of running processes are left alone.
    """
    import socket
    import tempfile

    host = socket.gethostname().replace("-", "_")
    where = Path(folder) if folder is not None else Path(tempfile.gettempdir())
    for old in where.glob(f"{glob.escape(prefix)}{glob.escape(host)}-*-*"):
        pid = old.name[len(prefix) + len(host) + 1 :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{host}-{os.getpid()}-", dir=where))
