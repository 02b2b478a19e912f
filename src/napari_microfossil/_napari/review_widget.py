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

from ..axes import AXES
from ..review import (
    Marks,
    ReviewState,
    Sidecar,
    UndoStack,
    edit_slices,
    erase_object,
    next_slice_to_review,
    slice_confidence,
    slices_touched,
)
from ._common import REVIEW_KEY, SOURCE_IMAGE_KEY, is_instance_layer, is_segment_result

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels

log = logging.getLogger(__name__)

STATE_KEY = REVIEW_KEY
SIDECAR_KEY = "microfossil_review_sidecar"
_NONE = "(none)"
#: Key, bound on the reviewed Labels layer, that erases the object under the mouse.
ERASE_KEY = "Shift-E"


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
        self._conf_layer: Image | None = None  # the chosen confidence layer (follows renames)
        self._mode_before_erase: str | None = None  # set while the erase mode is on

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(int(autosave_delay_ms))
        self._timer.timeout.connect(self.save_now)

        self._build()
        for ly in self.viewer.layers:
            ly.events.name.connect(self._on_renamed)
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
        self.unmark_button = QPushButton("Unmark")
        self.unmark_button.setToolTip(
            "Forget that this slice was reviewed (not for a slice you painted in)"
        )
        self.next_button = QPushButton("Next slice to review")
        self.erase_button = QPushButton("Erase object (click)")
        self.erase_button.setCheckable(True)
        self.undo_button = QPushButton("Undo erase")
        self.save_label = QLabel("")
        self.save_label.setWordWrap(True)
        self.erase_button.setToolTip(
            "Then click an object on the canvas: its 3D connected body (same label) is "
            f"erased. Or press {ERASE_KEY} with the mouse over it."
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
        buttons.addWidget(self.unmark_button)
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
        self.conf_combo.currentIndexChanged.connect(self._on_conf_choice)
        self.axis_combo.currentTextChanged.connect(self.set_axis)
        self.class_combo.activated.connect(self._on_class_choice)
        self.mark_button.clicked.connect(_slot(self.mark_current_reviewed))
        self.unmark_button.clicked.connect(_slot(self.unmark_current))
        self.next_button.clicked.connect(_slot(self.go_to_next))
        self.erase_button.toggled.connect(self.set_erase_mode)
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

        # The Fossils widget's instance layer holds fossil ids, not classes: not reviewable.
        return [
            ly
            for ly in self.viewer.layers
            if isinstance(ly, Labels) and ly.ndim == 3 and not is_instance_layer(ly)
        ]

    def _image_layers(self) -> list[Image]:
        from napari.layers import Image

        return [ly for ly in self.viewer.layers if isinstance(ly, Image)]

    def _refresh_choices(self) -> None:
        current = self._layer.name if self._layer is not None else None
        layers = self._labels_layers()
        names = [ly.name for ly in layers]
        self.labels_combo.blockSignals(True)
        self.labels_combo.clear()
        self.labels_combo.addItems(names)
        self.labels_combo.blockSignals(False)
        self._refresh_confidence()
        if current in names:
            self.labels_combo.setCurrentText(current)
        elif layers:
            # The last Segment result, else the first layer: with the sample, the
            # hidden "ground truth" comes first and is not what the user corrects.
            results = [ly for ly in layers if is_segment_result(ly)]
            self._select(results[-1] if results else layers[0])
        else:
            self._select(None)

    def _refresh_confidence(self) -> None:
        """Fill the confidence chooser; keep the chosen layer (by identity: renames are
        followed) or, with none chosen, take the labels' ``metadata["confidence_layer"]``.
        """
        images = self._image_layers()
        chosen = self._conf_layer if any(ly is self._conf_layer for ly in images) else None
        if chosen is None and self._layer is not None:
            wanted = self._layer.metadata.get("confidence_layer")
            chosen = next((ly for ly in images if wanted and ly.name == wanted), None)
        self._conf_layer = chosen
        self.conf_combo.blockSignals(True)
        self.conf_combo.clear()
        self.conf_combo.addItems([_NONE, *(ly.name for ly in images)])
        self.conf_combo.setCurrentText(chosen.name if chosen is not None else _NONE)
        self.conf_combo.blockSignals(False)

    def _on_conf_choice(self, index: int) -> None:
        name = self.conf_combo.currentText()
        self._conf_layer = next((ly for ly in self._image_layers() if ly.name == name), None)
        self._update_labels()

    def _on_renamed(self, event: Any = None) -> None:
        self._refresh_choices()
        self._update_labels()

    def _on_labels_choice(self, index: int) -> None:
        layers = self._labels_layers()
        if 0 <= index < len(layers):
            self._select(layers[index])

    def _on_inserted(self, event: Any) -> None:
        layer = event.value
        layer.events.name.connect(self._on_renamed)
        self._refresh_choices()
        if not any(ly is layer for ly in self._labels_layers()) or layer is self._layer:
            return  # not reviewable (e.g. the Fossils instance layer), or chosen already
        current = self._layer
        if current is not None and not is_segment_result(current) and is_segment_result(layer):
            # Segment added a result: it is what the user corrects, not (say) the
            # sample's ground truth. A Segment result already chosen stays.
            self.labels_combo.setCurrentText(layer.name)
        elif (
            current is not None
            and STATE_KEY not in layer.metadata
            and self._sidecar_for(layer).exists()
        ):
            # A second labels layer whose scan has an autosave: offer it now.
            self.labels_combo.setCurrentText(layer.name)

    def _on_removed(self, event: Any) -> None:
        event.value.events.name.disconnect(self._on_renamed)
        if event.value is self._conf_layer:
            self._conf_layer = None
        if event.value is self._layer:
            self.flush()
            self._disconnect(self._layer)
            self._layer = None
        self._refresh_choices()

    def _connect(self, layer: Labels) -> None:
        layer.bind_key(ERASE_KEY, self._erase_key, overwrite=True)
        layer.events.paint.connect(self._on_paint)
        layer.events.data.connect(self._on_data)
        layer.events.set_data.connect(self._on_set_data)
        layer.events.selected_label.connect(self._sync_class)

    def _disconnect(self, layer: Labels | None) -> None:
        if layer is None:
            return
        self.set_erase_mode(False)
        layer.bind_key(ERASE_KEY, None)
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
        wanted = layer.metadata.get(SOURCE_IMAGE_KEY)
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
        if conf:
            found = [ly for ly in self._image_layers() if ly.name == conf]
            if found:
                self._conf_layer = found[0]
        self._refresh_confidence()
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

    def mark_current_reviewed(self) -> None:
        """Mark the shown slice reviewed (nothing changes if it already is)."""
        st, i = self.state, self.current_slice()
        if st is not None and i is not None and not st.is_reviewed(i):
            st.mark_reviewed(i)
            self._changed()

    def unmark_current(self) -> bool:
        """Forget that the shown slice was reviewed; refused for a slice painted in.

        An edited slice holds the user's corrections, so it stays reviewed (it is
        fine-tuning ground truth); undo the painting to take it back.
        """
        st, i = self.state, self.current_slice()
        if st is None or i is None or not st.is_reviewed(i):
            return False
        if i in st.edited:
            self.slice_label.setText(f"{st.axis} = {i} was edited: it stays reviewed")
            return False
        st.unmark(i)
        self._changed()
        return True

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

    def set_erase_mode(self, on: bool) -> None:
        """While on, the next click on the canvas erases the object under it.

        The labels layer is put in pan/zoom mode meanwhile (so the click does not
        paint), and gets its mode back when the erase mode ends.
        """
        on = bool(on) and self._layer is not None
        callbacks = self.viewer.mouse_drag_callbacks
        active = self._mode_before_erase is not None
        if on and not active:
            if self._on_erase_click not in callbacks:
                callbacks.append(self._on_erase_click)
            layer = self._layer
            assert layer is not None
            self._mode_before_erase = str(layer.mode)
            if layer.mode != "pan_zoom":
                layer.mode = "pan_zoom"
            self.slice_label.setText("click the object to erase")
        elif not on and active:
            # napari is iterating over the callbacks when a click ends the mode: drop ours
            # after that loop (removing it now would skip the next callback).
            QTimer.singleShot(0, self._drop_erase_callback)
            layer, mode = self._layer, self._mode_before_erase
            self._mode_before_erase = None
            if layer is not None and mode is not None and layer.mode == "pan_zoom":
                layer.mode = mode
        if self.erase_button.isChecked() != on:
            self.erase_button.blockSignals(True)
            self.erase_button.setChecked(on)
            self.erase_button.blockSignals(False)

    def _drop_erase_callback(self) -> None:
        callbacks = self.viewer.mouse_drag_callbacks
        if self._mode_before_erase is None and self._on_erase_click in callbacks:
            callbacks.remove(self._on_erase_click)

    def _on_erase_click(self, viewer: Any, event: Any) -> None:
        """Viewer mouse-press callback of the erase mode: erase where the user clicked."""
        if self._mode_before_erase is None:  # the mode ended; the callback goes next
            return
        if getattr(event, "type", "mouse_press") != "mouse_press":
            return
        try:
            layer = self._layer
            point = None if layer is None else self._clicked_point(layer, event)
            if point is None:
                self.slice_label.setText("no object under the click")
            else:
                self.erase_at(point, world=False)
        finally:
            self.set_erase_mode(False)

    def _clicked_point(self, layer: Labels, event: Any) -> np.ndarray | None:
        """The clicked voxel (data coordinates); in 3D, the first labelled one on the ray."""
        pos = np.asarray(layer.world_to_data(event.position), dtype=float)
        displayed = list(getattr(event, "dims_displayed", []) or [])
        if self.viewer.dims.ndisplay != 3 or len(displayed) != 3:
            return pos
        start, end = layer.get_ray_intersections(
            event.position, event.view_direction, displayed, world=True
        )
        if start is None or end is None:
            return None
        data = layer.data
        n = int(np.ceil(np.linalg.norm(np.asarray(end) - np.asarray(start)))) * 2 + 1
        for p in np.linspace(start, end, n):
            pos[displayed] = p
            idx = tuple(round(float(v)) for v in pos)
            inside = all(0 <= v < m for v, m in zip(idx, data.shape, strict=True))
            if inside and data[idx] != 0:
                return pos
        return None

    def _erase_key(self, layer: Any = None) -> None:
        # A key press comes with the mouse over the canvas: the cursor is where the user looks.
        self.erase_under_cursor()

    def erase_under_cursor(self) -> bool:
        """Erase the 3D connected object under the mouse cursor (``Shift-E``)."""
        return self.erase_at(self.viewer.cursor.position)

    def erase_at(self, position: Any, *, world: bool = True) -> bool:
        """Erase the 3D connected object at `position`; True if one was.

        Only the slice shown counts as edited (the user saw the erase there), and
        :meth:`undo_erase` takes back exactly the marks this erase added.
        """
        layer, st = self._layer, self.state
        if layer is None or st is None:
            return False
        if not isinstance(layer.data, np.ndarray):
            self._report("erase needs labels held in memory (a numpy array)")
            return False
        point = layer.world_to_data(position) if world else position
        if not all(0 <= round(p) < n for p, n in zip(point, layer.data.shape, strict=True)):
            self.slice_label.setText("the cursor is outside the labels")
            return False
        edit = erase_object(layer.data, point)
        if edit is None:
            self.slice_label.setText("no object under the cursor")
            return False
        marks = st.mark_edit(edit_slices(edit, st.axis), current=self.current_slice())
        self.undo_stack.push(edit._replace(note=marks))
        layer.refresh()
        self._changed()
        return True

    def undo_erase(self) -> bool:
        """Put the last erased object back, and unmark the slices its erase marked."""
        layer, st = self._layer, self.state
        if layer is None or st is None or not isinstance(layer.data, np.ndarray):
            return False
        edit = self.undo_stack.undo(layer.data)
        if edit is None:
            self.slice_label.setText("nothing to undo")
            return False
        layer.refresh()
        if isinstance(edit.note, Marks):
            st.undo_marks(edit.note)
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
        # A 3D brush or fill changes slices the user did not see: only the shown one counts.
        st.mark_edit(touched, current=self.current_slice())
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
            done = st.is_reviewed(i)
            self.mark_button.setText("✓ Slice reviewed" if done else "Mark slice reviewed")
            self.mark_button.setEnabled(not done)
            self.unmark_button.setEnabled(done and i not in st.edited)
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
        _escape_dock_title(self)
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
        for ly in self.viewer.layers:
            ly.events.name.disconnect(self._on_renamed)
        self._disconnect(self._layer)
        self._drop_erase_callback()
        if self._window_filtered is not None:
            self._window_filtered.removeEventFilter(self)
            self._window_filtered = None
        super().closeEvent(event)


def _escape_dock_title(widget: QWidget) -> None:
    """Double the ``&`` in the title of the dock holding `widget`.

    Qt reads ``&`` in a window title as a mnemonic, so the tab of a tabified dock named
    "Review & correct" shows "Review _correct"; napari passes the manifest's display
    name through unescaped. Only the Qt title changes: napari's own name stays.
    """
    from qtpy.QtWidgets import QDockWidget

    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    if parent is None:
        return
    title = parent.windowTitle()
    if "&" in title and "&&" not in title:
        parent.setWindowTitle(title.replace("&", "&&"))
