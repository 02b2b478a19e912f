"""Run a workflow on a Dask cluster: start a local one, or connect to a running one.

``microfossil segment`` and ``microfossil fossils`` take ``--workers N`` (start a
:class:`distributed.LocalCluster` of N worker processes on this machine, one thread
each, closed at the end) or ``--scheduler ADDRESS`` (connect a
:class:`distributed.Client` to a cluster that is already running -- started by
``dask scheduler`` / ``dask worker``, dask-jobqueue on SLURM or PBS, dask-cloudprovider
...; it is left running). The two are exclusive; with neither, a workflow runs in this
process as before.

``distributed`` is imported here only when a cluster is asked for, so the normal path
never needs it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)

#: Seconds to wait for an existing scheduler to answer before giving up.
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ClusterOptions:
    """Where a workflow runs: this process, a local cluster, or an existing one.

    Parameters
    ----------
    workers : int, optional
        Start a local cluster of this many worker processes (>= 1), one thread each.
    scheduler : str, optional
        Address of a running Dask scheduler, e.g. ``"tcp://10.0.0.5:8786"``.

    Raises
    ------
    InputError
        Naming ``--workers`` or ``--scheduler``: both given, a count < 1, an empty
        address, or ``distributed`` not installed.
    """

    workers: int | None = None
    scheduler: str | None = None

    def __post_init__(self) -> None:
        w, s = self.workers, self.scheduler
        if w is not None and s is not None:
            raise InputError(
                "--workers: cannot be combined with --scheduler; --workers N starts a "
                "local cluster, --scheduler ADDRESS uses a running one: give one of them"
            )
        if w is not None and (isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1):
            raise InputError(f"--workers: expected an integer >= 1 (processes), got {w!r}")
        if s is not None and (not isinstance(s, str) or not s.strip()):
            raise InputError(
                f"--scheduler: expected a scheduler address such as tcp://host:8786, got {s!r}"
            )
        object.__setattr__(self, "workers", None if w is None else int(w))
        object.__setattr__(self, "scheduler", None if s is None else s.strip())
        if self.wanted and importlib.util.find_spec("distributed") is None:
            option = "--workers" if w is not None else "--scheduler"
            raise InputError(f"{option}: needs the 'distributed' package (pip install distributed)")

    @property
    def wanted(self) -> bool:
        """Whether a cluster is asked for at all."""
        return self.workers is not None or self.scheduler is not None

    @property
    def torch_threads(self) -> int | None:
        """CPU threads each worker gives PyTorch: this machine's cores shared among the
        local workers; None for a cluster started elsewhere (its workers' own setting)."""
        if self.workers is None:
            return None
        return max(1, usable_cores() // self.workers)


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def connect(options: ClusterOptions, *, timeout: float | None = None) -> Iterator[Any]:
    """A :class:`distributed.Client` on the cluster `options` name, closed on exit.

    With ``workers`` a local cluster of that many processes (one thread each, no
    dashboard) is started and closed with the client; with ``scheduler`` the client
    connects to it and only the client is closed.

    Raises
    ------
    InputError
        ``--scheduler`` when no scheduler answers at the address within `timeout`
        seconds (default :data:`CONNECT_TIMEOUT_S`), or the address cannot be parsed.
    ValueError
        If `options` asks for no cluster.
    """
    if not options.wanted:
        raise ValueError("connect: the options ask for no cluster (workers and scheduler None)")
    from distributed import Client, LocalCluster

    if options.scheduler is not None:
        try:
            wait = CONNECT_TIMEOUT_S if timeout is None else timeout
            client = Client(options.scheduler, timeout=wait, set_as_default=False)
        except (OSError, ValueError, TimeoutError) as exc:
            text = " ".join(str(exc).split()) or type(exc).__name__
            raise InputError(
                f"--scheduler: no Dask scheduler answers at {options.scheduler!r} ({text}); "
                "check the address that `dask scheduler` printed and that it is running"
            ) from None
        try:
            log.info(
                "connected to %s (%d worker threads)", options.scheduler, worker_threads(client)
            )
            yield client
        finally:
            client.close()
        return
    import dask

    # Dask starts workers with MALLOC_TRIM_THRESHOLD_ set, which turns off glibc's
    # reuse of large freed blocks: numpy's big temporaries then cost a fresh mmap each,
    # measured 3x the CPU time of the segmentation's per-tile work. Unset it.
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = LocalCluster(
            n_workers=options.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: never a clash with another cluster's
            scheduler_kwargs={"dashboard": False},
            silence_logs=logging.ERROR,
        )
    try:
        client = Client(cluster, set_as_default=False)
        try:
            log.info("started a local cluster of %d workers", options.workers)
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def worker_threads(client: Any) -> int:
    """Threads of all the cluster's workers together (at least 1: a cluster that is
    still starting its workers runs the tasks when they come)."""
    return max(1, sum(int(n) for n in client.nthreads().values()))
