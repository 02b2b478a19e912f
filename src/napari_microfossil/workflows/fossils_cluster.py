"""``microfossil fossils`` on a Dask cluster: the request with ``workers``/``scheduler``.

:class:`FossilsClusterRequest` is a :class:`~.fossils.FossilsRequest` that also says
where to run; :func:`~.fossils.iter_fossils` runs it as any request, and its
out-of-core branch (:func:`~.fossils_store.iter_fossils_lazy`) measures the fossils on
the cluster (:mod:`.cluster`). The cluster works on ``.zarr`` labels only: the
in-memory path (a TIFF input) stays in this process.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..io.zarr_store import is_zarr
from .cluster import ClusterOptions
from .fossils import FossilsRequest


@dataclass(frozen=True)
class FossilsClusterRequest(FossilsRequest):
    """A :class:`~.fossils.FossilsRequest` run on a Dask cluster.

    Parameters
    ----------
    workers : int, optional
        Measure on a local cluster of this many worker processes.
    scheduler : str, optional
        Measure on the running cluster at this address (the labels, the scan and the
        output folder at the same paths on its workers).
    *others
        As :class:`~.fossils.FossilsRequest`.

    Raises
    ------
    InputError
        As :class:`~.fossils.FossilsRequest`, and naming ``--workers``/``--scheduler``:
        both given, a bad count or address, or labels that are not a ``.zarr`` store.
    """

    workers: int | None = None
    scheduler: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        cluster = ClusterOptions(workers=self.workers, scheduler=self.scheduler)
        object.__setattr__(self, "workers", cluster.workers)
        object.__setattr__(self, "scheduler", cluster.scheduler)
        if cluster.wanted and not is_zarr(self.labels):
            option = "--workers" if cluster.workers is not None else "--scheduler"
            raise InputError(
                f"{option}: a cluster works on .zarr labels, block by block; {self.labels} "
                "is not one: segment to a .zarr store (microfossil segment ... -o LABELS.zarr)"
            )
