"""Keeping the Review panel's work saved: the Qt side of a session's autosave.

:class:`Autosaver` ties a :class:`~napari_microfossil.review.ReviewSession` to the Labels
layer it reviews. The session owns the schedule (:meth:`ReviewSession.save_due`) and the
sidecar; the autosaver polls the schedule on a timer, takes a due save's snapshot on the
GUI thread (the chunks an edit changed, see :meth:`ReviewSession.update`) and writes
it in a worker thread, saves at once on :meth:`~Autosaver.flush`
(another layer chosen, the layer removed, the window closed, the application quitting),
and shows where it saved, or what failed, in a status label.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QEvent, QObject, QTimer
from qtpy.QtWidgets import QApplication, QLabel

from . import layers

if TYPE_CHECKING:
    from napari.layers import Labels

    from ..review import ReviewSession

log = logging.getLogger(__name__)

__all__ = ["Autosaver", "replayed"]


def replayed(layer: Any, before: tuple[int, int], now: tuple[int, int]) -> list[Any] | None:
    """The item of `layer`'s undo history that napari's undo or redo just applied.

    napari emits no paint event for its own undo/redo; the lengths of its undo and redo
    histories (`before` and `now`) tell which it was, and the item's atoms tell where
    the labels changed (:meth:`ChunkGrid.of_atoms`). None when they don't tell.
    """
    (u0, r0), (u1, r1) = before, now
    if (u1, r1) == (u0 - 1, r0 + 1):
        history = getattr(layer, "_redo_history", None)  # undone: moved to the redo side
    elif (u1, r1) == (u0 + 1, r0 - 1):
        history = getattr(layer, "_undo_history", None)  # redone
    else:
        return None
    return list(history[-1]) if history else None


class Autosaver(QObject):
    """Autosave of the session that reviews one Labels layer at a time.

    Parameters
    ----------
    status : QLabel
        Shows when and where the labels were saved, or the last error.
    interval_ms : int
        How often the session's autosave schedule is polled.
    parent : QObject, optional

    Attributes
    ----------
    layer, session
        What is saved (see :meth:`follow`); None for nothing.
    worker : napari worker or None
        The last save started in a worker thread.
    last_error : str or None
        The last failure reported, until the next save succeeds.
    """

    def __init__(self, status: QLabel, *, interval_ms: int, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.status = status
        self.layer: Labels | None = None
        self.session: ReviewSession | None = None
        self.worker: Any = None
        self.last_error: str | None = None
        self._window: QObject | None = None  # the top window watched for its Close
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.poll)
        self._timer.start()
        if (app := QApplication.instance()) is not None:
            app.aboutToQuit.connect(self.flush)

    def follow(self, layer: Labels | None, session: ReviewSession | None) -> None:
        """Save `session`, the review of `layer`, from now on.

        Labels kept in a zarr store get this autosaver's :meth:`flush` as their
        ``flush_hook``: whoever needs every edit in the store
        (:func:`layers.labels_store_of`) saves through the review's journal.
        """
        old = getattr(self.layer, "data", None)
        if getattr(old, "flush_hook", None) == self.flush:
            old.flush_hook = None
        self.layer, self.session = layer, session
        if layer is not None and session is not None and layers.store_of(layer):
            layer.data.flush_hook = self.flush

    def sync(self) -> None:
        """Take up a state another panel put on the layer, or start afresh if it dropped
        it (Segment does, replacing the labels; the old autosave is then kept aside)."""
        if self.layer is not None and self.session is not None:
            md = layers.meta(self.layer)
            self.session.take_up(md.get(layers.REVIEW), scan_path=md.get(layers.SOURCE_PATH))

    def _options(self) -> dict[str, Any]:
        """Follow a new scan the layer names; what a save records beside the labels."""
        assert self.layer is not None and self.session is not None
        md = layers.meta(self.layer)
        self.session.follow_scan(md.get(layers.SOURCE_PATH))
        self.sync()
        return {
            "spacing": tuple(abs(float(s)) or 1.0 for s in self.layer.scale[-3:]),
            "class_names": md.get(layers.CLASS_NAMES),
            "extra": {"layer": self.layer.name},
        }

    def poll(self) -> None:
        if self.session is not None and self.session.save_due():
            self.save_now()

    def save_now(self) -> None:
        """Start saving the sidecar in a worker thread, if anything is unsaved."""
        session = self.session
        if session is None or not session.dirty:
            return
        # Copies only the chunks changed since the last save (a first save reads the
        # live labels chunk by chunk in the worker): the GUI thread does not stall.
        if (snap := session.update(**self._options())) is None:
            return  # a save is running: the next is due when it ends
        from napari.qt.threading import create_worker

        def failed(exc: BaseException) -> None:
            session.save_failed(exc)
            self.report(f"autosave failed: {exc}")

        worker = create_worker(snap.save, _ignore_errors=True)
        worker.returned.connect(lambda path: (session.saved(path), self._show_saved(path)))
        worker.errored.connect(failed)
        self.worker = worker
        worker.start()

    def _show_saved(self, path: Path) -> None:
        self.last_error = None
        if self.layer is not None:
            self.layer.metadata[layers.REVIEW_SIDECAR] = str(Path(path).parent)
        store = layers.store_of(self.layer)
        where = (
            f"into {store} (journal: {Path(path).parent})" if store else f"to {Path(path).parent}"
        )
        self._say(f"Autosaved {datetime.now():%H:%M:%S} {where}")

    def _say(self, text: str) -> None:
        # A save ending after its panel closed (the viewer torn down) has no label left.
        with contextlib.suppress(RuntimeError):
            self.status.setText(text)

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until a running save finishes; True if none is running then."""
        return self.session is None or self.session.wait_for_save(timeout)

    def flush(self) -> None:
        """Save now, on this thread, if anything is unsaved."""
        session = self.session
        if session is None or self.layer is None or not session.wait_for_save():
            return
        if not session.dirty:
            return
        try:
            path = session.save(**self._options())
        except (OSError, ValueError) as exc:
            self.report(f"autosave failed: {exc}")
            return
        if path is not None:
            self._show_saved(path)

    def report(self, text: str) -> None:
        """Show a failure in the status label (and the log) and keep it as `last_error`."""
        self.last_error = text
        log.warning("%s", text)
        self._say(text)

    def watch(self, window: QObject | None) -> None:
        """Flush when `window` (the viewer's top window) closes."""
        if window is not None and window is not self._window:
            window.installEventFilter(self)
            self._window = window

    def eventFilter(self, obj: QObject | None, event: QEvent | None) -> bool:
        # getattr: Qt may still deliver events while the Python side is torn down.
        watched = getattr(self, "_window", None)
        if watched is not None and obj is watched and event is not None:
            if event.type() == QEvent.Type.Close:
                self.flush()
        return False

    def stop(self) -> None:
        """Save what is unsaved and stop: no more polling, no more watching the window."""
        self.flush()
        self._timer.stop()
        if self._window is not None:
            self._window.removeEventFilter(self)
            self._window = None
