"""When a review autosaves, and what a save writes.

:class:`AutosaveSchedule` is the debounce rule as plain logic on a clock the caller may
replace: a save is due once the changes have been quiet for a delay, one save runs at a
time, and a failed save is not retried until the next change; it also collects which
chunks of the labels changed. :class:`ChunkUpdate` is what an autosave writes: copies of
the changed chunks only (a first save, or one after a change that cannot be localised,
reads every chunk from the live labels on the saving thread), so that the writing can
run on another thread while editing goes on. :class:`Snapshot` is a copy of the whole
labels, for :meth:`Sidecar.save`'s single-file layout. :func:`sidecar_for` names where
a save goes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .chunks import ChunkGrid
from .sidecar import Sidecar
from .state import ReviewState


def sidecar_for(
    scan_path: str | os.PathLike[str] | None,
    *,
    name: str,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Sidecar:
    """The sidecar of labels of the scan at `scan_path`; with none, a cache folder keyed
    by `name` (e.g. the layer name)."""
    if scan_path:
        return Sidecar(scan_path, cache_dir=cache_dir)
    return Sidecar(name=name, cache_dir=cache_dir)


@dataclass(frozen=True)
class Snapshot:
    """A copy of the labels and the state, taken for one save.

    Attributes
    ----------
    sidecar : Sidecar
    labels : ndarray, shape (Z, Y, X), unsigned int
    state : ReviewState
        A copy: the session goes on editing its own.
    spacing : (z, y, x)
        Voxel size in µm.
    class_names : tuple of str, optional
    extra : dict
        Stored in ``review.json`` as is (e.g. the layer name).
    """

    sidecar: Sidecar
    labels: np.ndarray
    state: ReviewState
    spacing: tuple[float, float, float]
    class_names: tuple[str, ...] | None
    extra: dict[str, Any]
    _done: threading.Event = field(repr=False, compare=False)

    def save(self) -> Path:
        """Write the snapshot to its sidecar (any thread); returns ``review.json``'s path.

        Raises
        ------
        OSError
            If no folder is writable.
        """
        try:
            return self.sidecar.save(
                self.labels,
                self.state,
                spacing=self.spacing,
                class_names=self.class_names,
                extra=self.extra,
            )
        finally:
            self._done.set()


@dataclass(frozen=True)
class ChunkUpdate:
    """What one autosave writes: the changed chunks of the labels, and the state.

    Attributes
    ----------
    sidecar : Sidecar
    labels : array-like, shape (Z, Y, X), int
        The live labels (not a copy): chunks not in `copies` are read from there on the
        saving thread. A chunk edited meanwhile is marked changed again, so the next
        save writes it again.
    grid : ChunkGrid
    changed : frozenset of int, or None
        Chunk numbers that changed since the last save; None: all may have.
    copies : dict
        Chunk number -> a copy of that chunk, taken on the editing thread.
    state : ReviewState
        A copy: the session goes on editing its own.
    spacing, class_names, extra
        As for :class:`Snapshot`.
    gens : dict
        For labels in a store (:class:`~.labels_store.StoreLabels`): chunk number ->
        which write of it the copy holds.
    """

    sidecar: Sidecar
    labels: Any
    grid: ChunkGrid
    changed: frozenset[int] | None
    copies: dict[int, np.ndarray]
    state: ReviewState
    spacing: tuple[float, float, float]
    class_names: tuple[str, ...] | None
    extra: dict[str, Any]
    _done: threading.Event = field(repr=False, compare=False)
    gens: dict[int, int] = field(default_factory=dict)

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype saved: unsigned for signed labels (their bits), as :class:`Snapshot`."""
        dt = np.dtype(self.labels.dtype)
        return np.dtype(f"u{dt.itemsize}") if dt.kind == "i" else dt

    def save(self) -> Path:
        """Write the update to its sidecar (any thread); returns ``review.json``'s path.

        Raises
        ------
        OSError
            If no folder is writable.
        """
        try:
            return self.sidecar.save_chunks(self)
        finally:
            self._done.set()


def copy_chunks(
    labels: Any, grid: ChunkGrid, changed: Iterable[int] | None, *, max_bytes: int
) -> dict[int, np.ndarray]:
    """Copies of the chunks `changed` of `labels`, if they hold at most `max_bytes`;
    else none (the save then reads them on its own thread)."""
    if changed is None:
        return {}
    which = sorted(changed)
    itemsize = np.dtype(labels.dtype).itemsize
    if sum(np.prod(grid.chunk_shape(i)) for i in which) * itemsize > max_bytes:
        return {}
    return {i: np.array(labels[grid.box(i)], copy=True) for i in which}


class AutosaveSchedule:
    """The debounce rule of the autosave.

    Parameters
    ----------
    delay_s : float
        Quiet time after the last change before a save is due.
    clock : callable
        ``clock() -> seconds``; :func:`time.monotonic` by default (tests pass a fake).
    """

    def __init__(
        self, *, delay_s: float = 3.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if delay_s < 0:
            raise ValueError(f"autosave_delay_s: expected >= 0; got {delay_s}")
        self.delay_s = float(delay_s)
        self.clock = clock
        #: Why the last save failed (None once one succeeds).
        self.error: BaseException | None = None
        self._dirty = False
        self._due_at: float | None = None
        self._chunks: set[int] | None = None  # None: every chunk (nothing saved yet)
        self._done = threading.Event()
        self._done.set()

    @property
    def dirty(self) -> bool:
        """Whether something changed since the last save began."""
        return self._dirty

    @property
    def saving(self) -> bool:
        """Whether a save began and has not ended."""
        return not self._done.is_set()

    def changed(self, chunks: Iterable[int] | None = None) -> None:
        """Something to save changed: a save is due `delay_s` from now (not before).

        Parameters
        ----------
        chunks : iterable of int, optional
            The chunks of the labels that changed (empty: only the review record did);
            None: any may have, the next save writes them all.
        """
        self._dirty = True
        self._due_at = self.clock() + self.delay_s
        if chunks is None:
            self._chunks = None
        elif self._chunks is not None:
            self._chunks.update(chunks)

    def unsaved_chunks(self) -> frozenset[int] | None:
        """The chunks changed since the last save began; None: any may have."""
        return None if self._chunks is None else frozenset(self._chunks)

    def clear(self) -> None:
        """Nothing is unsaved (e.g. just restored from the save)."""
        self._dirty, self._due_at = False, None
        self._chunks = set()

    def due(self, now: float | None = None) -> bool:
        """Whether to start a save at `now` (the clock's time by default): a change was
        followed by `delay_s` of quiet and no save is running. After a failed save, the
        next is due only after the next change."""
        if self._due_at is None or self.saving:
            return False
        return (self.clock() if now is None else now) >= self._due_at

    def begin(self) -> threading.Event:
        """A save begins: what changed until now counts as saved. Set the returned event
        when the save ends, however it ends."""
        self.clear()
        self._done.clear()
        return self._done

    def succeeded(self) -> None:
        self.error = None

    def failed(self, exc: BaseException) -> None:
        """The save failed: its changes are unsaved again (every chunk: the next save
        writes them all), but not due before the next."""
        self._done.set()
        self._dirty = True
        self._chunks = None
        self.error = exc

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until a running save ends; True if none is running then."""
        return self._done.wait(timeout)
