"""A fault the user can act on reaches a panel, or the command line, as one line."""

from __future__ import annotations

import errno

import pytest

from napari_microfossil._progress import Progress, drain
from napari_microfossil.errors import InputError

pytest.importorskip("qtpy")


def _job(exc: BaseException):
    yield Progress("work", 0, 1)
    raise exc


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

    result = drain(guarded(_job(exc)))
    assert isinstance(result, Failed)
    assert result.message.startswith(line) and "\n" not in result.message


def test_guarded_lets_bugs_through():
    from napari_microfossil._napari._common import guarded

    with pytest.raises(ZeroDivisionError):
        drain(guarded(_job(ZeroDivisionError("a bug"))))


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (
            OSError(errno.ENOSPC, "No space left on device", "/full/l.tif"),
            "microfossil info: error: /full/l.tif: No space left on device",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "/ro/x"),
            "microfossil info: error: /ro/x: Permission denied",
        ),
        (OSError(errno.EIO, "Input/output error"), "microfossil info: error: Input/output error"),
    ],
)
def test_cli_reports_a_machine_fault_in_one_line(monkeypatch, capsys, exc, line):
    """A full disk while writing (or any OSError) is one line and exit 2, not a traceback."""
    from napari_microfossil import cli
    from napari_microfossil.cli import info

    def fail(args):
        raise exc

    monkeypatch.setattr(info, "run", fail)
    assert cli.main(["info", "default"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [line]
