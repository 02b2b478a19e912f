"""Pieces the plugin's widgets share: layer choosers kept in sync with the viewer, and
:class:`JobRunner`, which runs an engine generator in a napari worker with progress,
status, Cancel and error reporting."""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFrame,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QWidget,
)

from .._progress import Progress
from ..errors import InputError, os_error_line

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)


# ------------------------------------------------------------------


@dataclass(frozen=True)
class Failed:
    """What a guarded job returns instead of raising for a mistake the user can fix."""

    message: str


def guarded(gen: Generator[Progress, None, Any]) -> Generator[Progress, None, Any]:
    """Re-yield an engine generator; a fault the user can act on becomes a :class:`Failed`.

    An :class:`InputError` (bad input) and an :class:`OSError` (a full disk, a folder
    that cannot be written, a file gone) end in one line for the panel; the traceback of
    an OSError goes to the log. Other exceptions are bugs and propagate (napari's
    worker reports them with their traceback).
    """
    try:
        return (yield from gen)
    except InputError as exc:
        return Failed(str(exc))
    except OSError as exc:
        log.warning("job failed", exc_info=exc)
        return Failed(os_error_line(exc))


def every_fault_as_line(
    gen: Generator[Progress, None, Any], what: str
) -> Generator[Progress, None, Any]:
    """Re-yield `gen`; any exception, a bug included, ends as one line (a :class:`Failed`)
    with its traceback in the log. For long jobs whose partial outputs the engine
    removes on failure (an export), where a traceback dialog would help no user."""
    try:
        return (yield from gen)
    except Exception as exc:
        log.error("%s failed", what, exc_info=exc)
        return Failed(f"{what} failed ({exc or type(exc).__name__}); nothing half-written kept")


class LayerChooser(QComboBox):
    """A combobox of the viewer's layers of one type, kept in sync with the viewer.

    Parameters
    ----------
    viewer : napari.Viewer
    layer_type : type
        e.g. ``napari.layers.Image``.
    allow_none : str, optional
        Text of an extra first item meaning "no layer".
    prefer : callable, optional
        ``prefer(layer) -> bool``; when nothing is chosen yet, the last layer it
        accepts is picked.
    accept : callable, optional
        ``accept(layer) -> bool``: only the layers of `layer_type` it accepts are listed.
    keep : bool
        Follow the chosen layer itself, through renames (by default the choice is kept
        by name, so a rename loses it). With nothing chosen, or when the chosen layer
        goes, the chooser then picks the last layer `prefer` accepts, else the
        `allow_none` item, else the first layer (by default: the last layer), and
        ``currentIndexChanged`` is emitted only when the chosen layer changes.
    """

    def __init__(
        self,
        viewer: napari.Viewer,
        layer_type: type,
        *,
        allow_none: str | None = None,
        prefer: Callable[[Any], bool] | None = None,
        accept: Callable[[Any], bool] | None = None,
        keep: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._viewer = viewer
        self._type = layer_type
        self._none = allow_none
        self._prefer = prefer
        self._accept = accept
        self._keep = keep
        self._chosen: Any = None  # with `keep`: the chosen layer itself
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        if keep:  # connected first, so the owner's slots see the new choice
            self.currentIndexChanged.connect(self._remember)
        events = viewer.layers.events
        events.inserted.connect(self._on_inserted)
        events.removed.connect(self.refresh)
        events.reordered.connect(self.refresh)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.refresh()

    def _on_inserted(self, event: Any = None) -> None:
        layer = getattr(event, "value", None)
        if layer is not None:
            layer.events.name.connect(self.refresh)
        self.refresh()

    def stop(self) -> None:
        """Stop following the viewer (the owner closes); the choice stays as it is."""
        events = self._viewer.layers.events
        events.inserted.disconnect(self._on_inserted)
        events.removed.disconnect(self.refresh)
        events.reordered.disconnect(self.refresh)
        for layer in self._viewer.layers:
            layer.events.name.disconnect(self.refresh)

    def layers(self) -> list[Any]:
        return [
            lyr
            for lyr in self._viewer.layers
            if isinstance(lyr, self._type) and (self._accept is None or self._accept(lyr))
        ]

    def refresh(self, event: Any = None) -> None:
        layers = self.layers()
        names = [lyr.name for lyr in layers]
        before = self._chosen if self._keep else self.currentData()
        if self._keep:
            current = next((lyr.name for lyr in layers if lyr is self._chosen), None)
        else:
            current = before
        self.blockSignals(True)
        try:
            self.clear()
            if self._none is not None:
                self.addItem(self._none, None)
            for name in names:
                self.addItem(name, name)
            if current in names:
                self.setCurrentIndex(self.findData(current))
            elif self._prefer is not None and any(self._prefer(lyr) for lyr in layers):
                best = [lyr.name for lyr in layers if self._prefer(lyr)][-1]
                self.setCurrentIndex(self.findData(best))
            elif self._keep and names:
                self.setCurrentIndex(0)  # the none item, else the first layer
            elif names:
                self.setCurrentIndex(self.count() - 1)
        finally:
            self.blockSignals(False)
        if self._keep:
            self._remember()
            if self._chosen is not before:
                self.currentIndexChanged.emit(self.currentIndex())
        elif self.currentData() != current:
            self.currentIndexChanged.emit(self.currentIndex())

    def _remember(self, index: int = -1) -> None:
        name = self.currentData()
        self._chosen = next((lyr for lyr in self.layers() if lyr.name == name), None)

    def layer(self) -> Any:
        """The chosen layer, or None."""
        if self._keep:
            chosen = self._chosen
            return chosen if chosen is not None and chosen in self._viewer.layers else None
        name = self.currentData()
        if name is None or name not in self._viewer.layers:
            return None
        layer = self._viewer.layers[name]
        return layer if isinstance(layer, self._type) else None

    def set_layer(self, name: str) -> None:
        index = self.findData(name)
        if index >= 0:
            self.setCurrentIndex(index)


class JobRunner:
    """Run engine generators in a napari worker, one at a time, with progress and Cancel.

    Parameters
    ----------
    title : str
        Prefix of the progress bar's description (``"Segment"``).
    status : QLabel
        Shows the current stage, the outcome or the error.
    busy_widgets : iterable of QWidget
        Disabled while a job runs.
    cancel : QPushButton
        Enabled while a job runs; asks the worker to stop.
    after : callable, optional
        Called (no arguments) when a job has ended, however it ended, after the busy
        widgets were enabled again: the owner re-applies its own enabled states.
    """

    def __init__(
        self,
        title: str,
        status: QLabel,
        busy_widgets: Iterable[QWidget],
        cancel: QPushButton,
        *,
        after: Callable[[], None] | None = None,
    ) -> None:
        self.after = after
        self.title = title
        self.status = status
        self.busy_widgets = list(busy_widgets)
        self.cancel_button = cancel
        self.worker: Any = None
        self.pbar: Any = None
        self.busy = False  # from start() until the worker's finished signal
        self._stage = ""
        cancel.setEnabled(False)
        cancel.clicked.connect(self.cancel)

    @property
    def running(self) -> bool:
        """True from :meth:`start` until the job has finished, failed or been cancelled."""
        return self.busy

    def start(
        self,
        gen: Generator[Progress, None, Any],
        *,
        on_result: Callable[[Any], None],
        done_message: str | Callable[[Any], str] = "done",
    ) -> Any:
        """Start draining ``gen`` in a worker; ``on_result`` gets its result on the GUI thread."""
        from napari.qt.threading import create_worker
        from napari.utils import progress

        def job() -> Generator[Progress, None, Any]:
            return (yield from guarded(gen))

        worker = create_worker(job, _start_thread=False, _ignore_errors=True)
        self.pbar = progress(total=0, desc=self.title)
        self._stage = ""
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda result: self._on_returned(result, on_result, done_message))
        worker.aborted.connect(self._on_aborted)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.busy = True
        for w in self.busy_widgets:
            w.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"{self.title}: starting…")
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop the running job at its next progress step; nothing is added."""
        if self.worker is not None:
            self.status.setText(f"{self.title}: cancelling…")
            self.worker.quit()

    def _on_progress(self, p: Any) -> None:
        # napari's progress widgets call QApplication.processEvents(), so the later
        # signals of this worker (returned, finished) may run inside this handler:
        # write the status first and hold on to the bar, which may be closed meanwhile.
        pbar = self.pbar
        if not isinstance(p, Progress) or pbar is None or not self.busy:
            return
        info = " ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.info.items()
        )
        self.status.setText(f"{self.title}: {p.stage} {p.done}/{p.total} {info}".rstrip())
        if p.stage != self._stage:
            self._stage = p.stage
            pbar.set_description(f"{self.title}: {p.stage}")
        if pbar.total != p.total:
            pbar.total = p.total
        pbar.n = p.done
        pbar.update(0)

    def _on_returned(
        self, result: Any, on_result: Callable[[Any], None], done: str | Callable[[Any], str]
    ) -> None:
        from napari.utils.notifications import show_error

        if isinstance(result, Failed):
            self.status.setText(f"{self.title} failed: {result.message}")
            show_error(f"{self.title}: {result.message}")
            return
        try:
            on_result(result)
        except InputError as exc:
            self.status.setText(f"{self.title} failed: {exc}")
            show_error(f"{self.title}: {exc}")
            return
        self.status.setText(f"{self.title}: {done(result) if callable(done) else done}")

    def _on_aborted(self) -> None:
        self.status.setText(f"{self.title}: cancelled")

    def _on_errored(self, exc: BaseException) -> None:
        # napari's worker already shows the error (with its traceback) as a notification.
        log.error("%s failed", self.title, exc_info=exc)
        self.status.setText(f"{self.title} failed: {exc}")

    def _on_finished(self) -> None:
        self.busy = False
        pbar, self.pbar = self.pbar, None
        if pbar is not None:
            pbar.close()
        for w in self.busy_widgets:
            w.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if self.after is not None:
            self.after()


class _FormScroll(QScrollArea):
    """Scrolls vertically only; as wide as the form needs, so nothing is cut off."""

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        body = self.widget()
        if body is None:
            return hint
        width = (
            body.minimumSizeHint().width()
            + self.verticalScrollBar().sizeHint().width()
            + 2 * self.frameWidth()
        )
        return QSize(max(hint.width(), width), hint.height())


def scrolling(body: QWidget) -> QScrollArea:
    """`body` in a frameless vertical scroll area, so that a docked panel can be shorter
    than its form (a 1366x768 screen) and scrolls instead of growing the window; the
    dock is kept as wide as the form needs."""
    area = _FormScroll()
    area.setWidget(body)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return area


def smoothing_box(parent: QWidget, tooltip: str) -> QDoubleSpinBox:
    """The "Smoothing" field of Segment and Fine-tune: a 3D Gaussian sigma in voxels
    (0 shows as "none")."""
    from ..normalise import MAX_SMOOTH

    box = QDoubleSpinBox(parent)
    box.setRange(0.0, MAX_SMOOTH)
    box.setSingleStep(0.1)
    box.setDecimals(2)
    box.setSpecialValueText("none")
    box.setSuffix(" voxels")
    box.setToolTip(tooltip)
    return box


def ask_question(parent: QWidget) -> Callable[[str, str], bool]:
    """The default ``confirm(title, text) -> bool``: a Yes/No message box."""

    def confirm(title: str, text: str) -> bool:
        answer = QMessageBox.question(
            parent,
            title,
            text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return bool(answer == QMessageBox.StandardButton.Yes)

    return confirm


def replace_or_add(viewer: Any, name: str, kind: str, data: np.ndarray, **kwargs: Any) -> Any:
    """Put ``data`` into the layer ``name`` of type ``kind`` (added if missing)."""
    from napari.layers import Image, Labels

    cls = {"labels": Labels, "image": Image}[kind]
    if name in viewer.layers and isinstance(viewer.layers[name], cls):
        layer = viewer.layers[name]
        layer.data = data
        for key in ("scale", "translate", "colormap", "contrast_limits"):
            if key in kwargs:
                setattr(layer, key, kwargs[key])
        layer.metadata.update(kwargs.get("metadata", {}))
        return layer
    if name in viewer.layers:  # a layer of another type holds the name: keep it
        log.warning("layer %r exists and is not %s; adding a new layer", name, kind)
    add = viewer.add_labels if kind == "labels" else viewer.add_image
    return add(data, name=name, **kwargs)


# -- the widget ----------------------------------------------------------------------
