"""Review & correct: a view of a :class:`~napari_microfossil.review.ReviewSession`.

The user paints with napari's own Labels tools; the panel keeps a session for the chosen
labels layer, forwards the layer's events and buttons into it and draws it (the rules are
the session's). State on the layer (:data:`layers.REVIEW`), news through
:class:`PluginContext`, erasing an :class:`EraseTool`, saving an :class:`Autosaver`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..axes import AXES
from ..review import Change, ReviewSession, ReviewState, sidecar_for
from . import layers
from ._common import LayerChooser, ask_question, scrolling
from .autosaver import Autosaver, replayed
from .class_picker import ClassPicker
from .context import PluginContext
from .erase_tool import ERASE_KEY, EraseTool

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels

__all__ = ["ERASE_KEY", "ReviewWidget"]

_NONE = "(none)"


def _reviewable(layer: Labels) -> bool:
    # The Fossils panel's instance layer holds fossil ids, not classes: not reviewable.
    return bool(layer.ndim == 3 and not layers.is_instance_layer(layer))


class ReviewWidget(QWidget):
    """Dock widget for reviewing and correcting a Labels layer slice by slice.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    confirm : callable, optional
        ``confirm(title, question) -> bool``, asked before restoring an autosave; a
        Yes/No message box by default. Tests pass ``lambda title, q: True``.
    autosave_delay_ms : int
        Quiet time after the last edit before the sidecar is saved.
    cache_dir : path, optional
        Root of the fallback autosave folders (``~/.cache/napari-microfossil``).
    """

    def __init__(
        self,
        napari_viewer: napari.Viewer,
        *,
        confirm: Callable[[str, str], bool] | None = None,
        autosave_delay_ms: int = 3000,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.viewer, self.ctx = napari_viewer, PluginContext.of(napari_viewer)
        self.confirm: Callable[[str, str], bool] = confirm or self._ask
        self.cache_dir, self.autosave_delay_s = cache_dir, autosave_delay_ms / 1000
        self.session: ReviewSession | None = None
        self._layer: Labels | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._offered: set[int] = set()  # layers (by id) offered their autosave once
        self._history_len = (0, 0)
        # Before the choosers connect theirs: a removed layer is let go before another is taken.
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.viewer.layers.events.removed.connect(self._on_removed)
        self._build()
        self.viewer.dims.events.current_step.connect(self._update_labels)
        self._select(self.labels_combo.layer())

    def _build(self) -> None:
        from napari.layers import Image, Labels

        # With nothing chosen: the last Segment result, else the first layer (with the
        # sample, the hidden "ground truth" comes first and is not what the user corrects).
        self.labels_combo = LayerChooser(
            self.viewer, Labels, accept=_reviewable, prefer=layers.is_segment_result, keep=True
        )
        self.conf_combo = LayerChooser(
            self.viewer, Image, allow_none=_NONE, prefer=self._named_confidence, keep=True
        )
        self.axis_combo, self.class_combo = QComboBox(), ClassPicker()
        self.axis_combo.addItems(list(AXES))
        self.progress_label, self.slice_label = QLabel("no labels layer"), QLabel("")
        self.save_label = QLabel("")
        self.save_label.setWordWrap(True)
        interval = max(10, min(250, round(self.autosave_delay_s * 1000) // 4))
        self.autosave = Autosaver(self.save_label, interval_ms=interval, parent=self)
        self.mark_button = QPushButton("Mark slice reviewed")
        self.unmark_button = QPushButton("Unmark")
        self.unmark_button.setToolTip(
            "Forget that this slice was reviewed (not for a slice you painted in)"
        )
        self.next_button = QPushButton("Next slice to review")
        self.next_button.setToolTip(
            "Go to the unreviewed slice where the model was least confident"
        )
        self.eraser = EraseTool(self.viewer, erase_at=self.erase_at, say=self.slice_label.setText)
        self.erase_button = self.eraser.button
        self.undo_button = QPushButton("Undo erase")
        body = QWidget()
        form = QFormLayout(body)
        form.addRow("Labels", self.labels_combo)
        form.addRow("Confidence", self.conf_combo)
        form.addRow("Axis", self.axis_combo)
        form.addRow("Class", self.class_combo)
        form.addRow(self.progress_label)
        form.addRow(self.slice_label)
        for row in (
            (self.mark_button, self.unmark_button, self.next_button),
            (self.erase_button, self.undo_button),
        ):
            buttons = QHBoxLayout()
            for button in row:
                buttons.addWidget(button)
            form.addRow(buttons)
        form.addRow(self.save_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scrolling(body))
        self.labels_combo.currentIndexChanged.connect(
            lambda *_: self._select(self.labels_combo.layer())
        )
        self.conf_combo.currentIndexChanged.connect(self._update_labels)
        self.axis_combo.currentTextChanged.connect(self.set_axis)
        self.mark_button.clicked.connect(lambda *_: self.mark_current_reviewed())
        self.unmark_button.clicked.connect(lambda *_: self.unmark_current())
        self.next_button.clicked.connect(lambda *_: self.go_to_next())
        self.undo_button.clicked.connect(lambda *_: self.undo_erase())

    def _ask(self, title: str, question: str) -> bool:
        # Yes by default: after a crash, Enter brings the user's corrections back.
        yes, no = QMessageBox.StandardButton.Yes, QMessageBox.StandardButton.No
        return bool(QMessageBox.question(self, title, question, yes | no, yes) == yes)

    # ------------------------------------------------------------------ session

    @property
    def layer(self) -> Labels | None:
        return self._layer

    @property
    def state(self) -> ReviewState | None:
        """The layer's review state; a fresh one if another panel dropped it (Segment does,
        replacing the labels; the old labels' autosave is then kept aside)."""
        if self.session is None:
            return None
        self.autosave.sync()
        return self.session.state

    @property
    def sidecar(self) -> Any:
        return None if self.session is None else self.session.sidecar

    @property
    def undo_stack(self) -> Any:
        return None if self.session is None else self.session.undo_stack

    @property
    def save_worker(self) -> Any:
        """The last save started in a worker thread."""
        return self.autosave.worker

    @property
    def last_error(self) -> str | None:
        return self.autosave.last_error

    def _on_session(self, change: Change) -> None:
        if change != "saved" and self._layer is not None and self.session is not None:
            self._layer.metadata[layers.REVIEW] = self.session.state
            self.ctx.notify_review_changed(self._layer)
            self._update_labels()

    # ------------------------------------------------------------------ layers

    def _named_confidence(self, image: Any) -> bool:
        """Whether `image` is the confidence layer the reviewed labels name."""
        wanted = (
            None if self._layer is None else layers.meta(self._layer).get(layers.CONFIDENCE_LAYER)
        )
        return bool(wanted) and image.name == wanted

    def _on_inserted(self, event: Any) -> None:
        layer = event.value
        self.labels_combo.refresh()
        current = self._layer
        if (
            current is None
            or layer is current
            or all(ly is not layer for ly in self.labels_combo.layers())
        ):
            return  # chosen already, or not reviewable (e.g. the Fossils instance layer)
        if layers.is_segment_result(layer) and not layers.is_segment_result(current):
            # Segment added a result: it is what the user corrects, not (say) the
            # sample's ground truth. A Segment result already chosen stays.
            self.labels_combo.set_layer(layer.name)
        elif layers.REVIEW not in layers.meta(layer):
            # A second labels layer whose scan has an autosave: offer it now.
            scan = layers.scan_path_of(layer, self.viewer.layers)
            if sidecar_for(scan, name=layer.name, cache_dir=self.cache_dir).exists():
                self.labels_combo.set_layer(layer.name)

    def _on_removed(self, event: Any) -> None:
        if event.value is self._layer:
            self._select(None)
        self.labels_combo.refresh()

    def _connect(self, layer: Labels, on: bool) -> None:
        for emitter, cb in (
            (layer.events.paint, self._on_paint),
            (layer.events.data, self._on_data),
            (layer.events.set_data, self._on_set_data),
        ):
            (emitter.connect if on else emitter.disconnect)(cb)

    def _select(self, layer: Labels | None) -> None:
        if layer is self._layer:
            return
        if self._layer is not None:
            self.flush()
            self._connect(self._layer, False)
        self.eraser.attach(layer)
        self.class_combo.show_classes(layer)
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._layer, self.session, self._unsubscribe = layer, None, None
        self.autosave.follow(None, None)
        if layer is None:
            self.ctx.set_review_layer(None)
            self._update_labels()
            return
        st = layers.meta(layer).get(layers.REVIEW)
        scan = layers.scan_path_of(layer, self.viewer.layers)
        session = self.session = ReviewSession(
            layer.data,
            state=st if isinstance(st, ReviewState) else None,
            axis=self.axis_combo.currentText() or "z",
            scan_path=scan,
            name=layer.name,
            cache_dir=self.cache_dir,
            autosave_delay_s=self.autosave_delay_s,
        )
        layer.metadata[layers.REVIEW] = session.state
        self.autosave.follow(layer, session)
        self._unsubscribe = session.subscribe(self._on_session)
        if not isinstance(st, ReviewState) and id(layer) not in self._offered:
            self._offered.add(id(layer))
            self._offer_restore(layer, session)
        folder = session.sidecar.folder if session.sidecar is not None else None
        layer.metadata[layers.REVIEW_SIDECAR] = str(folder)
        self._history_len = self._history_lengths(layer)
        self._connect(layer, True)
        if wanted := layers.meta(layer).get(layers.CONFIDENCE_LAYER):
            self.conf_combo.set_layer(wanted)
        self._show_axis(session.state.axis)
        where = "beside the scan" if scan else "in the cache (no scan path)"
        self.save_label.setText(f"Autosave {where}: {folder}")
        self.ctx.set_review_layer(layer)  # once its state is on it (restored or not)
        self._update_labels()

    def _offer_restore(self, layer: Labels, session: ReviewSession) -> None:
        if (saved := session.saved_review) is None:
            return
        if why := saved.mismatch(layer.name, layer.data.shape):
            # Another layer's work: never offered, and kept aside so no save replaces it.
            from napari.utils.notifications import show_info

            kept = session.decline_restore()
            show_info(f"Review: autosave of {saved.describe()} not offered ({why}); kept in {kept}")
            return
        question = (
            f"Restore the review of {saved.describe()}, from {saved.folder}?\n"
            f"Yes replaces the labels of '{layer.name}' with it."
        )
        # Yes by default only for a save that names this layer; when in doubt, No.
        ask = self.confirm if saved.layer or self.confirm != self._ask else ask_question(self)
        if not ask("Restore review", question):
            self.save_label.setText(f"Earlier autosave kept in {session.decline_restore()}")
            return
        try:
            layer.data = session.restore()  # before the layer's events are connected
        except (OSError, ValueError) as exc:
            self.autosave.report(f"could not restore the autosave: {exc}")
            return
        session.replace_labels(layer.data, edited=False)

    # ------------------------------------------------------------------ axis and slices

    def _show_axis(self, axis: str) -> None:
        """Show `axis` in the chooser, and make it the slider: first of the volume's axes."""
        self.axis_combo.blockSignals(True)
        self.axis_combo.setCurrentText(axis)
        self.axis_combo.blockSignals(False)
        ndim = self.viewer.dims.ndim
        if ndim >= 3:
            w = ndim - 3 + AXES.index(axis)
            rest = [i for i in range(ndim - 3, ndim) if i != w]
            self.viewer.dims.order = (*range(ndim - 3), w, *rest)

    def set_axis(self, axis: str) -> None:
        """Step through slices along `axis` ("z", "y" or "x")."""
        if self.state is not None and self.session is not None and axis in AXES:
            self.session.switch_axis(axis)
            self._show_axis(axis)
            self._update_labels()

    def current_slice(self) -> int | None:
        """Index of the slice shown, along the review axis, in the layer's voxels."""
        layer, st = self._layer, self.state
        if layer is None or st is None:
            return None
        pos = layer.world_to_data(self.viewer.dims.point)
        return min(max(int(np.round(pos[AXES.index(st.axis)])), 0), st.n_slices - 1)

    def go_to_slice(self, i: int) -> None:
        layer, st = self._layer, self.state
        if layer is not None and st is not None:
            k = AXES.index(st.axis)
            pos = np.asarray(layer.world_to_data(self.viewer.dims.point), dtype=float)
            pos[k] = i
            world = layer.data_to_world(pos)
            self.viewer.dims.set_point(self.viewer.dims.ndim - 3 + k, float(world[k]))

    # ------------------------------------------------------------------ review actions

    def mark_current_reviewed(self) -> None:
        """Mark the shown slice reviewed (nothing changes if it already is)."""
        i = self.current_slice()
        if self.session is not None and i is not None:
            self.session.mark_reviewed(i)

    def unmark_current(self) -> bool:
        """Forget that the shown slice was reviewed; refused for a slice painted in."""
        st, i = self.state, self.current_slice()
        if st is None or self.session is None or i is None:
            return False
        if self.session.unmark(i):
            return True
        if i in st.edited:
            self.slice_label.setText(f"{st.axis} = {i} was edited: it stays reviewed")
        return False

    def go_to_next(self) -> int | None:
        """Jump to the unreviewed slice where the model was least confident."""
        session, conf = self.session, self.conf_combo.layer()
        if self.state is None or session is None:
            return None
        try:
            i = session.next_slice(
                None if conf is None else conf.data, current=self.current_slice()
            )
        except ValueError:
            self.slice_label.setText(f"'{conf.name}' does not match the labels' shape; ignored")
            i = session.next_slice(None, current=self.current_slice())
        if i is None:
            self.slice_label.setText("every slice is reviewed")
            return None
        self.go_to_slice(i)
        self._update_labels()
        return i

    def select_class(self, value: int | str) -> None:
        """Paint with class `value` (an id or a class name)."""
        self.class_combo.select(value)

    # ------------------------------------------------------------------ erase

    def erase_under_cursor(self) -> bool:
        """Erase the 3D connected object under the mouse cursor (``Shift-E``)."""
        return self.erase_at(self.viewer.cursor.position)

    def erase_at(self, position: Any, *, world: bool = True) -> bool:
        """Erase the 3D object at `position` (True if one was); the slice shown is edited."""
        layer, session = self._layer, self.session
        if layer is None or session is None or self.state is None:
            return False
        if not session.in_memory and layers.store_of(layer) is None:
            self.autosave.report("erase needs labels held in memory (a numpy array)")
            return False
        point = layer.world_to_data(position) if world else position
        if not all(0 <= round(p) < n for p, n in zip(point, layer.data.shape, strict=True)):
            self.slice_label.setText("the cursor is outside the labels")
            return False
        try:
            erased = session.erase(point, current=self.current_slice())
        except ValueError as exc:  # an object too big to erase from a store
            self.autosave.report(str(exc))
            return False
        if erased is None:
            self.slice_label.setText("no object under the cursor")
            return False
        layer.refresh()
        return True

    def undo_erase(self) -> bool:
        """Put the last erased object back, and unmark the slices its erase marked."""
        layer, session = self._layer, self.session
        if layer is None or session is None or self.state is None:
            return False
        if session.undo() is None:
            self.slice_label.setText("nothing to undo")
            return False
        layer.refresh()
        return True

    # ------------------------------------------------------------------ edits

    @staticmethod
    def _history_lengths(layer: Any) -> tuple[int, int]:
        # napari's own undo/redo emits no paint event; its history length tells.
        return (len(getattr(layer, "_undo_history", ())), len(getattr(layer, "_redo_history", ())))

    def _on_paint(self, event: Any) -> None:
        if self._layer is not None and self.session is not None and self.state is not None:
            self.session.record_paint(event.value, current=self.current_slice())
            self._history_len = self._history_lengths(self._layer)

    def _on_set_data(self, event: Any = None) -> None:
        if self._layer is not None and self.session is not None:
            now = self._history_lengths(self._layer)
            if now != self._history_len:
                item = replayed(self._layer, self._history_len, now)  # where, for autosave
                self._history_len = now
                self.session.labels_changed(item)

    def _on_data(self, event: Any = None) -> None:
        if self._layer is not None and self.session is not None:
            self.autosave.sync()
            self.session.replace_labels(self._layer.data)

    def _update_labels(self, event: Any = None) -> None:
        st = self.state
        if st is None:
            self.progress_label.setText("no 3D labels layer")
            self.slice_label.setText("")
            return
        edited = f", {len(st.edited)} edited" if st.edited else ""
        self.progress_label.setText(f"{st.summary()} ({st.axis}){edited}")
        if (i := self.current_slice()) is not None:
            self.slice_label.setText(f"{st.axis} = {i}: {st.slice_status(i)}")
            done = st.is_reviewed(i)
            self.mark_button.setText("✓ Slice reviewed" if done else "Mark slice reviewed")
            self.mark_button.setEnabled(not done)
            self.unmark_button.setEnabled(done and i not in st.edited)
        self.undo_button.setEnabled(bool(self.undo_stack))

    # ------------------------------------------------------------------ autosave

    def save_now(self) -> None:
        """Start saving the sidecar in a worker thread, if anything is unsaved."""
        self.autosave.save_now()

    def wait_for_save(self, timeout: float = 60.0) -> bool:
        """Block until a running save finishes; True if none is running then."""
        return self.autosave.wait(timeout)

    def flush(self) -> None:
        """Save now, on this thread, if anything is unsaved (on close or layer removal)."""
        self.autosave.flush()

    # ------------------------------------------------------------------ closing

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.ctx.dock_as_tab(self)
        if (top := self.window()) is not self:
            self.autosave.watch(top)  # flush when the viewer's window closes

    def closeEvent(self, event: Any) -> None:
        self.autosave.stop()
        self.viewer.layers.events.inserted.disconnect(self._on_inserted)
        self.viewer.layers.events.removed.disconnect(self._on_removed)
        self.viewer.dims.events.current_step.disconnect(self._update_labels)
        self.labels_combo.stop()
        self.conf_combo.stop()
        if self._layer is not None:
            self._connect(self._layer, False)
        self.eraser.close()
        self.class_combo.show_classes(None)
        if self.ctx.review_layer is self._layer:
            self.ctx.set_review_layer(None)
        super().closeEvent(event)
