"""``microfossil fossils`` on a zarr label volume: out of core, block by block.

A ``.zarr`` labels input is read lazily and never loaded whole: the fossils are found by
:func:`~napari_microfossil.fossils.blockwise.iter_extract_fossils_blockwise`, the
instance volume goes to ``OUTDIR/instances.zarr`` as it is made, and the export (table,
meshes, crops) reads one fossil's bounding box at a time from it and from the scan.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import ProgressGen
from ..errors import InputError
from ..fossils import ExportResult, FossilTable, iter_export_fossils
from ..fossils.blockwise import default_workers, iter_extract_fossils_blockwise
from ..fossils.objectcheck import bundled_object_check
from ..io.lazy import LazyArray
from .cluster import ClusterOptions

#: The instance volume of a zarr input.
INSTANCES_ZARR = "instances.zarr"


def class_label_error(path: Path | str, top: int) -> InputError:
    """The error for labels whose values go above 255 (a scan given as the labels)."""
    return InputError(
        f"labels: {path} is not a class label volume: its values go up to "
        f"{top} (class ids are 0..255), a scan perhaps; pass the "
        "segmentation as the labels (and the scan as the image)"
    )


def check_class_labels(labels: Any, path: Path | str) -> None:
    """Refuse a volume whose values cannot be class ids (above 255): a scan, most likely.

    Raises
    ------
    InputError
        Naming ``labels`` and hinting at ``--image`` for the scan.
    """
    data = np.asarray(labels)
    top = int(data.max()) if data.dtype.itemsize > 1 and data.size else 0
    if top > 255:
        raise class_label_error(path, top)


class CheckedClassIds(LazyArray):
    """A lazy label volume checked, as it is read, to hold class ids (0..255).

    The blockwise extraction reads each block once; checking each block as it comes
    checks the whole volume without a read of its own. The first block of a scan given
    as labels stops the run, before anything is written.
    """

    def __init__(self, base: Any, path: Path | str) -> None:
        self.base = base
        self.path = path
        self.shape = tuple(int(n) for n in base.shape)  # type: ignore[assignment]
        self.dtype = np.dtype(base.dtype)

    def _read_key(self, key: tuple[int | slice, ...]) -> np.ndarray:
        data = np.asarray(self.base[key])
        if data.dtype.itemsize > 1 and data.size:
            top = int(data.max())
            if top > 255:
                raise class_label_error(self.path, top)
        return data


def iter_fossils_lazy(
    request: Any,
    labels: Any,
    image: Any,
    class_id: int,
    spacing: tuple[float, float, float],
    *,
    confidence: Any = None,
) -> ProgressGen[tuple[FossilTable, ExportResult]]:
    """Extract and export the fossils of a lazy label volume (a zarr store).

    Parameters
    ----------
    request : FossilsRequest
        The checked request (outdir, options). One with ``workers`` or ``scheduler``
        (:class:`~.fossils_cluster.FossilsClusterRequest`) measures the fossils on
        that Dask cluster (:mod:`.cluster`); the result is the same.
    labels : (Z, Y, X) lazy array of int
        The labels, read block by block.
    image : (Z, Y, X) lazy array, optional
        The scan; only bounding boxes are read.
    class_id : int
    spacing : (float, float, float)
        Voxel size in µm.
    confidence : (Z, Y, X) lazy array, optional
        The segmentation's confidence (the request's ``confidence`` file, read); only
        bounding boxes are read.

    Returns
    -------
    (FossilTable, ExportResult)
        The table (its instances a lazy view of ``instances.zarr``) and the export,
        whose ``instances`` is the zarr store.
    """
    r = request
    out = Path(r.outdir)
    made = [d for d in (*reversed(out.parents), out) if not d.exists()]
    store = out / INSTANCES_ZARR
    earlier = store.exists()
    out.mkdir(parents=True, exist_ok=True)
    checked = CheckedClassIds(labels, r.labels) if np.dtype(labels.dtype).itemsize > 1 else labels
    cluster = ClusterOptions(
        workers=getattr(r, "workers", None), scheduler=getattr(r, "scheduler", None)
    )
    try:
        with _measuring(cluster) as (executor, workers):
            table = yield from iter_extract_fossils_blockwise(
                checked,
                store,
                class_id=class_id,
                spacing=spacing,
                **extraction_options(r, confidence=confidence),
                image=image,
                overwrite=r.overwrite,
                workdir=out,
                workers=workers,
                executor=executor,
            )
        written = yield from iter_export_fossils(
            table,
            out,
            image=image,
            mesh_format=r.mesh_format,
            crops=r.crops,
            overwrite=r.overwrite,
            write_instances=False,
        )
    except BaseException:
        # As the export does: a failed or cancelled run leaves no files of its own.
        if not earlier:
            shutil.rmtree(store, ignore_errors=True)
        for d in reversed(made):
            with contextlib.suppress(OSError):
                d.rmdir()  # only if empty
        raise
    return table, dataclasses.replace(written, instances=store)


def extraction_options(request: Any, *, confidence: Any = None) -> dict[str, Any]:
    """The size limit, splitting, cavity, confidence and object-check options of a
    ``FossilsRequest`` or an ``ExtractRequest``, as
    :func:`~napari_microfossil.fossils.blockwise.iter_extract_fossils_blockwise` takes
    them: one list, so every blockwise caller passes all of them.

    The confidence volume is the request's own (``ExtractRequest.confidence``, an
    array) unless `confidence` is given (the volume read from a ``FossilsRequest``'s
    file)."""
    r = request
    if confidence is None and not isinstance(getattr(r, "confidence", None), (str, Path)):
        confidence = getattr(r, "confidence", None)
    return {
        "confidence": confidence,
        "min_confidence": r.min_confidence,
        "min_voxels": r.min_voxels,
        "min_volume_um3": r.min_volume_um3,
        "split": r.split,
        "split_neck_ratio": r.split_neck_ratio,
        "fill_cavities": r.fill_cavities,
        "object_check": bundled_object_check() if r.object_check else None,
    }


@contextlib.contextmanager
def _measuring(cluster: ClusterOptions) -> Iterator[tuple[Any, int]]:
    """``(executor, workers)`` for the blockwise extraction: the cluster's executor and
    its worker threads, or None and this machine's default measuring processes."""
    if not cluster.wanted:
        yield None, default_workers()
        return
    from .cluster import connect, worker_threads

    with connect(cluster) as client:
        yield client.get_executor(), worker_threads(client)
