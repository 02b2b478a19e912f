"""Erasing an object (Shift-E) in labels kept in a zarr store, chunk by chunk.

:func:`~.edits.erase_object` edits a numpy array in place. :func:`erase_in_store` does
the same on a :class:`~.labels_store.StoreLabels`: the 3D connected component under
the point is searched in a box that grows (doubling) only while the component reaches
its faces, read from the store (or its overlay); the box is bounded by `max_bytes`, so
erasing the rock matrix of a 2048³ scan is refused with a message instead of reading
8 GiB. The erase writes only the component's voxels, so only the chunks it crosses
join the overlay, and the autosave writes only those. :func:`write_through` lets
:class:`~.edits.UndoStack` undo such an edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .edits import Edit, find_object

__all__ = ["ERASE_MAX_BYTES", "erase_in_store", "write_through"]

#: Largest box of labels an erase reads (bytes): 512³ voxels of uint8.
ERASE_MAX_BYTES = 2**27


def erase_in_store(
    labels: Any,
    point: Sequence[float],
    *,
    connectivity: int = 26,
    value: int = 0,
    max_bytes: int = ERASE_MAX_BYTES,
) -> Edit | None:
    """Set the 3D connected component under `point` to `value`, in the store's overlay.

    Parameters
    ----------
    labels : StoreLabels
        (Or any array-like with numpy reads and ``labels[z, y, x] = v`` writes.)
    point : sequence of 3 float
        Position in voxels; rounded to the nearest voxel.
    connectivity : {6, 18, 26}
    value : int
    max_bytes : int
        Largest box read while searching the component.

    Returns
    -------
    Edit or None
        As :func:`~.edits.erase_object` (undo with ``UndoStack.undo(write_through(labels))``);
        None if `point` is on `value` already.

    Raises
    ------
    ValueError
        If `point` is outside the labels, `connectivity` is not 6, 18 or 26, or the
        object does not fit in a box of `max_bytes` (nothing is changed then).
    """
    if connectivity not in (6, 18, 26):
        raise ValueError(f"connectivity: expected 6, 18 or 26; got {connectivity!r}")
    shape = np.array(labels.shape)
    pt = tuple(round(float(p)) for p in point)
    if len(pt) != 3 or not all(0 <= p < n for p, n in zip(pt, shape, strict=True)):
        raise ValueError(f"point: expected a position inside {tuple(shape)}; got {tuple(point)}")
    if labels[pt] == value:
        return None
    bbox, mask = find_object(labels, pt, connectivity, max_bytes=max_bytes)
    pts = tuple(np.nonzero(mask)[a] + bbox[a].start for a in range(3))
    old = np.asarray(labels[pts]).copy()
    labels[pts] = value  # the component's voxels only: the chunks it crosses
    return Edit(bbox, mask, old)


class _Region:
    def __init__(self, labels: Any, box: tuple[slice, ...]) -> None:
        self.labels, self.box = labels, box

    def __setitem__(self, mask: np.ndarray, values: Any) -> None:
        pts = tuple(np.nonzero(mask)[a] + (self.box[a].start or 0) for a in range(3))
        self.labels[pts] = values


class _WriteThrough:
    def __init__(self, labels: Any) -> None:
        self.labels = labels

    def __getitem__(self, box: tuple[slice, ...]) -> _Region:
        return _Region(self.labels, box)


def write_through(labels: Any) -> Any:
    """`labels` as :meth:`~.edits.UndoStack.undo` needs them: ``labels[bbox][mask] = v``
    writes into `labels` (StoreLabels reads return copies), voxel by voxel of `mask`."""
    return _WriteThrough(labels)
