"""A review session: one label volume under review, its state, edits, undo and autosave.

:class:`ReviewSession` owns what reviewing does beyond drawing, with no napari and no Qt,
so that every rule is tested without a display: recording an edit (the slices it marks
and its undo entry), undo, marking and unmarking slices, switching axis, the next slice
to review, the autosave schedule (a debounce on a clock the caller may replace),
restoring from the sidecar and following a new scan path. Whoever draws it
:meth:`~ReviewSession.subscribe`\\ s to its changes.

Every change says which chunks of the labels it touched, so that an autosave writes
only those (:mod:`.saving`: :meth:`~ReviewSession.update` takes what a save writes on
the editing thread, :meth:`ChunkUpdate.save` writes it on any).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import InputError
from .autosave import AutosaveSchedule, sidecar_for
from .edits import Edit, UndoStack, edit_slices, erase_object, slices_touched
from .labels_store import StoreLabels
from .saving import Autosaving
from .sidecar import SavedReview, Sidecar
from .state import Marks, ReviewState
from .suggest import next_slice_to_review, slice_confidence

logger = logging.getLogger(__name__)

#: What a change event says changed: ``"edited"`` (an edit marked slices), ``"labels"``
#: (the labels changed, no slice marked: e.g. napari's own undo), ``"marked"`` (a slice
#: marked or unmarked reviewed), ``"undone"``, ``"axis"``, ``"reset"`` (a fresh state:
#: new labels of another shape, or the state was dropped), ``"restored"`` (from the
#: sidecar) and ``"saved"`` (the only one that leaves the review record as it was).
Change = Literal["edited", "labels", "marked", "undone", "axis", "reset", "restored", "saved"]
Listener = Callable[[Change], None]


class ReviewSession(Autosaving):
    """One label volume under review: its :class:`ReviewState`, undo and autosave.

    Parameters
    ----------
    labels : array-like, shape (Z, Y, X), int
        The labels under review. Edits of this session (:meth:`erase`, :meth:`undo`)
        change it in place, so they need a numpy array; other edits (a napari brush)
        are reported with :meth:`record_paint` or :meth:`labels_changed`.
    state : ReviewState, optional
        The record to go on with; a fresh one along `axis` by default.
    axis : {"z", "y", "x"}
        The axis of a fresh state.
    scan_path : str or path, optional
        The scan the labels belong to: the autosave goes beside it.
    name : str, optional
        The layer name: only an autosave of it (or of no recorded layer) is restored.
        With no `scan_path`, the key of the autosave folder in the cache. With neither,
        nothing is autosaved.
    cache_dir : str or path, optional
        Root of the fallback autosave folders (``~/.cache/napari-microfossil``).
    autosave_delay_s : float
        Quiet time after the last change before a save is due.
    clock : callable
        ``clock() -> seconds``; :func:`time.monotonic` by default (tests pass a fake).
    chunks : (z, y, x), optional
        Chunk shape of the autosaved labels (:func:`~.chunks.default_chunks` by default).
    """

    def __init__(
        self,
        labels: Any,
        *,
        state: ReviewState | None = None,
        axis: str = "z",
        scan_path: str | os.PathLike[str] | None = None,
        name: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        autosave_delay_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
        chunks: Sequence[int] | None = None,
    ) -> None:
        if len(getattr(labels, "shape", ())) != 3:
            raise ValueError(
                f"labels: expected a (Z, Y, X) array; got shape {getattr(labels, 'shape', None)}"
            )
        self.labels = labels
        if chunks is not None:
            z, y, x = (int(c) for c in chunks)
            self.chunks = (z, y, x)
        self.state = state if state is not None else ReviewState.for_volume(labels.shape, axis)
        self._fill_shape()
        self.cache_dir, self.name = cache_dir, name
        self.sidecar: Sidecar | None = (
            sidecar_for(scan_path, name=name or "", cache_dir=cache_dir)
            if scan_path or name
            else None
        )
        self.undo_stack = UndoStack()
        self.autosave = AutosaveSchedule(delay_s=autosave_delay_s, clock=clock)
        self._listeners: list[Listener] = []
        self._conf: tuple[Any, str, np.ndarray] | None = None

    def __repr__(self) -> str:
        return f"ReviewSession({self.state.summary()}, axis={self.state.axis!r}, {self.sidecar})"

    def _fill_shape(self) -> None:
        if self.state.shape is None:
            a, b, c = (int(n) for n in self.labels.shape)
            self.state.shape = (a, b, c)

    # ---------------------------------------------------------------- events

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(change)`` after every change (see :data:`Change`).

        Returns
        -------
        callable
            Call it to unsubscribe.
        """
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, change: Change) -> None:
        for listener in list(self._listeners):
            listener(change)

    def _changed(
        self, change: Change, *, dirty: bool = True, chunks: Iterable[int] | None = None
    ) -> None:
        """Emit `change`; with `dirty`, schedule a save of the labels' `chunks` (empty:
        the labels did not change; None: any may have)."""
        if dirty:
            self.autosave.changed(chunks)
        self._emit(change)

    # ---------------------------------------------------------------- labels

    @property
    def in_memory(self) -> bool:
        """Whether the labels are a numpy array (this session's own edits need one)."""
        return isinstance(self.labels, np.ndarray)

    def labels_changed(self, atoms: Iterable[Any] | None = None) -> None:
        """The labels changed with no slice to mark (e.g. napari's own undo): save them.

        `atoms` (e.g. the undone item of napari's history, see
        :meth:`ChunkGrid.of_atoms`) says where; without them, every chunk is saved.
        """
        self._changed("labels", chunks=self.chunk_grid.of_atoms(atoms))

    def replace_labels(self, labels: Any, *, edited: bool = True) -> None:
        """The labels array was replaced (e.g. a new segmentation in the same layer).

        Labels of another shape start a fresh state along the same axis, and the undo
        is cleared. With `edited` False (the caller put the array there itself, e.g. a
        restore), nothing is scheduled for saving.
        """
        shape = tuple(int(n) for n in labels.shape)
        self.labels = labels
        if shape != self.state.shape:
            self.state = ReviewState.for_volume(shape, axis=self.state.axis)
            self.undo_stack.clear()
            self._changed("reset", dirty=edited)
        elif edited:
            self._changed("labels")

    def reset(self) -> Path | None:
        """Start a fresh state (same axis) and clear the undo.

        For when the record no longer describes the labels (a new segmentation
        replaced them). The last autosave, which holds the old record, is moved aside
        (:meth:`Sidecar.archive`) rather than overwritten by the next save.

        Returns
        -------
        path or None
            Where the old autosave was kept.
        """
        self.state = ReviewState.for_volume(self.labels.shape, axis=self.state.axis)
        self.undo_stack.clear()
        kept = None
        if self.sidecar is not None and self.sidecar.exists():
            kept = self.sidecar.archive()
            logger.info("review state was reset; earlier autosave kept in %s", kept)
        self._changed("reset", dirty=False)
        return kept

    def adopt(self, state: ReviewState) -> None:
        """Go on with `state`, a record someone else made for these labels."""
        self.state = state
        self._fill_shape()
        self._changed("reset", dirty=False)

    def take_up(self, state: Any, *, scan_path: str | os.PathLike[str] | None = None) -> None:
        """Follow the record kept beside the labels by whoever holds them.

        Another `state` (a :class:`ReviewState`) is adopted; anything else means the
        record was dropped (new labels replaced the old): the session follows
        `scan_path` and starts afresh (:meth:`reset`). Nothing changes when `state`
        is the session's own.
        """
        if state is self.state:
            return
        if isinstance(state, ReviewState):
            self.adopt(state)
        else:
            self.follow_scan(scan_path)
            self.reset()

    # ---------------------------------------------------------------- edits

    def record_edit(
        self,
        touched: Iterable[int] | None,
        *,
        current: int | None,
        edit: Edit | None = None,
        chunks: Iterable[int] | None = None,
    ) -> Marks:
        """Record an edit that changed the slices `touched`, seen on slice `current`.

        Marks the slices :meth:`ReviewState.mark_edit` says the user saw; an `edit`
        (what changed, for undo) goes on the undo stack with those marks, so that
        :meth:`undo` takes back both. `chunks` are the chunks of the labels it changed
        (:attr:`chunk_grid`); by default, those of `edit`, or else all.
        """
        marks = self.state.mark_edit(touched, current=current)
        if edit is not None:
            self.undo_stack.push(edit._replace(note=marks))
            if chunks is None:
                chunks = self.chunk_grid.of_box(edit.bbox)
        self._changed("edited", chunks=chunks)
        return marks

    def record_paint(self, atoms: Iterable[Any], *, current: int | None) -> Marks:
        """Record a napari Labels ``paint`` event (its `atoms`, see :func:`slices_touched`).

        A 3D brush or fill changes slices the user did not see: only `current` counts.
        """
        st, atoms = self.state, list(atoms)
        touched = slices_touched(atoms, st.axis, n_slices=st.n_slices)
        return self.record_edit(touched, current=current, chunks=self.chunk_grid.of_atoms(atoms))

    def erase(
        self, point: Sequence[float], *, current: int | None, connectivity: int = 26
    ) -> Edit | None:
        """Erase the 3D connected object at `point` (voxels); None if it is background.

        Only `current` (the slice shown) counts as edited; :meth:`undo` puts the
        object back and takes back exactly the marks this erase added.

        Raises
        ------
        ValueError
            If the labels are not a numpy array, or `point` is outside them.
        """
        if isinstance(self.labels, StoreLabels):
            from .store_erase import erase_in_store

            edit = erase_in_store(self.labels, point, connectivity=connectivity)
        elif not self.in_memory:
            raise ValueError("labels: erase needs labels held in memory (a numpy array)")
        else:
            edit = erase_object(self.labels, point, connectivity=connectivity)
        if edit is None:
            return None
        self.record_edit(edit_slices(edit, self.state.axis), current=current, edit=edit)
        return edit

    def undo(self) -> Edit | None:
        """Undo the last edit on the undo stack (labels and marks); None if there is none."""
        if isinstance(self.labels, StoreLabels):
            from .store_erase import write_through

            target: Any = write_through(self.labels)
        elif self.in_memory:
            target = self.labels
        else:
            return None
        edit = self.undo_stack.undo(target)
        if edit is None:
            return None
        if isinstance(edit.note, Marks):
            self.state.undo_marks(edit.note)
        self._changed("undone", chunks=self.chunk_grid.of_box(edit.bbox))
        return edit

    # ---------------------------------------------------------------- slices

    def mark_reviewed(self, i: int) -> bool:
        """Mark slice `i` reviewed; False (nothing changes) if it already is."""
        if self.state.is_reviewed(i):
            return False
        self.state.mark_reviewed(i)
        self._changed("marked", chunks=())
        return True

    def unmark(self, i: int) -> bool:
        """Forget that slice `i` was reviewed; refused (False) for a slice painted in.

        An edited slice holds the user's corrections, so it stays reviewed (it is
        fine-tuning ground truth); undo the edit to take it back.
        """
        st = self.state
        if not st.is_reviewed(i) or int(i) in st.edited:
            return False
        st.unmark(i)
        self._changed("marked", chunks=())
        return True

    def switch_axis(self, axis: str) -> None:
        """Step through slices along `axis`; the marks of the others are kept."""
        if self.state.axis == axis:
            return
        self.state.switch_axis(axis)
        self._changed("axis", dirty=False)

    def slice_confidence(self, confidence: Any) -> np.ndarray:
        """Mean of a per-voxel `confidence` volume per slice along the axis (cached).

        Raises
        ------
        ValueError
            If `confidence` does not have the shape of the labels.
        """
        shape = tuple(getattr(confidence, "shape", ()))
        if shape != tuple(self.labels.shape):
            raise ValueError(
                f"confidence: expected shape {tuple(self.labels.shape)} (the labels'); got {shape}"
            )
        axis = self.state.axis
        if self._conf is None or self._conf[0] is not confidence or self._conf[1] != axis:
            self._conf = (confidence, axis, slice_confidence(confidence, axis))
        return self._conf[2]

    def next_slice(self, confidence: Any = None, *, current: int | None = None) -> int | None:
        """The unreviewed slice most worth a look (:func:`next_slice_to_review`).

        Parameters
        ----------
        confidence : array-like, shape (Z, Y, X), optional
            Per-voxel confidence of the labels; its per-slice means are cached.
        current : int, optional
            The slice shown now.

        Returns
        -------
        int or None
            None when every slice is reviewed.
        """
        per = None if confidence is None else self.slice_confidence(confidence)
        return next_slice_to_review(self.state, per, current=current)

    # ---------------------------------------------------------------- sidecar

    def follow_scan(self, scan_path: str | os.PathLike[str] | None) -> bool:
        """Autosave beside `scan_path` from now on, if it names another scan.

        A segmentation that replaces the labels may name its scan; None keeps the
        sidecar. Returns whether the sidecar changed.
        """
        if not scan_path:
            return False
        path = Path(os.path.abspath(os.fspath(scan_path)))
        if self.sidecar is not None and self.sidecar.scan_path == path:
            return False
        self.sidecar = Sidecar(path, cache_dir=self.cache_dir)
        return True

    @property
    def saved_review(self) -> SavedReview | None:
        """What the sidecar's last autosave holds (whichever layer saved it), or None."""
        return self.sidecar.summary() if self.sidecar is not None else None

    @property
    def restorable(self) -> bool:
        """Whether the sidecar holds an autosave of these labels (:meth:`restore` takes
        it): of the layer named `name` (or of no recorded layer) and of their shape."""
        saved = self.saved_review
        return saved is not None and self._mismatch(saved) is None

    def _mismatch(self, saved: SavedReview) -> str | None:
        store = self.labels.path if isinstance(self.labels, StoreLabels) else None
        why = saved.mismatch(
            self.name, self.labels.shape, store=None if store is None else str(store)
        )
        if why is None and (saved.store is None) != (store is None):
            # Whole saved labels do not go into a store, nor a store into memory.
            return f"its labels are in {saved.store}" if saved.store else "its labels are whole"
        return why

    def restore(self) -> Any:
        """Take the labels and the state of the last autosave; returns the labels.

        The labels come in the dtype of those under review and replace them here; the
        caller shows them (e.g. as its layer's data). Labels kept in a zarr store stay
        there: the save was written into it (finished now if it was interrupted), edits
        not saved are dropped, and the labels returned are the store's.

        Raises
        ------
        InputError
            If there is no autosave, it is damaged, or it is of another layer or shape.
        """
        if self.sidecar is None:
            raise InputError("review: no autosave to restore (no scan path and no name)")
        saved = self.sidecar.summary()
        why = None if saved is None else self._mismatch(saved)
        if saved is not None and why is not None:
            raise InputError(
                f"{saved.folder}: the autosave is not of these labels ({why}); not restored"
            )
        labels, state, _meta = self.sidecar.load()
        if isinstance(labels, StoreLabels):
            if isinstance(self.labels, StoreLabels) and self.labels.path == labels.path:
                labels = self.labels  # the same store: keep the array the caller shows
            labels.discard()
            self.labels = labels
        else:
            self.labels = labels.astype(self.labels.dtype, copy=False)
        self.state = state
        self._fill_shape()
        self.undo_stack.clear()
        self.autosave.clear()
        logger.info("restored review from %s", self.sidecar.folder)
        self._changed("restored", dirty=False)
        return self.labels

    def decline_restore(self) -> Path | None:
        """Keep the last autosave aside (not restored, never overwritten); where it went."""
        return self.sidecar.archive() if self.sidecar is not None else None
