"""The blockwise extraction's helpers around its loop: which components must wait for
which (overlapping bounding boxes), and the instance volume written slab by slab."""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import Progress
from ..io.store import LEVEL0, create_output
from .blocks import Components


def overlap_dependencies(start: np.ndarray, stop: np.ndarray, active: np.ndarray) -> np.ndarray:
    """For each component, the last earlier active component whose bounding box
    overlaps its own (0: none); inactive components neither wait nor are waited for.

    `start`, `stop`: ``(n + 1, 3)`` half-open boxes (row 0 unused); `active`: ``(n + 1,)``.
    Candidates come from a coarse grid of cells (a box registers in each cell it
    covers), then the exact box test.
    """
    n = len(start) - 1
    out = np.zeros(n + 1, dtype=np.int64)
    cell = max(16, int(np.median(stop[1:] - start[1:])) * 2) if n else 16
    grid: dict[tuple[int, int, int], list[int]] = {}
    for j in range(1, n + 1):
        if not active[j]:
            continue
        lo = start[j] // cell
        hi = (stop[j] - 1) // cell
        keys = [
            (a, b, c)
            for a in range(int(lo[0]), int(hi[0]) + 1)
            for b in range(int(lo[1]), int(hi[1]) + 1)
            for c in range(int(lo[2]), int(hi[2]) + 1)
        ]
        cand = [k for key in keys for k in grid.get(key, ())]
        if cand:
            ks = np.unique(np.asarray(cand, dtype=np.int64))
            hit = np.all((start[ks] < stop[j]) & (start[j] < stop[ks]), axis=1)
            if hit.any():
                out[j] = int(ks[hit].max())
        for key in keys:
            grid.setdefault(key, []).append(j)
    return out


def iter_write_instances(
    comps: Components,
    lut: np.ndarray,
    path: Path,
    sp: tuple[float, float, float],
    overwrite: bool,
    pool: Executor | None = None,
    ahead: int = 2,
) -> Generator[Progress, None, None]:
    """Write the instance volume slab by slab: each atom mapped to its fossil id.

    With a `pool` (processes of this machine: they share the atom file), its workers
    map and write the slabs, up to `ahead` at once; each is recorded as it completes.
    """
    store = comps.atoms
    shape = tuple(int(n) for n in store.shape)
    out = create_output(path, shape, np.uint32, spacing=sp, overwrite=overwrite)
    step = out.slab
    slabs = [(z0, min(z0 + step, shape[0])) for z0 in range(0, shape[0], step)]
    yield Progress("write", 0, len(slabs))
    if pool is None:
        for k, (z0, z1) in enumerate(slabs, start=1):
            out.write(z0, _mapped_slab(store, lut, z0, z1))
            yield Progress("write", k, len(slabs))
    else:
        queue: deque[tuple[int, int, Future[None]]] = deque()
        todo = iter(slabs)
        try:
            for k in range(1, len(slabs) + 1):
                for z0, z1 in todo:
                    queue.append((z0, z1, pool.submit(_write_slab, store, lut, path, z0, z1)))
                    if len(queue) > ahead:
                        break
                z0, z1, job = queue.popleft()
                job.result()
                out.record(z0, z1)
                yield Progress("write", k, len(slabs))
        finally:
            for _, _, job in queue:
                job.cancel()
    out.finish()


def _mapped_slab(store: Any, lut: np.ndarray, z0: int, z1: int) -> np.ndarray:
    slab = store[z0:z1, :, :]
    for plane in slab:  # in place, one plane at a time: no second slab in memory
        plane[...] = lut[plane]
    return np.asarray(slab)


def _write_slab(store: Any, lut: np.ndarray, path: Path, z0: int, z1: int) -> None:
    """Planes ``z0:z1`` of the instance store `path`, mapped from the atom `store`."""
    import zarr

    array: Any = zarr.open_group(store=str(path), mode="r+")[LEVEL0]
    array[z0:z1] = _mapped_slab(store, lut, z0, z1)
