"""Stored files that exist but cannot be read: one :class:`ReadError` naming the file.

Two kinds of fault reach a reader. A named pipe, a socket or a device given as a scan
would block it forever: :func:`check_regular` refuses them before anything is opened.
Corrupt or truncated bytes make a decoder fail (imagecodecs, numcodecs...), on open or
much later, when a lazy volume is read chunk by chunk inside segmentation or training:
:func:`reading` turns that failure into a ReadError naming the file, wherever it happens,
so the command line prints one line and the napari panels show one notification.

tifffile reports a damaged file (a page offset past the end of a truncated file, a
series that no longer fits its pages) by logging an error and reading fewer pages;
:func:`reading` keeps those lines off the terminal and makes them a ReadError, never
a silently shorter volume.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError
from .volume import one_line

logger = logging.getLogger(__name__)

#: tifffile's log messages that mean the file's structure is damaged (truncated or
#: overwritten): the file is refused. Other tifffile messages are passed on as warnings.
_DAMAGED = re.compile(r"invalid (page )?offset|corrupt|truncat|failed to reshape", re.I)


class ReadError(InputError):
    """A file or store that exists but cannot be read: corrupt, truncated, or not a
    regular file. The message names the file; the command line exits with 2."""


def check_regular(path: str | os.PathLike[str]) -> None:
    """Refuse a path that is neither a regular file nor a folder (a named pipe, socket
    or device), which a reader would block on or read garbage from.

    Raises
    ------
    ReadError
        Naming the path and what it is.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ReadError(f"{path}: cannot open ({one_line(exc)})") from exc
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kinds = (
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    raise ReadError(
        f"{path}: is {kind}, not a file or folder; expected a scan saved to disk "
        f"(reading it could block forever)"
    )


class _Capture(logging.Filter):
    """Keeps tifffile's log records of one thread off the terminal, for :func:`reading`."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        self.records.append(record)
        return False


def _tifffile_text(record: logging.LogRecord) -> str:
    """A tifffile message without the object it starts with (``<tifffile.TiffPages @8>``)."""
    return re.sub(r"^<[^>]*>\s*", "", " ".join(record.getMessage().split()))[:300]


@contextmanager
def reading(path: str | os.PathLike[str], what: str = "cannot read pixels") -> Iterator[None]:
    """Read `path` inside this block: any failure becomes one :class:`ReadError`.

    ``"{path}: {what} ({cause}); the file may be corrupt or truncated"``. An
    :class:`~napari_microfossil.errors.InputError` passes unchanged, and so do
    ``MemoryError`` and ``KeyboardInterrupt`` (they say nothing about the file).
    tifffile's log lines from this thread are held back: those that say the file is
    damaged raise a ReadError at the end of the block, the others are logged as
    warnings naming the file.

    Raises
    ------
    ReadError
        If the block raised, or tifffile found the file damaged.
    """
    capture = _Capture()
    tiff_log = logging.getLogger("tifffile")
    tiff_log.addFilter(capture)
    try:
        yield
    except (InputError, MemoryError):
        raise
    except Exception as exc:
        cause = one_line(exc)
        damaged = [_tifffile_text(r) for r in capture.records if _DAMAGED.search(r.getMessage())]
        if damaged and damaged[0] not in cause:
            cause = f"{cause}; {damaged[0]}"
        raise ReadError(f"{path}: {what} ({cause}); the file may be corrupt or truncated") from exc
    finally:
        tiff_log.removeFilter(capture)
    for record in capture.records:
        text = _tifffile_text(record)
        if record.levelno >= logging.ERROR and _DAMAGED.search(text):
            raise ReadError(f"{path}: {what} ({text}); the file is corrupt or truncated")
    for record in capture.records:
        level = logging.WARNING if record.levelno >= logging.WARNING else logging.DEBUG
        logger.log(level, "%s: %s", Path(path), _tifffile_text(record))
