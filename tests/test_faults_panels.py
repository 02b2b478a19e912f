"""A fault the user can act on reaches a panel as one line, never a traceback dialog."""

from __future__ import annotations

import errno

import pytest

from napari_microfossil._progress import Progress
from napari_microfossil.errors import InputError

pytest.importorskip("qtpy")


def _job(exc: BaseException):
    yield Progress("work", 0, 1)
    raise exc


def _drain(gen):
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (InputError("tile: expected a multiple of 32, got 48"), "tile: expected a multiple"),
        (
            OSError(errno.ENOSPC, "No space left on device", "/full/labels.tif"),
            "/full/labels.tif: No space left on device",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "/ro/out"),
            "/ro/out: Permission denied",
        ),
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "scan.tif"),
            "scan.tif: No such file or directory",
        ),
    ],
)
def test_guarded_turns_user_faults_into_one_line(exc, line):
    from napari_microfossil._napari._common import Failed, guarded

    result = _drain(guarded(_job(exc)))
    assert isinstance(result, Failed)
    assert result.message.startswith(line) and "\n" not in result.message


def test_guarded_lets_bugs_through():
    from napari_microfossil._napari._common import guarded

    with pytest.raises(ZeroDivisionError):
        _drain(guarded(_job(ZeroDivisionError("a bug"))))
