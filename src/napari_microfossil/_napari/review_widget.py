"""Review & correct: slice review tracking, next slice, class picker, erase object, autosave.

The user paints with napari's own Labels tools; this widget watches the layer's edits and
keeps a :class:`~napari_microfossil.review.ReviewState` in
``layer.metadata["microfossil_review"]`` (other widgets, e.g. Fine-tune, read it there).
Every edit restarts a short timer; when it fires, a snapshot of the labels and the state
is saved to the scan's sidecar folder in a worker thread. All logic worth a test lives in
:mod:`napari_microfossil.review`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QEvent, QObject, QTimer
from qtpy.QtWidgets import (
    QApplication,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..review import (
    AXES,
    ReviewState,
    Sidecar,
    UndoStack,
    edit_slices,
    erase_object,
    next_slice_to_review,
    slice_confidence,
    slices_touched,
)
from ._common import REVIEW_KEY

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels

log = logging.getLogger(__name__)

STATE_KEY = REVIEW_KEY
SIDECAR_KEY = "microfossil_review_sidecar"
_NONE = "(none)"


def _slot(fn: Callable[[], Any]) -> Callable[..., None]:
    """A button slot that drops the `checked` argument and the return value."""

    def slot(*_: Any) -> None:
        fn()

    return slot


def _shape3(shape: Any) -> tuple[int, int, int]:
    a, b, c = (int(n) for n in shape)
    return (a, b, c)


def _layer_path(layer: Any) -> str | None:
    path = getattr(getattr(layer, "source", None), "path", None) or layer.metadata.get("path")
    return str(path) if path else None


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
        self._window_filtered: QObject | None = None
        self.viewer = napari_viewer
        self.confirm: Callable[[str, str], bool] = confirm or self._ask
        self.cache_dir = cache_dir
        self.undo_stack = UndoStack()
        self.sidecar: Sidecar | None = None
        self._layer: Labels | None = None
        self._offered: set[int] = set()
        self._dirty = False
        self._pending = False
        self._busy = False  # ignore data events we cause ourselves
        self._history_len: tuple[int, int] = (0, 0)
        self._save_done = threading.Event()
        self._save_done.set()
        self.save_worker: Any = None
        self.last_error: str | None = None
        self._conf_cache: dict[tuple[int, int, str], np.ndarray] = {}

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(int(autosave_delay_ms))
        self._timer.timeout.connect(self.save_now)

        self._build()
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.viewer.layers.events.removed.connect(self._on_removed)
        self.viewer.dims.events.current_step.connect(self._update_labels)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.flush)
        self._refresh_choices()

    # ------------------------------------------------------------------ UI

    def _build(self) -> None:
        self.labels_combo = QComboBox()
        self.conf_combo = QComboBox()
        self.axis_combo = QComboBox()
        self.axis_combo.addItems(list(AXES))
        self.class_combo = QComboBox()
        self.progress_label = QLabel("no labels layer")
        self.slice_label = QLabel("")
        self.mark_button = QPushButton("Mark slice reviewed")
        self.next_button = QPushButton("Next slice to review")
        self.erase_button = QPushButton("Erase object under cursor")
        self.undo_button = QPushButton("Undo erase")
        self.save_label = QLabel("")
        self.save_label.setWordWrap(True)
        self.erase_button.setToolTip(
            "Erase the 3D connected object (same label) under the mouse cursor"
        )
        self.next_button.setToolTip(
            "Go to the unreviewed slice where the model was least confident"
        )

        form = QFormLayout()
        form.addRow("Labels", self.labels_combo)
        form.addRow("Confidence", self.conf_combo)
        form.addRow("Axis", self.axis_combo)
        form.addRow("Class", self.class_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.mark_button)
        buttons.addWidget(self.next_button)
        erase = QHBoxLayout()
        erase.addWidget(self.erase_button)
        erase.addWidget(self.undo_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.slice_label)
        layout.addLayout(buttons)
        layout.addLayout(erase)
        layout.addWidget(self.save_label)
        layout.addStretch(1)

        self.labels_combo.currentIndexChanged.connect(self._on_labels_choice)
        self.conf_combo.currentIndexChanged.connect(lambda _: self._update_labels())
        self.axis_combo.currentTextChanged.connect(self.set_axis)
        self.class_combo.activated.connect(self._on_class_choice)
        self.mark_button.clicked.connect(_slot(self.toggle_reviewed))
        self.next_button.clicked.connect(_slot(self.go_to_next))
        self.erase_button.clicked.connect(_slot(self.erase_under_cursor))
        self.undo_button.clicked.connect(_slot(self.undo_erase))

    def _ask(self, title: str, question: str) -> bool:
        answer = QMessageBox.question(
            self, title, question, QMessageBox.Yes | QMessageBox.No, QMessageBox.Yes
        )
        return bool(answer == QMessageBox.Yes)

    # ------------------------------------------------------------------ layers

    @property
    def layer(self) -> Labels | None:
        return self._layer

    @property
    def state(self) -> ReviewState | None:
        """The layer's review state; a fresh one if someone removed it.

        The Segment widget drops the state when it replaces the labels with a new
        result; the autosave of the old labels is then moved aside (not overwritten).
        """
        layer = self._layer
        if layer is None:
            return None
        st = layer.metadata.get(STATE_KEY)
        if isinstance(st, ReviewState):
            return st
        axis = self.axis_combo.currentText() or "z"
        st = ReviewState.for_volume(layer.data.shape, axis=axis)
        layer.metadata[STATE_KEY] = st
        self.undo_stack.clear()
        sidecar = self._sidecar_now()
        if sidecar is not None and sidecar.exists():
            kept = sidecar.archive()
            log.info("review state of %s was reset; earlier autosave kept in %s", layer.name, kept)
        return st

    def _sidecar_now(self) -> Sidecar | None:
        """The sidecar; follows a new ``metadata["source_path"]`` (a new segmentation)."""
        layer = self._layer
        if layer is None:
            return None
        source = layer.metadata.get("source_path")
        if source and (
            self.sidecar is None
            or self.sidecar.scan_path != Sidecar(source, cache_dir=self.cache_dir).scan_path
        ):
            self.sidecar = Sidecar(source, cache_dir=self.cache_dir)
        return self.sidecar

    def _labels_layers(self) -> list[Labels]:
        from napari.layers import Labels

        return [ly for ly in self.viewer.layers if isinstance(ly, Labels) and ly.ndim == 3]

    def _image_layers(self) -> list[Image]:
        from napari.layers import Image

        return [ly for ly in self.viewer.layers if isinstance(ly, Image)]

    def _refresh_choices(self) -> None:
        current = self._layer.name if self._layer is not None else None
        names = [ly.name for ly in self._labels_layers()]
        self.labels_combo.blockSignals(True)
        self.labels_combo.clear()
        self.labels_combo.addItems(names)
        self.labels_combo.blockSignals(False)
        conf = self.conf_combo.currentText()
        self.conf_combo.blockSignals(True)
        self.conf_combo.clear()
        self.conf_combo.addItems([_NONE, *(ly.name for ly in self._image_layers())])
        if conf:
            self.conf_combo.setCurrentText(conf)
        self.conf_combo.blockSignals(False)
        if current in names:
            self.labels_combo.setCurrentText(current)
        elif names:
            self._select(self._labels_layers()[0])
        else:
            self._select(None)

    def _on_labels_choice(self, index: int) -> None:
        layers = self._labels_layers()
        if 0 <= index < len(layers):
            self._select(layers[index])

    def _on_inserted(self, event: Any) -> None:
        from napari.layers import Labels

        layer = event.value
        if (
            isinstance(layer, Labels)
            and layer.ndim == 3
            and self._layer is not None
            and self._sidecar_for(layer).exists()
            and STATE_KEY not in layer.metadata
        ):
            # A second labels layer whose scan has an autosave: offer it now.
            self._refresh_choices()
            self.labels_combo.setCurrentText(layer.name)
            return
        self._refresh_choices()

    def _on_removed(self, event: Any) -> None:
        if event.value is self._layer:
            self.flush()
            self._disconnect(self._layer)
            self._layer = None
        self._refresh_choices()

    def _connect(self, layer: Labels) -> None:
        layer.events.paint.connect(self._on_paint)
        layer.events.data.connect(self._on_data)
        layer.events.set_data.connect(self._on_set_data)
        layer.events.selected_label.connect(self._sync_class)

    def _disconnect(self, layer: Labels | None) -> None:
        if layer is None:
            return
        for emitter, cb in (
            (layer.events.paint, self._on_paint),
            (layer.events.data, self._on_data),
            (layer.events.set_data, self._on_set_data),
            (layer.events.selected_label, self._sync_class),
        ):
            emitter.disconnect(cb)

    def _scan_path(self, layer: Labels) -> str | None:
        """The scan the labels belong to (the sidecar's anchor), or None."""
        path = layer.metadata.get("source_path")
        if path:
            return str(path)
        images = self._image_layers()
        wanted = layer.metadata.get("image_layer")
        conf = layer.metadata.get("confidence_layer")
        for img in images:
            if wanted and img.name == wanted and _layer_path(img):
                return _layer_path(img)
        for img in images:
            if img.name != conf and tuple(img.data.shape) == tuple(layer.data.shape):
                p = _layer_path(img)
                if p:
                    return p
        return _layer_path(layer)

    def _sidecar_for(self, layer: Labels) -> Sidecar:
        path = self._scan_path(layer)
        if path:
            return Sidecar(path, cache_dir=self.cache_dir)
        return Sidecar(name=layer.name, cache_dir=self.cache_dir)

    def _select(self, layer: Labels | None) -> None:
        if layer is self._layer:
            return
        if self._layer is not None:
            self.flush()
            self._disconnect(self._layer)
        self._layer = layer
        self.undo_stack.clear()
        self._dirty = False
        if layer is None:
            self.sidecar = None
            self._update_labels()
            return
        self.sidecar = self._sidecar_for(layer)
        if not isinstance(layer.metadata.get(STATE_KEY), ReviewState):
            layer.metadata[STATE_KEY] = ReviewState.for_volume(
                layer.data.shape, axis=self.axis_combo.currentText() or "z"
            )
            if id(layer) not in self._offered:
                self._offered.add(id(layer))
                self._offer_restore(layer)
        state = layer.metadata[STATE_KEY]
        if state.shape is None:
            state.shape = _shape3(layer.data.shape)
        layer.metadata[SIDECAR_KEY] = str(self.sidecar.folder)
        self._history_len = self._history_lengths(layer)
        self._connect(layer)
        conf = layer.metadata.get("confidence_layer")
        if conf and conf in [ly.name for ly in self._image_layers()]:
            self.conf_combo.setCurrentText(conf)
        self.axis_combo.blockSignals(True)
        self.axis_combo.setCurrentText(state.axis)
        self.axis_combo.blockSignals(False)
        self._fill_classes(layer)
        self._apply_axis_to_dims(state.axis)
        self.labels_combo.blockSignals(True)
        self.labels_combo.setCurrentText(layer.name)
        self.labels_combo.blockSignals(False)
        where = "beside the scan" if self._scan_path(layer) else "in the cache (no scan path)"
        self.save_label.setText(f"Autosave {where}: {self.sidecar.folder}")
        self._update_labels()

    def _offer_restore(self, layer: Labels) -> None:
        assert self.sidecar is not None
        if not self.sidecar.exists():
            return
        when = self.sidecar.saved_at
        stamp = when.astimezone().strftime("%Y-%m-%d %H:%M") if when else "earlier"
        question = (
            f"Corrections autosaved {stamp} were found for '{layer.name}' in "
            f"{self.sidecar.folder}.\nRestore them?"
        )
        if not self.confirm("Restore review", question):
            kept = self.sidecar.archive()
            self.save_label.setText(f"Earlier autosave kept in {kept}")
            return
        try:
            labels, state, _meta = self.sidecar.load()
        except (OSError, ValueError) as exc:
            self._report(f"could not restore the autosave: {exc}")
            return
        if tuple(labels.shape) != tuple(layer.data.shape):
            self._report(
                f"autosave in {self.sidecar.folder} has shape {labels.shape}, the layer "
                f"{tuple(layer.data.shape)}; not restored"
            )
            return
        self._busy = True
        try:
            layer.data = labels.astype(layer.data.dtype, copy=False)
        finally:
            self._busy = False
        if state.shape is None:
            state.shape = _shape3(labels.shape)
        layer.metadata[STATE_KEY] = state
        log.info("restored review of %s from %s", layer.name, self.sidecar.folder)

    # ------------------------------------------------------------------ axis and slices

    def _axis_index(self) -> int:
        st = self.state
        return AXES.index(st.axis if st is not None else "z")

    def _world_axis(self, k: int) -> int:
        return self.viewer.dims.ndim - 3 + k

    def _apply_axis_to_dims(self, axis: str) -> None:
        """Make `axis` the slider: it goes first among the volume's three axes."""
        ndim = self.viewer.dims.ndim
        if ndim < 3:
            return
        w = self._world_axis(AXES.index(axis))
        lead = list(range(ndim - 3))
        rest = [i for i in range(ndim - 3, ndim) if i != w]
        self.viewer.dims.order = (*lead, w, *rest)

    def set_axis(self, axis: str) -> None:
        """Step through slices along `axis` ("z", "y" or "x")."""
        st = self.state
        if st is None or axis not in AXES:
            return
        st.switch_axis(axis)
        if self.axis_combo.currentText() != axis:
            self.axis_combo.blockSignals(True)
            self.axis_combo.setCurrentText(axis)
            self.axis_combo.blockSignals(False)
        self._apply_axis_to_dims(axis)
        self._update_labels()

    def current_slice(self) -> int | None:
        """Index of the slice shown, along the review axis, in the layer's voxels."""
        layer, st = self._layer, self.state
        if layer is None or st is None:
            return None
        pos = layer.world_to_data(self.viewer.dims.point)
        i = int(np.round(pos[self._axis_index()]))
        return min(max(i, 0), st.n_slices - 1)

    def go_to_slice(self, i: int) -> None:
        layer = self._layer
        if layer is None:
            return
        k = self._axis_index()
        pos = np.asarray(layer.world_to_data(self.viewer.dims.point), dtype=float)
        pos[k] = i
        world = layer.data_to_world(pos)
        self.viewer.dims.set_point(self._world_axis(k), float(world[k]))

    # ------------------------------------------------------------------ review actions

    def toggle_reviewed(self) -> None:
        """Mark the shown slice reviewed (or unmark it, if it already was)."""
        st, i = self.state, self.current_slice()
        if st is None or i is None:
            return
        if st.is_reviewed(i):
            st.unmark(i)
        else:
            st.mark_reviewed(i)
        self._changed()

    def mark_current_reviewed(self) -> None:
        st, i = self.state, self.current_slice()
        if st is not None and i is not None:
            st.mark_reviewed(i)
            self._changed()

    def _confidence_per_slice(self) -> np.ndarray | None:
        layer, st = self._layer, self.state
        name = self.conf_combo.currentText()
        if layer is None or st is None or name in ("", _NONE) or name not in self.viewer.layers:
            return None
        conf = self.viewer.layers[name]
        if tuple(conf.data.shape) != tuple(layer.data.shape):
            self.slice_label.setText(f"'{name}' does not match the labels' shape; ignored")
            return None
        key = (id(conf), id(conf.data), st.axis)
        if key not in self._conf_cache:
            self._conf_cache = {key: slice_confidence(conf.data, st.axis)}
        return self._conf_cache[key]

    def go_to_next(self) -> int | None:
        """Jump to the unreviewed slice where the model was least confident."""
        st = self.state
        if st is None:
            return None
        i = next_slice_to_review(st, self._confidence_per_slice(), current=self.current_slice())
        if i is None:
            self.slice_label.setText("every slice is reviewed")
            return None
        self.go_to_slice(i)
        self._update_labels()
        return i

    def _fill_classes(self, layer: Labels) -> None:
        names = layer.metadata.get("class_names") or []
        self.class_combo.clear()
        for i, name in enumerate(names):
            self.class_combo.addItem(f"{i}: {name}", i)
        self.class_combo.setEnabled(bool(names))
        if not names:
            self.class_combo.addItem("(no class names on this layer)")
        self._sync_class()

    def _on_class_choice(self, index: int) -> None:
        value = self.class_combo.itemData(index)
        if self._layer is not None and value is not None:
            self.select_class(int(value))

    def select_class(self, value: int | str) -> None:
        """Paint with class `value` (an id or a class name)."""
        layer = self._layer
        if layer is None:
            return
        if isinstance(value, str):
            from ..classes import class_index

            value = class_index(layer.metadata.get("class_names") or [], value)
        layer.selected_label = int(value)
        if layer.mode in ("pan_zoom", "erase", "transform"):
            layer.mode = "paint"

    def _sync_class(self, event: Any = None) -> None:
        if self._layer is None:
            return
        i = self.class_combo.findData(int(self._layer.selected_label))
        if i >= 0:
            self.class_combo.setCurrentIndex(i)

    # ------------------------------------------------------------------ erase

    def erase_under_cursor(self) -> bool:
        """Erase the 3D connected object under the mouse cursor; True if one was."""
        layer, st = self._layer, self.state
        if layer is None or st is None:
            return False
        if not isinstance(layer.data, np.ndarray):
            self._report("erase needs labels held in memory (a numpy array)")
            return False
        point = layer.world_to_data(self.viewer.cursor.position)
        if not all(0 <= round(p) < n for p, n in zip(point, layer.data.shape, strict=True)):
            self.slice_label.setText("the cursor is outside the labels")
            return False
        edit = erase_object(layer.data, point)
        if edit is None:
            self.slice_label.setText("no object under the cursor")
            return False
        self.undo_stack.push(edit)
        layer.refresh()
        for i in edit_slices(edit, st.axis):
            st.mark_edited(i)
        self._changed()
        return True

    def undo_erase(self) -> bool:
        layer, st = self._layer, self.state
        if layer is None or st is None or not isinstance(layer.data, np.ndarray):
            return False
        edit = self.undo_stack.undo(layer.data)
        if edit is None:
            self.slice_label.setText("nothing to undo")
            return False
        layer.refresh()
        for i in edit_slices(edit, st.axis):
            st.mark_edited(i)
        self._changed()
        return True

    # ------------------------------------------------------------------ edits

    @staticmethod
    def _history_lengths(layer: Any) -> tuple[int, int]:
        # napari's own undo/redo emits no paint event; its history length tells.
        return (len(getattr(layer, "_undo_history", ())), len(getattr(layer, "_redo_history", ())))

    def _on_paint(self, event: Any) -> None:
        st = self.state
        if st is None or self._layer is None:
            return
        touched = slices_touched(event.value, st.axis, n_slices=st.n_slices)
        if touched is None:
            cur = self.current_slice()
            touched = {cur} if cur is not None else set()
        for i in touched:
            if 0 <= i < st.n_slices:
                st.mark_edited(i)
        self._history_len = self._history_lengths(self._layer)
        self._changed()

    def _on_set_data(self, event: Any = None) -> None:
        layer = self._layer
        if layer is None:
            return
        now = self._history_lengths(layer)
        if now != self._history_len:
            self._history_len = now
            self._changed()

    def _on_data(self, event: Any = None) -> None:
        layer, st = self._layer, self.state
        if self._busy or layer is None or st is None:
            return
        shape = tuple(int(n) for n in layer.data.shape)
        if st.shape is not None and shape != st.shape:
            layer.metadata[STATE_KEY] = ReviewState.for_volume(shape, axis=st.axis)
            self.undo_stack.clear()
        self._changed()

    def _changed(self) -> None:
        self._dirty = True
        self._timer.start()
        self._update_labels()

    def _update_labels(self, event: Any = None) -> None:
        st = self.state
        if st is None:
            self.progress_label.setText("no 3D labels layer")
            self.slice_label.setText("")
            return
        edited = f", {len(st.edited)} edited" if st.edited else ""
        self.progress_label.setText(f"{st.summary()} ({st.axis}){edited}")
        i = self.current_slice()
        if i is not None:
            tag = "edited" if i in st.edited else "reviewed" if i in st.reviewed else "not reviewed"
            self.slice_label.setText(f"{st.axis} = {i}: {tag}")
            self.mark_button.setText("Unmark slice" if st.is_reviewed(i) else "Mark slice reviewed")
        self.undo_button.setEnabled(len(self.undo_stack) > 0)

    # ------------------------------------------------------------------ autosave

    def _snapshot(self) -> tuple[np.ndarray, ReviewState, dict[str, Any]] | None:
        layer, st = self._layer, self.state
        if layer is None or st is None or self._sidecar_now() is None:
            return None
        labels = np.array(layer.data, copy=True)
        if labels.dtype.kind == "i":
            labels = labels.astype(f"u{labels.dtype.itemsize}")
        scale = tuple(abs(float(s)) or 1.0 for s in layer.scale[-3:])
        kwargs = {
            "spacing": scale,
            "class_names": layer.metadata.get("class_names"),
            "extra": {"layer": layer.name},
        }
        return labels, ReviewState.from_dict(st.to_dict()), kwargs

    def save_now(self) -> None:
        """Start saving the sidecar in a worker thread (queued if a save is running)."""
        if not self._dirty or self.sidecar is None:
            return
        if not self._save_done.is_set():
            self._pending = True
            return
        snap = self._snapshot()
        if snap is None:
            return
        labels, state, kwargs = snap
        from napari.qt.threading import create_worker

        self._dirty = False
        self._save_done.clear()
        sidecar, done = self.sidecar, self._save_done

        def job() -> Path:
            try:
                return sidecar.save(labels, state, **kwargs)
            finally:
                done.set()

        worker = create_worker(job, _ignore_errors=True)
        worker.returned.connect(self._on_saved)
        worker.errored.connect(self._on_save_error)
        worker.finished.connect(self._on_save_finished)
        self.save_worker = worker
        worker.start()

    def _on_saved(self, path: Path) -> None:
        self.last_error = None
        if self._layer is not None:
            self._layer.metadata[SIDECAR_KEY] = str(Path(path).parent)
        from datetime import datetime

        self.save_label.setText(f"Autosaved {datetime.now():%H:%M:%S} to {Path(path).parent}")

    def _on_save_error(self, exc: BaseException) -> None:
        self._dirty = True
        self._report(f"autosave failed: {exc}")

    def _on_save_finished(self) -> None:
        if self._pending:
            self._pending = False
            self.save_now()

    def wait_for_save(self, timeout: float = 60.0) -> bool:
        """Block until a running save finishes; True if none is running then."""
        return self._save_done.wait(timeout)

    def flush(self) -> None:
        """Save now, on this thread, if anything is unsaved (on close or layer removal)."""
        self._timer.stop()
        self.wait_for_save()
        if not self._dirty or self.sidecar is None:
            return
        snap = self._snapshot()
        if snap is None:
            return
        labels, state, kwargs = snap
        try:
            path = self.sidecar.save(labels, state, **kwargs)
        except (OSError, ValueError) as exc:
            self._report(f"autosave failed: {exc}")
            return
        self._dirty = False
        self._on_saved(path)

    def _report(self, text: str) -> None:
        self.last_error = text
        log.warning("%s", text)
        self.save_label.setText(text)

    # ------------------------------------------------------------------ closing

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        top = self.window()
        if top is not None and top is not self and top is not self._window_filtered:
            top.installEventFilter(self)
            self._window_filtered = top

    def eventFilter(self, obj: QObject | None, event: QEvent | None) -> bool:
        # getattr: Qt may still deliver events while the Python side is torn down.
        watched = getattr(self, "_window_filtered", None)
        if watched is not None and obj is watched and event is not None:
            if event.type() == QEvent.Type.Close:
                self.flush()
        return False

    def closeEvent(self, event: Any) -> None:
        self.flush()
        self.viewer.layers.events.inserted.disconnect(self._on_inserted)
        self.viewer.layers.events.removed.disconnect(self._on_removed)
        self.viewer.dims.events.current_step.disconnect(self._update_labels)
        self._disconnect(self._layer)
        if self._window_filtered is not None:
            self._window_filtered.removeEventFilter(self)
            self._window_filtered = None
        super().closeEvent(event)
