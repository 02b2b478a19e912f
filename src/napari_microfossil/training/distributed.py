"""Multi-process training under ``torchrun`` (PyTorch DistributedDataParallel).

``torchrun --nproc_per_node N ...`` starts N copies of a program and tells each its place
through the environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``). :func:`distributed_session` reads those variables (here, and nowhere
else), joins the process group (NCCL on CUDA, gloo on the CPU), picks this process's
device (``cuda:LOCAL_RANK``) and leaves the group at the end. Without those variables it
does nothing, so the same program runs unchanged as a single process.

Inside a session :func:`~napari_microfossil.training.iter_train` wraps the network in
DistributedDataParallel by itself; the small helpers here (:func:`broadcast_object`,
:func:`barrier`, :func:`all_reduce_float`) are no-ops when no process group is running.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import InputError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Environment variables a launcher (torchrun) must set for a distributed run.
LAUNCHER_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly one-process) run.

    ``backend`` is None when no process group was started (plain single process).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str | None = None
    device: Any = None  # torch.device, or None to let the caller resolve one

    @property
    def active(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """True on the process that validates, writes files and prints (rank 0)."""
        return self.rank == 0


def launcher_env(environ: Mapping[str, str] | None = None) -> tuple[int, int, int] | None:
    """``(rank, local_rank, world_size)`` set by torchrun, or None outside a launcher.

    Raises
    ------
    InputError
        If the variables are present but not integers, or inconsistent.
    """
    env = os.environ if environ is None else environ
    if not all(v in env for v in LAUNCHER_VARS):
        return None
    try:
        world, rank, local = (int(env[v]) for v in LAUNCHER_VARS)
    except ValueError:
        got = {v: env[v] for v in LAUNCHER_VARS}
        raise InputError(
            f"torchrun environment: expected integer {LAUNCHER_VARS}, got {got}"
        ) from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise InputError(
            f"torchrun environment: expected 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0, "
            f"got RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}"
        )
    return rank, local, world


def is_distributed() -> bool:
    """True while a torch.distributed process group is running in this process."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return False
    return bool(dist.is_available() and dist.is_initialized())


@contextmanager
def distributed_session(
    device: Any = None,
    *,
    environ: Mapping[str, str] | None = None,
    timeout_s: float = 3600.0,
) -> Iterator[DistributedContext]:
    """Join torchrun's process group for the duration of a ``with`` block.

    Parameters
    ----------
    device : str or torch.device, optional
        The device asked for (``"auto"``, ``"cpu"``, ``"cuda"``...). Under torchrun a
        CUDA device becomes ``cuda:LOCAL_RANK``: one GPU per process.
    environ : mapping, optional
        Where to read the launcher's variables (default ``os.environ``).
    timeout_s : float
        How long a process waits for the others at a collective (rank 0 validating and
        writing the model while the others wait counts), in seconds.

    Yields
    ------
    DistributedContext
        ``active`` False (and ``device`` None: resolve it as usual) outside torchrun.

    Raises
    ------
    InputError
        If torch.distributed is unavailable, or there are fewer GPUs than local processes.
    """
    where = launcher_env(environ)
    if where is None:
        yield DistributedContext()
        return
    import torch
    import torch.distributed as dist

    from ..device import resolve_device

    rank, local_rank, world = where
    if not dist.is_available():
        raise InputError("torchrun: this PyTorch build has no torch.distributed support")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if dev.type == "cuda":
        n_gpu = torch.cuda.device_count()
        if local_rank >= n_gpu:
            raise InputError(
                f"torchrun: LOCAL_RANK {local_rank} needs GPU {local_rank}, but this machine has "
                f"{n_gpu}; use --nproc_per_node {n_gpu} or fewer"
            )
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    elif dev.type == "cpu":
        backend = "gloo"
    else:
        raise InputError(f"torchrun: device {dev.type!r} cannot be used for DDP; use cuda or cpu")
    started = False
    if not dist.is_initialized():
        dist.init_process_group(
            backend,
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=timeout_s),
            # NCCL: bind the GPU now, so collectives never guess (and warn about) it.
            device_id=dev if backend == "nccl" else None,
        )
        started = True
    log.info("rank %d/%d (local %d) on %s with %s", rank, world, local_rank, dev, backend)
    ok = False
    try:
        yield DistributedContext(rank, local_rank, world, backend, dev)
        ok = True
    finally:
        if started:
            if ok:  # after an error the others may never arrive: don't wait for them
                dist.barrier()
            dist.destroy_process_group()


def broadcast_object(obj: T, *, src: int = 0) -> T:
    """``obj`` as held by rank ``src``, on every rank (``obj`` itself when not distributed)."""
    if not is_distributed():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]  # type: ignore[no-any-return]


def barrier() -> None:
    """Wait until every rank gets here (no-op when not distributed)."""
    if is_distributed():
        import torch.distributed as dist

        dist.barrier()


def all_reduce_float(value: float, *, op: str, device: torch.device) -> float:
    """Sum, mean or max of one number over the ranks (``value`` when not distributed)."""
    if not is_distributed():
        return value
    import torch
    import torch.distributed as dist

    ops = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}
    if op not in ops:
        raise ValueError(f"op: expected one of {sorted(ops)}, got {op!r}")
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=ops[op])
    out = float(t.item())
    return out / dist.get_world_size() if op == "mean" else out


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    if not is_distributed():
        return 0
    import torch.distributed as dist

    return int(dist.get_rank())
