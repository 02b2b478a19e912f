"""What an edit changed, and the edits napari's own tools lack.

:func:`slices_touched` and :func:`changed_slices` say which slices an edit touched;
:func:`erase_object` zeroes one 3D connected component and returns an :class:`Edit`,
which :class:`UndoStack` can undo, keeping only the changed bounding-box crops within a
memory budget.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple, cast

import numpy as np

from ..axes import axis_index

logger = logging.getLogger(__name__)


def changed_slices(before: np.ndarray, after: np.ndarray, axis: str | int = "z") -> list[int]:
    """Indices of the slices along `axis` where `before` and `after` differ.

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    if before.shape != after.shape:
        raise ValueError(f"after: expected shape {before.shape}; got {after.shape}")
    ax = axis_index(axis)
    others = tuple(i for i in range(before.ndim) if i != ax)
    return [int(i) for i in np.flatnonzero(np.any(before != after, axis=others))]


def _range_of(key: Any, n: int | None) -> set[int] | None:
    if isinstance(key, slice):
        if n is None and (key.start is None or key.stop is None):
            return None
        start, stop, step = key.indices(n if n is not None else max(key.stop, key.start or 0))
        return set(range(start, stop, step))
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return {int(key)}
    try:
        return {int(i) for i in np.unique(np.asarray(key).ravel())}
    except (TypeError, ValueError):
        return None


def slices_touched(
    atoms: Iterable[Any], axis: str | int = "z", *, n_slices: int | None = None
) -> set[int] | None:
    """Slices along `axis` changed by the atoms of a napari Labels ``paint`` event.

    napari (0.9) emits ``layer.events.paint(value=atoms)`` once per undoable edit (a
    whole brush stroke, a fill, ``data_setitem``); each atom is either a masked edit with
    ``slice_key`` (one slice per axis: the bounding box) and ``mask`` (the changed
    voxels within it, or None for all of them), or a 3-tuple ``(indices, old_values,
    new_value)`` whose `indices` is a numpy multi-index. Both are read here by their
    shape, so this module needs no napari.

    Returns
    -------
    set of int, or None
        None if an atom is of an unknown form; the caller then marks what it can (the
        slice shown).
    """
    ax = axis_index(axis)
    out: set[int] = set()
    for atom in atoms:
        key = getattr(atom, "slice_key", None)
        if key is not None:
            if len(key) <= ax:
                return None
            s = key[ax]
            mask = getattr(atom, "mask", None)
            start = (s.start or 0) if isinstance(s, slice) else None
            if mask is not None and start is not None and getattr(mask, "ndim", 0) == len(key):
                others = tuple(i for i in range(mask.ndim) if i != ax)
                out.update(start + int(i) for i in np.flatnonzero(np.any(mask, axis=others)))
                continue
            got = _range_of(s, n_slices)
        elif isinstance(atom, (tuple, list)) and len(atom) == 3:
            indices = atom[0]
            if not isinstance(indices, (tuple, list)) or len(indices) <= ax:
                return None
            got = _range_of(indices[ax], n_slices)
        else:
            return None
        if got is None:
            return None
        out |= got
    return out


class Edit(NamedTuple):
    """What an edit changed, enough to undo it.

    Attributes
    ----------
    bbox : tuple of slice
        Bounding box of the change, in voxels.
    mask : ndarray of bool
        The changed voxels within `bbox`.
    old_values : ndarray, 1-D
        Their values before the edit.
    note : object, optional
        The caller's own record, returned by :meth:`UndoStack.undo` with the edit (the
        Review widget keeps the :class:`Marks` the edit added there).
    """

    bbox: tuple[slice, ...]
    mask: np.ndarray
    old_values: np.ndarray
    note: Any = None

    @property
    def nbytes(self) -> int:
        return int(self.mask.nbytes + self.old_values.nbytes)


def edit_slices(edit: Edit, axis: str | int = "z") -> list[int]:
    """Slices along `axis` that `edit` changed."""
    ax = axis_index(axis)
    others = tuple(i for i in range(edit.mask.ndim) if i != ax)
    start = edit.bbox[ax].start or 0
    return [start + int(i) for i in np.flatnonzero(np.any(edit.mask, axis=others))]


def find_object(
    labels: Any, pt: tuple[int, int, int], connectivity: int, *, max_bytes: int | None = None
) -> tuple[tuple[slice, ...], np.ndarray]:
    """The 3D connected component under voxel `pt`: its tight box and its mask in it.

    Searched in a box around `pt` that doubles only while the component reaches a face
    of the box inside the volume, so a small object in a large volume costs little.
    `labels` needs only numpy reads (an array, or a store); with `max_bytes`, a box
    larger than that raises ValueError before it is read.
    """
    shape = np.array(labels.shape)
    itemsize = np.dtype(labels.dtype).itemsize
    p, half = np.array(pt), np.full(3, 16)
    while True:
        lo, hi = np.maximum(p - half, 0), np.minimum(p + half + 1, shape)
        if max_bytes is not None and int(np.prod(hi - lo)) * itemsize > max_bytes:
            raise ValueError(
                f"erase: the object at {pt} is larger than a box of {max_bytes / 2**20:.0f} MiB "
                f"of labels; not erased (paint over it, or erase it where the labels fit "
                f"in memory)"
            )
        body, box = _component_in_box(labels, pt, lo, hi, connectivity)
        if not _touches_inner_face(body, lo, hi, shape):
            break
        half = half * 2
    idx = [
        np.flatnonzero(np.any(body, axis=tuple(j for j in range(3) if j != a))) for a in range(3)
    ]
    tight = tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)
    bbox = tuple(
        slice(b.start + t.start, b.start + t.stop) for b, t in zip(box, tight, strict=True)
    )
    return bbox, body[tight]


def _touches_inner_face(body: np.ndarray, lo: np.ndarray, hi: np.ndarray, shape: Any) -> bool:
    """Whether the component reaches a face of its box that is not the volume's."""
    for ax in range(3):
        first = tuple(slice(0, 1) if a == ax else slice(None) for a in range(3))
        last = tuple(slice(-1, None) if a == ax else slice(None) for a in range(3))
        if (lo[ax] > 0 and body[first].any()) or (hi[ax] < shape[ax] and body[last].any()):
            return True
    return False


def _component_in_box(
    labels: np.ndarray, point: tuple[int, ...], lo: np.ndarray, hi: np.ndarray, connectivity: int
) -> tuple[np.ndarray, tuple[slice, ...]]:
    import cc3d

    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    value = labels[point]
    same = labels[box] == value
    comp = cc3d.connected_components(same, connectivity=cast(Literal[6, 18, 26], connectivity))
    local = tuple(p - int(a) for p, a in zip(point, lo, strict=True))
    return comp == comp[local], box


def erase_object(
    labels: np.ndarray,
    point: Sequence[float],
    *,
    connectivity: int = 26,
    value: int = 0,
) -> Edit | None:
    """Set the 3D connected component under `point` to `value` (0: erase it), in place.

    The component is the voxels of the same label as ``labels[point]`` connected to it.
    It is searched in a box around `point` that grows only while the component reaches
    the box's faces, so a small object in a large volume costs little.

    Parameters
    ----------
    labels : ndarray, shape (Z, Y, X)
        Label volume, modified in place.
    point : sequence of 3 float
        Position in voxels (data coordinates); rounded to the nearest voxel.
    connectivity : {6, 18, 26}
        Voxel neighbourhood.
    value : int
        The label written over the component.

    Returns
    -------
    Edit or None
        What changed (for :class:`UndoStack`); None if `point` is on `value` already.

    Raises
    ------
    ValueError
        If `labels` is not a 3D numpy array, `point` is outside it, or `connectivity`
        is not 6, 18 or 26.
    """
    if not isinstance(labels, np.ndarray) or labels.ndim != 3:
        raise ValueError(
            f"labels: expected a 3D numpy array, edited in place; got {type(labels).__name__} "
            f"with shape {getattr(labels, 'shape', None)}"
        )
    if connectivity not in (6, 18, 26):
        raise ValueError(f"connectivity: expected 6, 18 or 26; got {connectivity!r}")
    pt = tuple(round(float(p)) for p in point)
    if len(pt) != 3 or not all(0 <= p < n for p, n in zip(pt, labels.shape, strict=True)):
        raise ValueError(f"point: expected a position inside {labels.shape}; got {tuple(point)}")
    if labels[pt] == value:
        return None
    bbox, mask = find_object(labels, pt, connectivity)
    region = labels[bbox]
    old = region[mask].copy()
    region[mask] = value
    return Edit(bbox, mask, old)


def first_labelled_on_ray(
    labels: Any, start: Sequence[float], end: Sequence[float]
) -> np.ndarray | None:
    """The first point from `start` to `end` that lies on a labelled (non-zero) voxel.

    What a click in a 3D view hits: the ray through the volume is walked in steps of
    at most half a voxel.

    Parameters
    ----------
    labels : array-like, shape (Z, Y, X)
    start, end : sequence of 3 float
        The ray's ends, in voxels (data coordinates).

    Returns
    -------
    ndarray of float, shape (3,), or None
        None if the ray crosses background only.
    """
    a, b = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    n = int(np.ceil(np.linalg.norm(b - a))) * 2 + 1
    for p in np.linspace(a, b, n):
        idx = tuple(round(float(v)) for v in p)
        inside = all(0 <= v < m for v, m in zip(idx, labels.shape, strict=True))
        if inside and labels[idx] != 0:
            return p
    return None


class UndoStack:
    """Undo for edits napari's own undo does not know about (e.g. :func:`erase_object`).

    Keeps only each edit's bounding-box mask and old values; the oldest edits are
    dropped once their total size exceeds `max_bytes` or their number `max_items`.

    Parameters
    ----------
    max_bytes : int
        Memory budget for all stored edits.
    max_items : int
        Most edits kept.
    """

    def __init__(self, *, max_bytes: int = 256 * 2**20, max_items: int = 50) -> None:
        if max_bytes < 0 or max_items < 1:
            raise ValueError(
                f"max_bytes, max_items: expected >= 0 and >= 1; got {max_bytes}, {max_items}"
            )
        self.max_bytes = int(max_bytes)
        self.max_items = int(max_items)
        self._items: deque[Edit] = deque()
        self._nbytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._nbytes

    def push(self, edit: Edit | None) -> None:
        """Remember `edit`; an edit larger than the budget alone is not kept (logged)."""
        if edit is None:
            return
        if edit.nbytes > self.max_bytes:
            logger.warning(
                "edit of %d bytes exceeds the undo budget of %d bytes; it cannot be undone",
                edit.nbytes,
                self.max_bytes,
            )
            return
        self._items.append(edit)
        self._nbytes += edit.nbytes
        while self._nbytes > self.max_bytes or len(self._items) > self.max_items:
            self._nbytes -= self._items.popleft().nbytes

    def undo(self, labels: np.ndarray) -> Edit | None:
        """Restore the voxels of the last edit in `labels` (in place); None if empty.

        Voxels outside the edit's mask are left alone, so later edits elsewhere in the
        bounding box survive.
        """
        if not self._items:
            return None
        edit = self._items.pop()
        self._nbytes -= edit.nbytes
        region = labels[edit.bbox]
        region[edit.mask] = edit.old_values
        return edit

    def clear(self) -> None:
        self._items.clear()
        self._nbytes = 0
