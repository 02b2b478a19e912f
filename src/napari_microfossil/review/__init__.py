"""Review and correct a segmentation: which slices were checked, where to look next, autosave.

The user paints with napari's own Labels tools; this module holds what those tools lack,
as plain functions and classes on arrays (the napari widget only wires them to layers):

- :class:`ReviewState` records the slices, along one axis, the user has reviewed or
  edited; :meth:`ReviewState.reviewed_slices` is the mapping that fine-tuning takes.
- :func:`next_slice_to_review` picks the unreviewed slice where the model was least
  confident (:func:`slice_confidence`), so the user's minutes go where they matter.
- :func:`slices_touched` and :func:`changed_slices` say which slices an edit touched.
- :func:`erase_object` zeroes one 3D connected component; :class:`UndoStack` undoes it,
  keeping only the changed bounding-box crops, within a memory budget.
- :class:`Sidecar` autosaves labels and review state beside the scan
  (``<scan>.microfossil/``) so that a crash loses nothing that was saved: every save
  writes a new labels file, then replaces ``review.json`` (which names that file and
  holds its hash) in one atomic rename; a save torn by a crash is never read back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

import numpy as np

from ..axes import AXES, axis_index, axis_name
from ..errors import InputError
from ..io import atomic_path, parse_spacing, read_labels, write_tiff

logger = logging.getLogger(__name__)

__all__ = [
    "AXES",
    "Edit",
    "Marks",
    "ReviewState",
    "Sidecar",
    "UndoStack",
    "changed_slices",
    "edit_slices",
    "erase_object",
    "next_slice_to_review",
    "slice_confidence",
    "slices_touched",
]

SIDECAR_SUFFIX = ".microfossil"
STATE_FILE = "review.json"
FORMAT_VERSION = 1
_LABELS_GLOB = "labels-*.tif"
# Temp files of a killed save are removed by a later save once they are this old, so a
# save running in another process at the same moment keeps its own.
_STALE_TEMP_S = 600.0


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class Marks:
    """Slices one edit newly marked (:meth:`ReviewState.mark_edit`), to take back on undo.

    `seq` numbers the edit (it takes no part in comparisons): :meth:`ReviewState.undo_marks`
    leaves marked a slice a later edit also changed.
    """

    axis: str
    reviewed: frozenset[int]
    edited: frozenset[int]
    seq: int = field(default=0, compare=False)


@dataclass(kw_only=True)
class ReviewState:
    """Which slices along one axis the user has reviewed or edited.

    Parameters
    ----------
    n_slices : int
        Number of slices along `axis`.
    axis : {"z", "y", "x"}
        The axis the user steps through.
    reviewed : set of int
        Slices the user has looked at and accepted, or edited.
    edited : set of int
        Slices the user has painted in; always a subset of `reviewed`.
    shape : (Z, Y, X), optional
        The volume's shape; needed by :meth:`switch_axis`.
    other_axes : dict
        Reviewed and edited slices of the axes not current, as
        ``{"y": {"reviewed": [...], "edited": [...]}}``, so switching axis loses nothing.
    """

    n_slices: int
    axis: str = "z"
    reviewed: set[int] = field(default_factory=set)
    edited: set[int] = field(default_factory=set)
    shape: tuple[int, int, int] | None = None
    other_axes: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    # Which standing edits (their Marks.seq) changed each slice, as {(axis, i): {seq}}:
    # undoing one edit keeps a slice another edit also changed. Not saved (nor the undo).
    _edits: dict[tuple[str, int], set[int]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _seq: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.axis = axis_name(self.axis)
        if isinstance(self.n_slices, bool) or not isinstance(self.n_slices, (int, np.integer)):
            raise TypeError(f"n_slices: expected an int; got {self.n_slices!r}")
        self.n_slices = int(self.n_slices)
        if self.n_slices < 0:
            raise ValueError(f"n_slices: expected >= 0; got {self.n_slices}")
        if self.shape is not None:
            shape = tuple(int(n) for n in self.shape)
            if len(shape) != 3:
                raise ValueError(f"shape: expected (Z, Y, X); got {self.shape!r}")
            if shape[AXES.index(self.axis)] != self.n_slices:
                raise ValueError(
                    f"n_slices: expected {shape[AXES.index(self.axis)]} (shape {shape} along "
                    f"{self.axis!r}); got {self.n_slices}"
                )
            self.shape = (shape[0], shape[1], shape[2])
        self.reviewed = {self._check(i) for i in self.reviewed}
        self.edited = {self._check(i) for i in self.edited}
        self.reviewed |= self.edited

    @classmethod
    def for_volume(cls, shape: Sequence[int], axis: str = "z") -> ReviewState:
        """A fresh state for a volume of `shape` ``(Z, Y, X)``, stepping along `axis`."""
        shape = tuple(int(n) for n in shape)
        if len(shape) != 3:
            raise ValueError(f"shape: expected (Z, Y, X); got {shape!r}")
        name = axis_name(axis)
        return cls(n_slices=shape[AXES.index(name)], axis=name, shape=shape)  # type: ignore[arg-type]

    def _check(self, i: Any) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"slice index: expected an int; got {i!r}")
        if not 0 <= int(i) < self.n_slices:
            raise ValueError(
                f"slice index: expected 0..{self.n_slices - 1} along {self.axis!r}; got {i}"
            )
        return int(i)

    def mark_reviewed(self, i: int) -> None:
        """Record that slice `i` was looked at and accepted."""
        self.reviewed.add(self._check(i))

    def mark_edited(self, i: int) -> None:
        """Record that slice `i` was painted in; an edited slice counts as reviewed."""
        i = self._check(i)
        self.edited.add(i)
        self.reviewed.add(i)

    def unmark(self, i: int) -> None:
        """Forget slice `i` (reviewed and edited)."""
        i = self._check(i)
        self.reviewed.discard(i)
        self.edited.discard(i)
        self._edits.pop((self.axis, i), None)

    def mark_edit(self, touched: Iterable[int] | None, *, current: int | None) -> Marks:
        """Record an edit that changed the slices `touched`, seen on slice `current`.

        Reviewed slices become fine-tuning ground truth, so only a slice the user saw
        the edit in counts: an edit of one slice marks that slice; an edit across
        several (a 3D brush or fill, erasing a 3D object) marks only `current`, and
        nothing if it did not touch `current`. With `touched` None (unknown), `current`.

        Returns
        -------
        Marks
            The slices newly marked, for :meth:`undo_marks`. A slice this edit changed
            that was marked already is remembered too: undoing an earlier edit keeps it.
        """
        if touched is None:
            seen = set() if current is None else {int(current)}
        else:
            got = {int(i) for i in touched if 0 <= int(i) < self.n_slices}
            if len(got) == 1:
                seen = got
            else:
                seen = got & ({int(current)} if current is not None else set())
        self._seq += 1
        added = Marks(
            axis=self.axis,
            reviewed=frozenset(i for i in seen if i not in self.reviewed),
            edited=frozenset(i for i in seen if i not in self.edited),
            seq=self._seq,
        )
        for i in seen:
            self.mark_edited(i)
            self._edits.setdefault((self.axis, i), set()).add(self._seq)
        return added

    def undo_marks(self, marks: Marks) -> None:
        """Take back the slices :meth:`mark_edit` added (when its edit is undone).

        A slice reviewed before the edit and only edited by it stays reviewed; a slice
        another edit not undone also changed (a later stroke on it) stays edited.
        """
        for key in [k for k in self._edits if k[0] == marks.axis]:
            self._edits[key].discard(marks.seq)
            if not self._edits[key]:
                del self._edits[key]
        kept = {i for axis, i in self._edits if axis == marks.axis}
        reviewed, edited = marks.reviewed - kept, marks.edited - kept
        if marks.axis == self.axis:
            self.reviewed -= reviewed
            self.edited -= edited
            return
        other = self.other_axes.get(marks.axis)
        if other is not None:
            other["reviewed"] = [i for i in other.get("reviewed", []) if i not in reviewed]
            other["edited"] = [i for i in other.get("edited", []) if i not in edited]

    def is_reviewed(self, i: int) -> bool:
        return int(i) in self.reviewed

    def summary(self) -> str:
        """``"k of N slices reviewed"``."""
        return f"{len(self.reviewed)} of {self.n_slices} slices reviewed"

    def switch_axis(self, axis: str) -> None:
        """Step along another axis; the slices of the current one are kept for later.

        Raises
        ------
        ValueError
            If `axis` is invalid, or differs from the current one and `shape` is unknown.
        """
        name = axis_name(axis)
        if name == self.axis:
            return
        if self.shape is None:
            raise ValueError(
                "shape: the volume's shape is needed to switch axis; build the state with "
                "ReviewState.for_volume(shape)"
            )
        self.other_axes[self.axis] = {
            "reviewed": sorted(self.reviewed),
            "edited": sorted(self.edited),
        }
        saved = self.other_axes.pop(name, {})
        self.axis = name
        self.n_slices = self.shape[AXES.index(name)]
        self.edited = {int(i) for i in saved.get("edited", [])}
        self.reviewed = {int(i) for i in saved.get("reviewed", [])} | self.edited

    def reviewed_slices(self) -> dict[str, list[int]]:
        """Reviewed slices per axis, ``{"z": [3, 10, ...]}``, for fine-tuning.

        Only axes with at least one reviewed slice appear; an empty dict means nothing
        was reviewed. This is the `slices` mapping of ``training.slices_from_volume``.
        """
        out: dict[str, list[int]] = {}
        for name in AXES:
            if name == self.axis:
                got = sorted(self.reviewed)
            else:
                got = sorted(int(i) for i in self.other_axes.get(name, {}).get("reviewed", []))
            if got:
                out[name] = got
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; :meth:`from_dict` reads it back."""
        return {
            "axis": self.axis,
            "n_slices": self.n_slices,
            "reviewed": sorted(self.reviewed),
            "edited": sorted(self.edited),
            "shape": list(self.shape) if self.shape is not None else None,
            "other_axes": {
                k: {
                    "reviewed": sorted(v.get("reviewed", [])),
                    "edited": sorted(v.get("edited", [])),
                }
                for k, v in self.other_axes.items()
            },
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReviewState:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            If a field is missing or out of range.
        """
        try:
            shape = d.get("shape")
            return cls(
                n_slices=int(d["n_slices"]),
                axis=str(d.get("axis", "z")),
                reviewed={int(i) for i in d.get("reviewed", [])},
                edited={int(i) for i in d.get("edited", [])},
                shape=tuple(int(n) for n in shape) if shape is not None else None,  # type: ignore[arg-type]
                other_axes={
                    axis_name(k): {
                        "reviewed": [int(i) for i in v.get("reviewed", [])],
                        "edited": [int(i) for i in v.get("edited", [])],
                    }
                    for k, v in dict(d.get("other_axes") or {}).items()
                },
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"review state: expected the fields of ReviewState; {exc}") from exc


# --------------------------------------------------------------------------- next slice


def slice_confidence(confidence: Any, axis: str | int = "z") -> np.ndarray:
    """Mean confidence of each slice along `axis`.

    Parameters
    ----------
    confidence : array-like, shape (Z, Y, X)
        Per-voxel confidence, e.g. ``Segmentation.confidence`` (uint8, percent). Lazy
        arrays (zarr, memory maps) are read one slice at a time.
    axis : {"z", "y", "x"}

    Returns
    -------
    ndarray of float64, shape (n_slices,)
        In the units of `confidence`.
    """
    ax = axis_index(axis)
    if getattr(confidence, "ndim", None) != 3:
        raise ValueError(
            f"confidence: expected a (Z, Y, X) array; got shape "
            f"{getattr(confidence, 'shape', type(confidence))}"
        )
    others = tuple(i for i in range(3) if i != ax)
    if type(confidence) is np.ndarray:
        # float64 accumulation is buffered: no float copy of the volume is made.
        return np.asarray(np.mean(confidence, axis=others, dtype=np.float64))
    n = int(confidence.shape[ax])
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        key: list[Any] = [slice(None)] * 3
        key[ax] = i
        out[i] = float(np.mean(np.asarray(confidence[tuple(key)]), dtype=np.float64))
    return out


def _spread_pick(candidates: np.ndarray, reviewed: Iterable[int], n: int) -> int:
    """The candidate farthest from every reviewed slice (the middle when none is)."""
    done = np.array(sorted(reviewed), dtype=np.int64)
    if done.size == 0:
        return int(candidates[np.argmin(np.abs(candidates - (n - 1) / 2))])
    pos = np.searchsorted(done, candidates)
    left = np.where(pos > 0, candidates - done[np.maximum(pos - 1, 0)], np.iinfo(np.int64).max)
    right = np.where(
        pos < done.size, done[np.minimum(pos, done.size - 1)] - candidates, np.iinfo(np.int64).max
    )
    return int(candidates[np.argmax(np.minimum(left, right))])


def next_slice_to_review(
    state: ReviewState,
    confidence: Any = None,
    *,
    current: int | None = None,
) -> int | None:
    """The unreviewed slice most worth the user's time.

    Parameters
    ----------
    state : ReviewState
    confidence : array-like, optional
        Per-voxel confidence ``(Z, Y, X)``, or per-slice confidence along ``state.axis``
        (1-D, length ``state.n_slices``, e.g. from :func:`slice_confidence`, cached by
        the caller). The unreviewed slice with the lowest mean is chosen.
    current : int, optional
        The slice shown now; breaks ties (and, with no confidence, decides) in favour of
        the nearest unreviewed slice. Without it, ties go to the slice farthest from any
        reviewed one, so the picks spread evenly through the volume.

    Returns
    -------
    int or None
        None when every slice is reviewed.
    """
    n = state.n_slices
    reviewed = np.zeros(n, dtype=bool)
    if state.reviewed:
        reviewed[np.fromiter(state.reviewed, dtype=np.int64)] = True
    candidates = np.flatnonzero(~reviewed)
    if candidates.size == 0:
        return None
    if confidence is not None:
        per = np.asarray(confidence, dtype=np.float64) if np.ndim(confidence) == 1 else None
        if per is None:
            per = slice_confidence(confidence, state.axis)
        if per.shape != (n,):
            raise ValueError(
                f"confidence: expected {n} values along {state.axis!r} (or a volume with "
                f"{n} slices along it); got shape {per.shape}"
            )
        score = per[candidates]
        finite = np.isfinite(score)
        if finite.any():
            low = np.min(score[finite])
            tie = finite & np.isclose(score, low, rtol=0.0, atol=1e-9)
            candidates = candidates[tie]
    if current is not None:
        return int(candidates[np.argmin(np.abs(candidates - int(current)))])
    return _spread_pick(candidates, state.reviewed, n)


# --------------------------------------------------------------------------- edits


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
    shape = np.array(labels.shape)
    p = np.array(pt)
    half = np.full(3, 16)
    while True:
        lo = np.maximum(p - half, 0)
        hi = np.minimum(p + half + 1, shape)
        body, box = _component_in_box(labels, pt, lo, hi, connectivity)
        # The component is whole unless it reaches a face of the box inside the volume.
        grow = False
        for ax in range(3):
            first = [slice(None)] * 3
            first[ax] = slice(0, 1)
            last = [slice(None)] * 3
            last[ax] = slice(-1, None)
            if (lo[ax] > 0 and body[tuple(first)].any()) or (
                hi[ax] < shape[ax] and body[tuple(last)].any()
            ):
                grow = True
                break
        if not grow:
            break
        half = half * 2
    idx = [
        np.flatnonzero(np.any(body, axis=tuple(j for j in range(3) if j != ax))) for ax in range(3)
    ]
    tight = tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)
    mask = body[tight]
    bbox = tuple(
        slice(b.start + t.start, b.start + t.stop) for b, t in zip(box, tight, strict=True)
    )
    region = labels[bbox]
    old = region[mask].copy()
    region[mask] = value
    return Edit(bbox, mask, old)


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


# --------------------------------------------------------------------------- sidecar


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "napari-microfossil"


def _digest(labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{labels.dtype.str}{labels.shape}".encode())
    h.update(np.ascontiguousarray(labels).view(np.uint8).data)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    # A crash of napari keeps what the OS has buffered; this also survives power loss.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _writable_dir(folder: Path) -> bool:
    """Whether files can be created in `folder` (created if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


class Sidecar:
    """Autosaved labels and review state of one scan.

    They live in the folder ``<scan path>.microfossil/`` beside the scan (for a folder
    of slices: beside that folder). If that is not writable, or there is no scan path,
    in ``~/.cache/napari-microfossil/<hash>/`` (``$XDG_CACHE_HOME`` is honoured).

    A save writes ``labels-<id>.tif`` (a new name each time), then ``review.json``
    naming that file with its shape, dtype and hash, each through a temp file renamed
    into place; only then are older labels files deleted. At any moment, even after a
    kill mid-save, ``review.json`` names a complete labels file.

    Parameters
    ----------
    scan_path : str or path, optional
        The scan the labels belong to.
    name : str, optional
        With no `scan_path`: a key (e.g. the layer name) for a folder in the cache.
    cache_dir : str or path, optional
        Root of the fallback folders; ``~/.cache/napari-microfossil`` by default.
    """

    def __init__(
        self,
        scan_path: str | os.PathLike[str] | None = None,
        *,
        name: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if scan_path is None and not name:
            raise ValueError("scan_path, name: expected a scan path or a name; got neither")
        self.scan_path = Path(os.path.abspath(os.fspath(scan_path))) if scan_path else None
        self.name = name
        self.cache_root = Path(cache_dir) if cache_dir is not None else _cache_root()
        key = str(self.scan_path) if self.scan_path is not None else f"name:{name}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        self.cache_folder = self.cache_root / digest
        self.beside_folder = (
            self.scan_path.with_name(self.scan_path.name + SIDECAR_SUFFIX)
            if self.scan_path is not None
            else None
        )
        self._folder: Path | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Sidecar({self.folder})"

    @property
    def candidates(self) -> list[Path]:
        """Folders a save may be in, preferred first."""
        out = [self.beside_folder] if self.beside_folder is not None else []
        return [*out, self.cache_folder]

    @property
    def folder(self) -> Path:
        """Where the next save goes (the last one's folder once saved or loaded)."""
        if self._folder is not None:
            return self._folder
        if self.beside_folder is not None:
            parent = self.beside_folder.parent
            there = self.beside_folder if self.beside_folder.exists() else parent
            if os.access(there, os.W_OK | os.X_OK):
                return self.beside_folder
        return self.cache_folder

    def _choose_folder(self) -> Path:
        if self._folder is not None and _writable_dir(self._folder):
            return self._folder
        for folder in self.candidates:
            if _writable_dir(folder):
                if folder != self.candidates[0]:
                    logger.warning(
                        "%s is not writable; autosaving review to %s",
                        self.candidates[0],
                        folder,
                    )
                else:
                    logger.info("autosaving review to %s", folder)
                self._folder = folder
                if not (folder / "README.txt").exists():
                    _write_readme(folder, self.scan_path)
                return folder
        raise OSError(f"no writable folder for the review autosave among {self.candidates}")

    # ---------------------------------------------------------------- save

    def save(
        self,
        labels: np.ndarray,
        state: ReviewState,
        *,
        spacing: float | tuple[float, float, float] = (1.0, 1.0, 1.0),
        class_names: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Path:
        """Save `labels` and `state` atomically; returns the ``review.json`` path.

        Parameters
        ----------
        labels : ndarray, shape (Z, Y, X), unsigned int
            A snapshot: don't modify it while the save runs (another thread).
        state : ReviewState
        spacing : float or (z, y, x)
            Voxel size in µm, kept in the labels file.
        class_names : sequence of str, optional
        extra : dict, optional
            JSON-serialisable values stored in ``review.json`` (e.g. the layer name).

        Raises
        ------
        ValueError
            If `labels` is not 3D integers.
        OSError
            If no folder is writable.
        """
        labels = np.asarray(labels)
        if labels.ndim != 3 or labels.dtype.kind not in "biu":
            raise ValueError(
                f"labels: expected a (Z, Y, X) integer array; got {labels.dtype} {labels.shape}"
            )
        state_dict = state.to_dict()  # before any slow work: the caller may edit `state` next
        with self._lock:
            folder = self._choose_folder()
            token = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            labels_name = f"labels-{token}.tif"
            digest = _digest(labels)
            path = write_tiff(
                folder / labels_name,
                labels,
                spacing=spacing,
                class_names=class_names,
                # zstd: 4x faster than zlib on labels, read by tifffile (imagecodecs).
                compression="zstd",
                metadata={"review_save": token},
            )
            _fsync(path)
            now = datetime.now(timezone.utc)
            record = {
                "format": "napari-microfossil review",
                "version": FORMAT_VERSION,
                "scan_path": str(self.scan_path) if self.scan_path else None,
                "name": self.name,
                "saved_at": now.isoformat(),
                "labels_file": labels_name,
                "shape": list(labels.shape),
                "dtype": labels.dtype.name,
                "sha256": digest,
                "spacing": list(parse_spacing(spacing)),
                "class_names": list(class_names) if class_names is not None else None,
                "state": state_dict,
                "extra": dict(extra or {}),
            }
            target = folder / STATE_FILE
            with atomic_path(target) as tmp:
                with open(tmp, "w", encoding="utf-8") as f:
                    json.dump(record, f, indent=1)
                    f.flush()
                    os.fsync(f.fileno())
            self._cleanup(folder, keep=labels_name)
        logger.debug("review autosaved to %s", target)
        return target

    @staticmethod
    def _cleanup(folder: Path, *, keep: str) -> None:
        now = time.time()
        for p in folder.glob(_LABELS_GLOB):
            if p.name != keep:
                with contextlib.suppress(OSError):
                    p.unlink()
        for p in folder.glob(".*.tmp.*"):
            with contextlib.suppress(OSError):
                if now - p.stat().st_mtime > _STALE_TEMP_S:
                    p.unlink()

    # ---------------------------------------------------------------- load

    def _record(self, folder: Path) -> dict[str, Any] | None:
        try:
            with open(folder / STATE_FILE, encoding="utf-8") as f:
                rec = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(rec, dict) or rec.get("version") != FORMAT_VERSION:
            return None
        name = rec.get("labels_file")
        if not isinstance(name, str) or not (folder / name).is_file():
            return None
        return rec

    def _latest(self) -> tuple[Path, dict[str, Any]] | None:
        found = [(f, r) for f in self.candidates if (r := self._record(f)) is not None]
        if not found:
            return None
        return max(found, key=lambda fr: str(fr[1].get("saved_at", "")))

    def exists(self) -> bool:
        """Whether a save is there (cheap: the labels are not read or checked)."""
        return self._latest() is not None

    @property
    def saved_at(self) -> datetime | None:
        """When the last save finished (UTC), or None."""
        latest = self._latest()
        if latest is None:
            return None
        with contextlib.suppress(ValueError, TypeError):
            return datetime.fromisoformat(latest[1]["saved_at"])
        return None

    def load(self) -> tuple[np.ndarray, ReviewState, dict[str, Any]]:
        """The last save: labels, review state and the rest of ``review.json``.

        Raises
        ------
        InputError
            If there is no save, or the labels file does not match the hash, shape and
            dtype ``review.json`` recorded (a damaged file).
        """
        latest = self._latest()
        if latest is None:
            raise InputError(f"{self.folder}: no autosaved review found")
        folder, rec = latest
        path = folder / rec["labels_file"]
        labels = read_labels(path).data
        if labels.dtype.name != rec.get("dtype"):
            labels = labels.astype(rec["dtype"])
        if list(labels.shape) != rec.get("shape") or _digest(labels) != rec.get("sha256"):
            raise InputError(
                f"{path}: autosaved labels do not match {folder / STATE_FILE} (shape "
                f"{labels.shape}, expected {tuple(rec.get('shape', ()))}, or a different "
                f"hash); the file is damaged"
            )
        self._folder = folder
        meta = {k: v for k, v in rec.items() if k != "state"}
        meta["folder"] = str(folder)
        return labels, ReviewState.from_dict(rec["state"]), meta

    def archive(self) -> Path | None:
        """Move the last save into a dated subfolder, so the next save does not replace it.

        Used when the user declines to restore: their earlier work stays on disk.
        """
        latest = self._latest()
        if latest is None:
            return None
        folder, rec = latest
        dest = folder / f"declined-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        dest.mkdir()
        os.replace(folder / rec["labels_file"], dest / rec["labels_file"])
        os.replace(folder / STATE_FILE, dest / STATE_FILE)
        logger.info("previous autosave kept in %s", dest)
        return dest

    def remove(self) -> None:
        """Delete every save of this scan (all candidate folders)."""
        for folder in self.candidates:
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
        self._folder = None


def _write_readme(folder: Path, scan: Path | None) -> None:
    text = (
        "Autosaved corrections of napari-microfossil's Review & correct widget"
        + (f" for {scan}" if scan else "")
        + ".\nreview.json names the current labels file; reopen the scan in napari to "
        "restore them, or read the labels-*.tif file directly.\n"
    )
    with contextlib.suppress(OSError):
        (folder / "README.txt").write_text(text, encoding="utf-8")
