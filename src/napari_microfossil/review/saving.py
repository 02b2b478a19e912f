"""The autosave half of a review session: taking what a save writes, and its outcome.

:class:`Autosaving` is a base of :class:`~.session.ReviewSession`. A save is split so
that a front end can run the slow part off its GUI thread: :meth:`~Autosaving.update`
copies the chunks of the labels that changed since the last save and the state (on the
thread that edits them), :meth:`ChunkUpdate.save` writes them (any thread), and
:meth:`~Autosaving.saved` or :meth:`~Autosaving.save_failed` report back.
:meth:`~Autosaving.save` does all three at once. :meth:`~Autosaving.snapshot` copies the
whole labels instead, for the single-file layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .autosave import AutosaveSchedule, ChunkUpdate, Snapshot, copy_chunks
from .chunks import ChunkGrid
from .labels_store import StoreLabels
from .sidecar import Sidecar
from .state import ReviewState

#: Changed chunks up to this size are copied when a save begins; larger changes are
#: read from the live labels by the save (the GUI thread copies at about 1-2 GB/s).
COPY_MAX_BYTES = 64 * 2**20


class Autosaving:
    """Autosave of a :class:`~.session.ReviewSession` (its labels, state and sidecar).

    Attributes
    ----------
    chunks : (z, y, x) or None
        Chunk shape of the saved labels (:func:`~.chunks.default_chunks` if None).
    copy_max_bytes : int
        Most bytes of changed chunks copied when a save begins.
    """

    labels: Any
    state: ReviewState
    sidecar: Sidecar | None
    autosave: AutosaveSchedule
    chunks: tuple[int, int, int] | None = None
    copy_max_bytes: int = COPY_MAX_BYTES
    _grid: tuple[tuple[int, ...], np.dtype[Any], ChunkGrid] | None = None

    def _changed(self, change: Any, *, dirty: bool = True, chunks: Any = None) -> None:
        raise NotImplementedError  # the session's: emit `change`, schedule a save

    @property
    def chunk_grid(self) -> ChunkGrid:
        """How the labels are cut into chunks for saving (follows their shape and dtype)."""
        if isinstance(self.labels, StoreLabels):
            return self.labels.grid  # the store's own chunks: a save writes whole ones
        shape, dtype = tuple(int(n) for n in self.labels.shape), np.dtype(self.labels.dtype)
        if self._grid is None or self._grid[:2] != (shape, dtype):
            self._grid = (shape, dtype, ChunkGrid(shape, self.chunks, dtype=dtype))
        return self._grid[2]

    @property
    def dirty(self) -> bool:
        """Whether something changed since the last save began."""
        return self.autosave.dirty

    @property
    def saving(self) -> bool:
        """Whether a save (an update or snapshot taken, not yet written) is running."""
        return self.autosave.saving

    @property
    def save_error(self) -> BaseException | None:
        """Why the last save failed (None once one succeeds)."""
        return self.autosave.error

    def save_due(self, now: float | None = None) -> bool:
        """Whether to start a save now (:meth:`AutosaveSchedule.due`), given a sidecar."""
        return self.sidecar is not None and self.autosave.due(now)

    def snapshot(
        self,
        *,
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        class_names: Sequence[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Snapshot | None:
        """Copy the labels and the state for a save; None if nothing is to be saved.

        Nothing is to be saved when nothing changed, there is no sidecar, or a save is
        running (the next one is due when it ends). The session counts as saved from
        now on; :meth:`save_failed` takes that back.

        Parameters
        ----------
        spacing : (z, y, x)
            Voxel size in µm.
        class_names : sequence of str, optional
        extra : dict, optional
            JSON-serialisable values for ``review.json``.
        """
        if not self.dirty or self.sidecar is None or self.saving:
            return None
        labels = np.array(self.labels, copy=True)
        if labels.dtype.kind == "i":
            labels = labels.astype(f"u{labels.dtype.itemsize}")
        z, y, x = (float(s) for s in spacing)
        return Snapshot(
            sidecar=self.sidecar,
            labels=labels,
            state=ReviewState.from_dict(self.state.to_dict()),
            spacing=(z, y, x),
            class_names=tuple(class_names) if class_names is not None else None,
            extra=dict(extra or {}),
            _done=self.autosave.begin(),
        )

    def update(
        self,
        *,
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        class_names: Sequence[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ChunkUpdate | None:
        """What the next autosave writes: copies of the chunks changed since the last
        save (fast: an edit's chunks, not the volume) and of the state; None if nothing
        is to be saved (as for :meth:`snapshot`). Take it on the thread that edits;
        :meth:`ChunkUpdate.save` writes it on any.

        When every chunk is to be written (the first save, the labels replaced, a change
        that could not be localised) or the changed chunks hold more than
        `copy_max_bytes`, nothing is copied: the save reads the live labels chunk by
        chunk, and an edit made meanwhile is saved again by the next save.

        Labels kept in a zarr store (:class:`~.labels_store.StoreLabels`) know their
        edited chunks: those not yet in the store are copied, whatever their size (they
        are in memory already), and the save writes them into the store.
        """
        if not self.dirty or self.sidecar is None or self.saving:
            return None
        grid, changed = self.chunk_grid, self.autosave.unsaved_chunks()
        gens: dict[int, int] = {}
        if isinstance(self.labels, StoreLabels):
            copies, gens = self.labels.unsaved()
            changed = frozenset(copies)
        else:
            copies = copy_chunks(self.labels, grid, changed, max_bytes=self.copy_max_bytes)
        z, y, x = (float(s) for s in spacing)
        return ChunkUpdate(
            sidecar=self.sidecar,
            labels=self.labels,
            grid=grid,
            changed=changed,
            copies=copies,
            state=ReviewState.from_dict(self.state.to_dict()),
            spacing=(z, y, x),
            class_names=tuple(class_names) if class_names is not None else None,
            extra=dict(extra or {}),
            _done=self.autosave.begin(),
            gens=gens,
        )

    def saved(self, path: Path) -> None:
        """A snapshot was written to `path` (call on the thread that edits)."""
        self.autosave.succeeded()
        self._changed("saved", dirty=False)

    def save_failed(self, exc: BaseException) -> None:
        """A snapshot could not be written: the changes count as unsaved again; no save
        is due until the next change (a failing disk is not retried in a loop), but
        :meth:`save` still tries."""
        self.autosave.failed(exc)

    def wait_for_save(self, timeout: float | None = 60.0) -> bool:
        """Block until a running save ends; True if none is running then."""
        return self.autosave.wait(timeout)

    def save(
        self,
        *,
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        class_names: Sequence[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Path | None:
        """Save now on this thread, if anything is unsaved (e.g. on closing).

        Waits for a running save first. Returns ``review.json``'s path, or None if
        nothing was to be saved.

        Raises
        ------
        OSError
            If the save failed (the changes stay unsaved).
        """
        self.wait_for_save()
        snap = self.update(spacing=spacing, class_names=class_names, extra=extra)
        if snap is None:
            return None
        try:
            path = snap.save()
        except (OSError, ValueError) as exc:
            self.save_failed(exc)
            raise
        self.saved(path)
        return path
