"""When a review autosaves, and what a save writes.

:class:`AutosaveSchedule` is the debounce rule as plain logic on a clock the caller may
replace: a save is due once the changes have been quiet for a delay, one save runs at a
time, and a failed save is not retried until the next change. :class:`Snapshot` is the
copy a save writes, so that the writing can run on another thread while editing goes
on; :func:`sidecar_for` names where it goes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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

    def changed(self) -> None:
        """Something to save changed: a save is due `delay_s` from now (not before)."""
        self._dirty = True
        self._due_at = self.clock() + self.delay_s

    def clear(self) -> None:
        """Nothing is unsaved (e.g. just restored from the save)."""
        self._dirty, self._due_at = False, None

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
        """The save failed: its changes are unsaved again, but not due before the next."""
        self._done.set()
        self._dirty = True
        self.error = exc

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until a running save ends; True if none is running then."""
        return self._done.wait(timeout)
