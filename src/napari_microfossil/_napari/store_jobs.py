"""Panel jobs on labels kept in a zarr store: the out-of-core engine instead of the
in-memory one, so that no panel loads a big label volume whole.

The Fossils panel extracts from a store-backed Labels layer with
:func:`iter_extract_stored` (blockwise components, the instance volume written to a
zarr store beside the labels); everything else about the request is the panel's
:class:`~napari_microfossil.workflows.fossils.ExtractRequest`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._progress import ProgressGen
from ..fossils import FossilTable
from . import layers

#: Suffix of the instance store made beside a labels store (``labels.zarr`` ->
#: ``labels.instances.zarr``).
INSTANCES_SUFFIX = ".instances.zarr"


def instances_store_for(layer: Any) -> Path | None:
    """Where the fossils of a store-backed Labels layer go (beside its store); None for
    labels held in memory (extracted in memory, as before)."""
    store = layers.store_of(layer)
    if store is None:
        return None
    path = Path(store)
    return path.with_name(path.name.removesuffix(".zarr") + INSTANCES_SUFFIX)


def extract_job(request: Any, layer: Any) -> ProgressGen[FossilTable]:
    """The Fossils panel's extraction of `request` (an ``ExtractRequest`` made from the
    Labels `layer`): blockwise into :func:`instances_store_for` for labels kept in a
    zarr store, else in memory (:func:`~napari_microfossil.workflows.fossils.iter_extract`)."""
    from ..workflows.fossils import iter_extract

    out = instances_store_for(layer)
    if out is None:
        return iter_extract(request)
    return iter_extract_stored(request, out)


def iter_extract_stored(request: Any, output: Path) -> ProgressGen[FossilTable]:
    """Extract `request`'s fossils block by block (its labels read a block at a time,
    edits not yet saved included), the instances into the zarr store `output`.

    Returns
    -------
    FossilTable
        Its ``instances`` is a lazy view of `output`; rows and ids equal those of the
        in-memory extraction.
    """
    from ..fossils.blockwise import iter_extract_fossils_blockwise
    from ..workflows.fossils_store import extraction_options

    r = request
    return (
        yield from iter_extract_fossils_blockwise(
            r.labels,
            output,
            class_id=r.class_id,
            spacing=r.spacing,
            **extraction_options(r),
            image=r.image,
            overwrite=True,
        )
    )
