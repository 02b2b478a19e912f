"""``microfossil segment`` on a Dask cluster: one task per slab, one model per worker.

The client (this process) opens the ``.zarr`` outputs, works out the slabs still to
do, the smoothing and the intensity range, exactly as a run in one process does. Each
slab is then one task: a worker reads the slab's planes (and their halo) from the
scan, segments them with :func:`~napari_microfossil.segmentation.iter_slabs` (the same
code, with the same settings, so the labels are the same bits), writes them into the
stores itself -- slabs are whole chunks, so two workers never write the same chunk --
and returns only the slab's class counts. The client records each slab in the stores'
progress file as its task completes, so a killed run leaves only recorded slabs
behind and ``--resume`` works as in one process.

Why the workers write: every worker must read the scan anyway, so the outputs sit on
the same shared filesystem; writing there directly spares sending every slab of labels
and confidence (2 bytes a voxel) through the client, which would otherwise compress and
write the whole volume alone. A slab written but not yet recorded when a run dies is
segmented again on resume.

Each worker holds one :class:`SlabJob` (a Dask worker plugin): the model is loaded
once per worker, on its first slab (onto its own GPU where a local cluster's machine
has several), and the scan and stores are opened once.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from distributed import WorkerPlugin, as_completed, get_worker

from .._progress import Progress, ProgressGen
from ..io.store import LEVEL0, ChunkedOutput, incomplete
from ..segmentation import Slab, iter_slabs
from .keep import keep_in_slab
from .segment_outputs import count_labels

if TYPE_CHECKING:
    from .segment_scan import SegmentRequest

log = logging.getLogger(__name__)


class SlabJob(WorkerPlugin):
    """One segmentation run as each worker holds it (a Dask worker plugin).

    Parameters
    ----------
    scan : path
        The scan, readable by every worker at this path (a shared filesystem).
    outputs : sequence of path
        The ``.zarr`` stores to write: labels, then confidence if any; made by the
        client before the tasks start.
    model : str, path or callable
        ``"default"``, a ``.safetensors`` file every worker can read (loaded once per
        worker), or a picklable predictor (``f(batch) -> probabilities``, as
        :func:`~napari_microfossil.segmentation.iter_slabs` takes).
    num_classes : int
        Classes of the model (the length of the counts each slab returns).
    spacing : (z, y, x), optional
        Voxel size override, µm (as the scan was read by the client).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``...; resolved on each worker. On a machine
        with several GPUs, a local cluster's worker *k* takes GPU ``k mod n``.
    torch_threads : int, optional
        CPU threads for PyTorch on each worker; None leaves the worker's own.
    keep : path, optional
        Corrected labels whose `keep_slices` planes go into the output verbatim.
    keep_slices : dict, optional
    """

    def __init__(
        self,
        *,
        scan: Path,
        outputs: Sequence[Path],
        model: str | Path | Callable[[np.ndarray], np.ndarray],
        num_classes: int,
        spacing: tuple[float, float, float] | None = None,
        device: str = "auto",
        torch_threads: int | None = None,
        keep: Path | None = None,
        keep_slices: dict[str, list[int]] | None = None,
    ) -> None:
        self.scan = Path(scan)
        self.outputs = [Path(p) for p in outputs]
        self.model = model
        self.num_classes = int(num_classes)
        self.spacing = spacing
        self.device = device
        self.torch_threads = torch_threads
        self.keep = keep
        self.keep_slices = keep_slices

    def setup(self, worker: Any) -> None:
        self._worker_name = worker.name
        self._lock = threading.RLock()  # a model load gets the device first
        self._cache: dict[str, Any] = {}

    def teardown(self, worker: Any) -> None:
        self._cache.clear()

    def _get(self, key: str, make: Callable[[], Any]) -> Any:
        with self._lock:  # one load, even with several threads per worker
            if key not in self._cache:
                self._cache[key] = make()
            return self._cache[key]

    def _device(self) -> Any:
        if callable(self.model):
            return self.device
        import torch

        from ..device import resolve_device

        if self.torch_threads is not None:
            torch.set_num_threads(self.torch_threads)
        dev = resolve_device(self.device)
        count = torch.cuda.device_count() if dev.type == "cuda" else 0
        if count > 1 and dev.index is None and isinstance(self._worker_name, int):
            dev = torch.device("cuda", self._worker_name % count)
        log.info("worker %s segments on %s", self._worker_name, dev)
        return dev

    def _load_model(self) -> Any:
        if callable(self.model):
            return self.model
        from ..model import load_model

        return load_model(self.model, device=self._get("device", self._device))

    def _read(self, path: Path, labels: bool) -> Any:
        from ..io import read_labels, read_volume

        if labels:
            return read_labels(path, lazy=True).data
        return read_volume(path, spacing=self.spacing, lazy=True).data

    def _stores(self) -> list[Any]:
        import zarr

        return [zarr.open_group(store=str(p), mode="r+")[LEVEL0] for p in self.outputs]

    def segment(self, z0: int, z1: int, options: dict[str, Any]) -> np.ndarray:
        """Segment planes ``z0:z1``, write them to the stores, return the class counts
        (``(num_classes,)`` int64)."""
        model = self._get("model", self._load_model)
        volume = self._get("scan", lambda: self._read(self.scan, labels=False))
        device = self._get("device", self._device)
        slab = None
        for item in iter_slabs(volume, model, todo=[(z0, z1)], **{**options, "device": device}):
            if isinstance(item, Slab):
                slab = item
        assert slab is not None
        if self.keep is not None and self.keep_slices is not None:
            keep = Path(self.keep)
            kept = self._get("keep", lambda: self._read(keep, labels=True))
            keep_in_slab(slab.labels, z0, kept, self.keep_slices)
        stores = self._get("stores", self._stores)
        stores[0][z0:z1] = slab.labels
        if slab.confidence is not None:
            stores[1][z0:z1] = slab.confidence
        return count_labels(slab.labels, [(0, z1 - z0)], self.num_classes)


def _segment_slab(name: str, z0: int, z1: int, options: dict[str, Any]) -> np.ndarray:
    """The task: slab ``z0:z1`` of the job registered as plugin `name`."""
    job = get_worker().plugins[name]
    assert isinstance(job, SlabJob)
    return job.segment(z0, z1, options)


def recorded(store: ChunkedOutput) -> ChunkedOutput:
    """The same store, its progress as on disk, for this process to record the slabs
    the workers write (:meth:`~napari_microfossil.io.store.ChunkedOutput.record`)."""
    progress = incomplete(store.path)
    if progress is None:
        raise ValueError(f"{store.path}: is complete; nothing for workers to write")
    return ChunkedOutput(store.path, store.array, progress)


def iter_slabs_on_cluster(
    client: Any,
    job: SlabJob,
    ranges: Sequence[tuple[int, int]],
    options: dict[str, Any],
    stores: Sequence[ChunkedOutput],
) -> ProgressGen[np.ndarray]:
    """Segment the z-ranges `ranges` on the cluster, one task per slab.

    Parameters
    ----------
    client : distributed.Client
    job : SlabJob
        Registered on the workers for this run, removed at the end.
    ranges : sequence of (start, stop)
        Chunk-aligned slabs still to do (``slabs_to_do``).
    options : dict
        Keyword arguments of :func:`~napari_microfossil.segmentation.iter_slabs`
        (``axes``, ``confidence``, ``intensity_range``, ``smooth``...): the same as a
        run in one process gets.
    stores : sequence of ChunkedOutput
        Where each completed slab is recorded (the `job`'s outputs, in its order).

    Yields
    ------
    Progress
        ``"segment <axes>"``: planes done (as slabs complete, in any order) of all.

    Returns
    -------
    ndarray, shape (num_classes,), int64
        Voxels of each class in the slabs done here.

    Closing the generator cancels the slabs not yet done; the slabs already recorded
    stay (for ``--resume``).
    """
    name = f"microfossil-segment-{uuid.uuid4().hex[:12]}"
    stage = f"segment {options.get('axes', 'z')}"
    total = sum(b - a for a, b in ranges)
    counts = np.zeros(job.num_classes, dtype=np.int64)
    client.register_plugin(job, name=name)
    futures: list[Any] = []
    try:
        where = {}
        for a, b in ranges:
            fut = client.submit(_segment_slab, name, a, b, options, pure=False)
            futures.append(fut)
            where[fut.key] = (a, b)
        done = 0
        yield Progress(stage, 0, total)
        for fut in as_completed(futures, loop=client.loop):
            part = fut.result()
            a, b = where[fut.key]
            for store in stores:
                store.record(a, b)
            counts += part
            done += b - a
            yield Progress(stage, done, total)
    finally:
        with suppress(Exception):  # the cluster may be gone already
            client.cancel(futures)
        with suppress(Exception):
            client.unregister_worker_plugin(name)
    return counts


def iter_request_on_cluster(
    request: SegmentRequest,
    client: Any,
    outputs: Sequence[Any],
    todo: list[tuple[int, int]],
    options: dict[str, Any],
    num_classes: int,
) -> ProgressGen[tuple[list[Any], np.ndarray]]:
    """A :class:`~.segment_scan.SegmentRequest`'s slabs `todo` on the cluster.

    Returns the outputs, now recording what the workers write (finish those), and the
    class counts of the slabs done.
    """
    stores = [recorded(o) for o in outputs]
    job = SlabJob(
        scan=request.scan,
        outputs=[o.path for o in stores],
        model=request.model,
        num_classes=num_classes,
        spacing=request.voxel_size,
        device=request.options.device,
        torch_threads=request.cluster.torch_threads,
        keep=request.keep,
        keep_slices=request.keep_slices,
    )
    counts = yield from iter_slabs_on_cluster(client, job, todo, options, stores)
    return stores, counts
