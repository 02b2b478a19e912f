"""What every command shares: one-line argparse errors and warnings, tqdm progress for
engine generators, and the checks of common options."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn, TextIO, TypeVar

from .._progress import Progress
from ..errors import InputError
from ..workflows.outputs import check_output

__all__ = [
    "Parser",
    "add_cluster_options",
    "add_common_options",
    "check_output",
    "in_cli_terms",
    "plain_warnings",
    "progress",
    "spacing_arg",
]

T = TypeVar("T")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _PlainFormatter(logging.Formatter):
    """A log record as ``microfossil <command>: warning: <message>``, on one line."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        text = " ".join(record.getMessage().split())
        return f"{self.prefix}: {record.levelname.lower()}: {text}"


@contextmanager
def plain_warnings(command: str, *, verbose: bool = False) -> Iterator[None]:
    """Show warnings and log records as one plain line each on stderr:
    ``microfossil <command>: warning: <message>``, never Python's source line.

    Logging is set up only if nothing set it up before (as ``logging.basicConfig``):
    INFO and up with `verbose`, else WARNING and up.
    """
    prefix = f"microfossil {command}"
    # Dask's scheduler and workers (--workers) log each step at INFO: show their
    # warnings only, unless asked (read when distributed is imported, workers included).
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "info" if verbose else "warning")
    handler = logging.StreamHandler()
    handler.setFormatter(_PlainFormatter(prefix))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        text = " ".join(str(message).split())
        print(f"{prefix}: warning: {text}", file=file or sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def progress(gen: Generator[Progress, None, T], *, quiet: bool = False) -> T:
    """Drain an engine generator with one tqdm bar per stage."""
    from tqdm import tqdm

    bar = None
    stage = None
    # In a log file (not a terminal) a bar line every few seconds is enough.
    interval = 0.2 if sys.stderr.isatty() else 10.0
    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            if quiet:
                continue
            if p.stage != stage or bar is None:
                if bar is not None:
                    bar.close()
                stage = p.stage
                bar = tqdm(
                    total=p.total,
                    desc=p.stage,
                    unit="step",
                    dynamic_ncols=True,
                    file=sys.stderr,
                    mininterval=interval,
                )
            if bar.total != p.total:
                bar.total = p.total
            loss = p.info.get("loss")
            if loss is not None:
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            if p.done > bar.n:
                bar.update(p.done - bar.n)  # tqdm rate-limits the redraws
    finally:
        if bar is not None:
            bar.close()
        gen.close()


def spacing_arg(values: Sequence[float] | None) -> tuple[float, float, float] | None:
    if values is None:
        return None
    if len(values) == 1:
        return (values[0],) * 3  # type: ignore[return-value]
    if len(values) == 3:
        return tuple(values)  # type: ignore[return-value]
    raise InputError(
        f"--voxel-size: expected 1 value (isotropic) or 3 values Z Y X in µm, got {len(values)}"
    )


def add_common_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--quiet", action="store_true", help="no progress bars")
    sp.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def add_cluster_options(sp: argparse.ArgumentParser) -> None:
    """``--workers N`` | ``--scheduler ADDRESS``: run on a Dask cluster (exclusive)."""
    group = sp.add_mutually_exclusive_group()
    group.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="run on a local Dask cluster of N worker processes (one model each)",
    )
    group.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on a running Dask cluster, e.g. tcp://host:8786 (the files must be "
        "at the same paths on its workers: a shared filesystem)",
    )


def in_cli_terms(message: str, options: dict[str, str]) -> str:
    """An engine message ``"outdir: ..."`` as the user typed it: ``"-o: ..."``.

    Workflow requests name their fields; `options` maps those names to the command's
    options (``{"outdir": "-o"}``), so an error names what the user can change.
    """
    name, sep, rest = message.partition(":")
    if sep and name in options:
        return f"{options[name]}:{rest}"
    return message
