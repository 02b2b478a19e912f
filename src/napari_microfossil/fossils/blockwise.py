"""Finding fossils out of core: the in-memory extraction's result, block by block.

:func:`iter_extract_fossils_blockwise` gives the same fossils, ids and table as
:func:`~napari_microfossil.fossils.iter_extract_fossils` for a label volume that need
not fit in memory (a lazy zarr view), and writes the instance volume to an OME-Zarr
store block by block. Peak memory is a few blocks plus the largest fossil's bounding
box, not the volume.

1. Components: :func:`~.blocks.iter_label_blocks` labels each block with cc3d (in the
   worker processes, a few blocks ahead), merges labels that touch across block
   boundaries and ranks the components as cc3d ranks them on the whole volume; a
   temporary file holds each voxel's block label (its *atom*).
2. Per component, in rank order, on its bounding-box crop read from the store:
   cavity filling, optional splitting (:func:`~.extract.component_pieces`, the code
   the in-memory path runs), the size limit and the measurements
   (:func:`~.measure.measure_one`). Voxels a component gains or a split reassigns get
   new atoms, written back into the crop, so a later component sees the same
   neighbours the in-memory loop sees. Filling, splitting and measuring run in the
   worker processes, ahead of the loop where no earlier box overlaps; the loop applies
   their results in rank order. With an object check, the objects that pass the limits
   are judged a batch at a time (:mod:`.blockjudge`), as in memory.
3. Ids by size (largest first, ties in component order), then the instance volume:
   each slab of the store mapped atom -> fossil id and written to the output store.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import weakref
from collections import deque
from collections.abc import Generator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import Progress, drain
from ..atomic import work_dir
from ..errors import InputError
from ..io import read_labels
from ..normalise import intensity_range
from .blockjudge import BlockJudge
from .blocks import Components, iter_label_blocks
from .crops import CachedCrops, is_lazy
from .evidence import check_confidence, check_min_confidence, is_sure
from .extract import check_options, component_pieces
from .measure import measure_one
from .objectcheck import ObjectCheck
from .pipeline import iter_write_instances, overlap_dependencies
from .split import sub_box
from .table import FossilTable

logger = logging.getLogger(__name__)

#: Default block edge (voxels): a 256³ block of uint32 labels is 64 MiB.
BLOCK = 256


class _Atoms:
    """Atom -> component rank, growing as components gain cavities or split."""

    def __init__(self, rank_of: np.ndarray) -> None:
        self.base = len(rank_of)
        self.rank = rank_of.astype(np.int64)
        self.n = len(rank_of)
        self.piece: list[int] = []  # of each new atom: its piece, or -1 (its component's)

    def new(self, rank: int, piece: int) -> int:
        if self.n == len(self.rank):
            self.rank = np.concatenate([self.rank, np.zeros(max(16, self.n), np.int64)])
        self.rank[self.n] = rank
        self.piece.append(piece)
        self.n += 1
        return self.n - 1


def iter_extract_fossils_blockwise(
    labels: Any,
    output: str | Path,
    *,
    class_id: int = 1,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    min_voxels: int = 0,
    min_volume_um3: float | None = None,
    split: bool = False,
    split_min_distance_um: float | None = None,
    split_neck_ratio: float = 0.7,
    fill_cavities: bool = True,
    connectivity: int = 26,
    image: Any = None,
    confidence: Any = None,
    min_confidence: float = 0.0,
    object_check: ObjectCheck | None = None,
    block: int | Sequence[int] = BLOCK,
    overwrite: bool = False,
    workdir: str | Path | None = None,
    workers: int = 1,
    executor: Executor | None = None,
) -> Generator[Progress, None, FossilTable]:
    """Find every fossil of one class block by block, as a generator yielding progress.

    Parameters
    ----------
    labels : (Z, Y, X) array-like of int
        Class id per voxel; read one block or one bounding box at a time (basic
        slicing), so it may be a lazy view of a zarr store.
    output : path
        The instance volume, an OME-Zarr store (``instances.zarr``) of uint32 ids.
    class_id, spacing, min_voxels, min_volume_um3, split, split_min_distance_um, split_neck_ratio, fill_cavities, connectivity, min_confidence
        As :func:`~napari_microfossil.fossils.iter_extract_fossils`.
    image : (Z, Y, X) array-like, optional
        The scan, for ``mean_intensity``; only each fossil's bounding box is read.
    confidence : (Z, Y, X) array-like, optional
        The segmentation's confidence (percent), for the confidence limit and the
        object check; only each object's bounding box is read.
    object_check : ObjectCheck, optional
        As :func:`~napari_microfossil.fossils.iter_extract_fossils`: each component's
        objects are judged (and, when splitting, split again) as the loop reaches it,
        with the in-memory rule (:func:`~.objectcheck.iter_check_outcomes`); it reads
        a cube of the scan, labels and confidence around each object, in this process.
    block : int or (bz, by, bx)
        Block edges in voxels (default 256).
    overwrite : bool
        Replace an existing `output`.
    workdir : path, optional
        Where the temporary atom store goes (removed at the end); default beside
        `output`. It holds a uint32 copy of the volume (sparse: blocks without the
        class take no space).
    workers : int
        Processes that label blocks, fill, split and measure fossils while this one
        merges and applies their results in order; 1 (default): a thread of this
        process.
        More start processes with "spawn", which re-imports the calling script: call
        from under ``if __name__ == "__main__":`` (as the CLI does). The result does
        not depend on it. With an `executor`: how many fossils it measures at once.
    executor : concurrent.futures.Executor, optional
        Where to measure the fossils instead, e.g. a Dask cluster's
        (``client.get_executor()``); the caller owns it (it is not shut down). Only
        each fossil's mask and image crop travel to it.

    Yields
    ------
    Progress
        Stage ``"label"`` per block, ``"measure"`` per component (at most about 200
        records), ``"write"`` per slab of the output.

    Returns
    -------
    FossilTable
        Its ``instances`` is a lazy view of `output`; rows and ids equal the
        in-memory result's.

    Raises
    ------
    InputError
        As :func:`~napari_microfossil.fossils.iter_extract_fossils`, a bad `block`, or
        an existing `output` without `overwrite`.
    """
    shape = tuple(int(n) for n in getattr(labels, "shape", ()))
    dtype = np.dtype(getattr(labels, "dtype", np.float64))
    if len(shape) != 3 or not (np.issubdtype(dtype, np.integer) or dtype.kind == "b"):
        raise InputError(
            f"labels: expected a 3D (Z, Y, X) array of integer class ids, "
            f"got shape {shape} dtype {dtype}"
        )
    if image is not None and tuple(getattr(image, "shape", ())) != shape:
        raise InputError(
            f"image: expected the same shape as the labels {shape}, "
            f"got {tuple(getattr(image, 'shape', ()))}"
        )
    opts = check_options(
        class_id=class_id,
        spacing=spacing,
        min_voxels=min_voxels,
        min_volume_um3=min_volume_um3,
        split_min_distance_um=split_min_distance_um,
        split_neck_ratio=split_neck_ratio,
        connectivity=connectivity,
    )
    conf = check_confidence(confidence, shape)
    conf_limit = check_min_confidence(min_confidence)
    if object_check is not None and (image is None or conf is None):
        raise InputError(
            "object_check: needs the scan (image) and the confidence, got "
            f"{'no scan' if image is None else 'no confidence'}"
        )
    bs = _check_block(block)
    out_path = Path(output)
    if out_path.exists() and not overwrite:
        raise InputError(f"output: {out_path} already exists (use --overwrite to replace it)")
    scan = image
    if is_lazy(image):
        image = CachedCrops(image)  # components come in raster order: neighbours share chunks
    if is_lazy(conf):
        conf = CachedCrops(conf)
    judge = None
    if object_check is not None:
        judge = BlockJudge(
            object_check,
            image,
            labels,
            conf,
            opts.class_id,
            intensity_range(scan),  # from whole planes: not through the crop cache
            {
                "split": split,
                "spacing": opts.spacing,
                "min_count": opts.min_count,
                "min_distance_um": split_min_distance_um,
            },
        )
    n_workers = _check_workers(workers)
    tmp = work_dir(".fossils-", workdir or out_path.parent)
    pool = _pool(n_workers) if executor is None else executor
    # On a cluster a task costs more than filling and splitting a small component: those
    # stay on this machine, beside the loop.
    find_pool = pool if executor is None else ThreadPoolExecutor(1)
    # Blocks are labelled, and slabs written, in our own processes only: they share the
    # atom file's memory (a cluster's workers would not).
    local_pool = pool if executor is None and n_workers > 1 else None
    # Only the jobs still referenced elsewhere: a list kept every finished job's result
    # (each component's part masks) to the end, gigabytes at 2048³.
    pending: weakref.WeakSet[Future[Any]] = weakref.WeakSet()
    try:
        comps = yield from iter_label_blocks(
            labels,
            opts.class_id,
            connectivity=opts.connectivity,
            block=bs,
            workdir=tmp,
            pool=local_pool,
            ahead=n_workers,
        )
        fossils = yield from _iter_pieces(
            comps,
            shape,
            opts.spacing,
            opts.min_count,
            image,
            (conf, conf_limit),
            judge,
            fill_cavities=fill_cavities,
            split=split,
            split_min_distance_um=split_min_distance_um,
            split_neck_ratio=split_neck_ratio,
            pool=pool,
            find_pool=find_pool,
            ahead=16 * n_workers,
            submitted=pending,
        )
        rows, final, dropped = fossils
        yield from iter_write_instances(
            comps, final, out_path, opts.spacing, overwrite, local_pool, ahead=n_workers
        )
    finally:
        if executor is None:
            pool.shutdown(cancel_futures=True)
        else:
            find_pool.shutdown(
                cancel_futures=True
            )  # not ours to shut down: only what this run asked of it is cancelled
            for job in list(pending):
                job.cancel()
        shutil.rmtree(tmp, ignore_errors=True)
    # zarr leaves out chunks of background: read as labels, which expects that.
    instances = read_labels(out_path, lazy=True).data
    return FossilTable(
        instances=instances,
        rows=tuple(rows),
        spacing=opts.spacing,
        dropped_unsure=dropped[0],
        dropped_lookalikes=dropped[1],
        split_by_check=dropped[2],
    )


def extract_fossils_blockwise(labels: Any, output: str | Path, **kwargs: Any) -> FossilTable:
    """Find every fossil block by block; see :func:`iter_extract_fossils_blockwise`."""
    return drain(iter_extract_fossils_blockwise(labels, output, **kwargs))


def default_workers() -> int:
    """Worker processes for a run of its own: the machine's cores, at most 4 (the
    loop that feeds them, reading and writing crops, is serial)."""
    return max(1, min(4, os.cpu_count() or 1))


def _check_workers(workers: Any) -> int:
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError(f"workers: expected an integer >= 1, got {workers!r}")
    return int(workers)


def _pool(workers: int) -> Executor:
    """Where fossils are measured: `workers` processes, or one thread for 1.

    Processes, because the measurement is Python-heavy (threads measured 1.3x on two
    cores); "spawn", because this process may hold threads (zarr's event loop) that a
    fork would copy in an unknown state.
    """
    if workers == 1:
        return ThreadPoolExecutor(1)
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _check_block(block: Any) -> tuple[int, int, int]:
    values = [block] * 3 if isinstance(block, (int, np.integer)) else list(block)
    if len(values) != 3 or any(
        isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 2 for b in values
    ):
        raise InputError(f"block: expected 1 or 3 integers >= 2 (voxels), got {block!r}")
    return int(values[0]), int(values[1]), int(values[2])


def _iter_pieces(
    comps: Components,
    shape: tuple[int, ...],
    sp: tuple[float, float, float],
    min_count: int,
    image: Any,
    evidence: tuple[Any, float],
    judge: BlockJudge | None,
    *,
    fill_cavities: bool,
    split: bool,
    split_min_distance_um: float | None,
    split_neck_ratio: float,
    pool: Executor,
    find_pool: Executor,
    ahead: int,
    submitted: weakref.WeakSet[Future[Any]],
) -> Generator[Progress, None, tuple[list[dict[str, Any]], np.ndarray, tuple[int, int, int]]]:
    """Fill, split, filter, judge and measure each component on its crop (see the module doc).

    Returns the rows of the kept fossils (ids set, in id order), the fossil id of
    every atom (0: none) and how many objects `evidence` (the confidence and its
    limit) dropped, `judge` dropped and `judge` split again. A piece's voxels are final
    when it is made: later components only take voxels no component holds, and a split
    only reassigns its own component's (a second split's pieces get their atoms after
    the loop: :meth:`~.blockjudge.BlockJudge.write_atoms`).
    Every job sent to `pool` is added to `submitted` (for the caller to cancel).

    The filling and splitting of a component (most of the time) runs in `find_pool`, up to
    `ahead` components ahead of the one being applied, as soon as every earlier
    component whose bounding box overlaps its own has been applied (only those can
    change its crop), in any order: in a crowded volume a component that waits for
    its neighbour holds up no other. Results are applied in rank order, so ids, atoms
    and the table are those of a serial loop.
    """
    n = comps.n
    atoms = _Atoms(comps.rank_of)
    # Too small by its bounding box: its voxels are free for components after it.
    small = np.zeros(n + 1, dtype=bool)
    small[1:] = np.prod(comps.stop[1:] - comps.start[1:], axis=1) < min_count
    after = overlap_dependencies(comps.start, comps.stop, ~small)
    depth = (comps.stop[1:, 0] - comps.start[1:, 0])[~small[1:]]
    if len(depth):  # boxes start in raster order: the next ones lie in the same windows
        comps.atoms.cover(2 * int(np.percentile(depth, 90)))
    options = {
        "fill_cavities": fill_cavities,
        "split": split,
        "split_min_distance_um": split_min_distance_um,
        "split_neck_ratio": split_neck_ratio,
    }
    found: dict[int, tuple[Future[Any], np.ndarray]] = {}
    single = np.full(n + 1, -1, dtype=np.int64)  # the one piece a component became
    sizes: list[int] = []
    ties: list[tuple[int, int]] = []  # of each piece: (its place, its place in a split)
    rows: list[Future[dict[str, Any]] | None] = []
    # Measuring is independent of the loop's state: it runs in the pool too, at most
    # `ahead` fossils behind the loop, so that their masks don't pile up.
    pending: deque[Future[dict[str, Any]]] = deque()
    every = max(1, n // 200)
    conf, conf_limit = evidence
    unsure = 0

    def measure(piece: int, box: tuple[slice, ...], mask: np.ndarray) -> None:
        img = None if image is None else np.asarray(image[box])
        measured = pool.submit(measure_one, 0, mask, box, sp, shape, img)
        submitted.add(measured)
        rows[piece] = measured
        pending.append(measured)
        while len(pending) > ahead:
            pending.popleft().result()

    def new_piece(size: int, tie: tuple[int, int]) -> int:
        sizes.append(size)
        ties.append(tie)
        rows.append(None)
        return len(sizes) - 1

    nxt = 1
    yield Progress("measure", 0, n)
    waiting: list[int] = []  # components within `ahead` of the loop, not yet sent
    for i in range(1, n + 1):
        while nxt <= n and nxt < i + ahead:
            if not small[nxt]:
                waiting.append(nxt)
            nxt += 1
        # Send every waiting component whose overlapping predecessors are all applied
        # (always `i` itself), in any order: one that waits holds up no other.
        blocked = []
        for k in waiting:
            if after[k] >= i:
                blocked.append(k)
                continue
            crop = np.asarray(comps.atoms[comps.bbox(k)])
            state = atoms.rank[crop]
            # Earlier components too small to keep hold nothing; later ones still do.
            code = np.where(state == k, 1, 2).astype(np.uint8)
            code[(state == 0) | (small[state] & (state < k))] = 0
            job = find_pool.submit(_pieces, code, sp, options)
            submitted.add(job)
            found[k] = (job, crop)
        waiting = blocked
        if not small[i]:
            slc = comps.bbox(i)
            job, crop = found.pop(i)
            body_count, gained, parts = job.result()
            changed = False
            if gained is not None:
                crop[gained] = atoms.new(i, -1)
                changed = True
            whole = len(parts) == 1 and int(parts[0][1].sum()) == body_count
            chosen: list[tuple[int, tuple[slice, ...], np.ndarray]] = []  # (piece, box, mask)
            for sub, mask in parts:
                size = int(mask.sum())
                piece = new_piece(size, (len(sizes), 0))
                if whole:
                    single[i] = piece
                else:
                    crop[sub][mask] = atoms.new(i, piece)
                    changed = True
                box = sub_box(slc, sub)
                sure = size < max(min_count, 1) or is_sure(conf, box, mask, conf_limit)
                unsure += not sure
                if size >= max(min_count, 1) and sure:
                    chosen.append((piece, box, mask))
            if changed:
                comps.atoms[slc] = crop
            if judge is None:
                to_measure = chosen
            else:
                judge.hold(i, chosen)
                to_measure = judge.decide(new_piece) if judge.full() else []
            for piece, box, mask in to_measure:
                measure(piece, box, mask)
        if i % every == 0 or i == n:
            yield Progress("measure", i, n)
    if judge is not None:
        for piece, box, mask in judge.decide(new_piece):
            measure(piece, box, mask)
        judge.write_atoms(comps.atoms, atoms.new)
    # Largest first; ties in component (raster) order, pieces of a second split in
    # place of their object.
    kept = [k for k, r in enumerate(rows) if r is not None]
    order = sorted(kept, key=lambda k: (-sizes[k], ties[k]))
    final = np.zeros(len(sizes), dtype=np.int64)
    out_rows = []
    for new_id, k in enumerate(order, start=1):
        final[k] = new_id
        done = rows[k]
        assert done is not None
        row = done.result()
        row["id"] = new_id
        out_rows.append(row)
    counts = (unsure, 0, 0) if judge is None else (unsure, judge.dropped, judge.split)
    return out_rows, _final_lut(atoms, single, final), counts


def _pieces(
    code: np.ndarray, sp: tuple[float, float, float], options: dict[str, Any]
) -> tuple[int, np.ndarray | None, list[tuple[tuple[slice, ...], np.ndarray]]]:
    """The component's voxels with what it gains, and :func:`~.extract.component_pieces`,
    of a crop coded 1 (the component), 0 (free voxels) and 2 (other components'): what
    only depends on those three, sent to a pool."""
    gained, parts = component_pieces(code, 1, sp, **options)
    count = int(np.count_nonzero(code == 1)) + (0 if gained is None else int(gained.sum()))
    return count, gained, parts


def _final_lut(atoms: _Atoms, single: np.ndarray, final: np.ndarray) -> np.ndarray:
    """Fossil id (uint32) of every atom: its piece's, or its component's only piece's."""
    rank = atoms.rank[: atoms.n]
    piece = np.where(single[rank] >= 0, single[rank], -1)
    extra = np.asarray(atoms.piece, dtype=np.int64)
    if len(extra):
        own = extra >= 0
        tail = piece[atoms.base :]
        tail[own] = extra[own]
    piece[0] = -1
    lut = np.where(piece >= 0, final[np.maximum(piece, 0)] if len(final) else 0, 0)
    return lut.astype(np.uint32)
