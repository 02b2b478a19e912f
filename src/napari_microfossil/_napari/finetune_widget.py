"""Fine-tune widget: teach the model the corrections made in Review & correct.

The widget gathers the scan, the corrected Labels layer and the slices the Review widget
recorded as reviewed (``layer.metadata["microfossil_review"]``), a base model, a budget
(minutes or epochs) and an output path, then drains
:func:`~napari_microfossil.training.finetune.iter_finetune` in a napari worker through
:class:`~._common.JobRunner` (progress bar, Cancel). Each epoch's training loss and
validation IoU go into a small QPainter curve. The engine writes the best model so far
at every improvement, so Cancel keeps it. The new model is added to the Segment widget
docked in the same viewer, and "Segment again" runs Segment with it on the scan.
"""

from __future__ import annotations

import html
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QPointF, QRectF, QSize, Qt, QTimer
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .._progress import Progress
from ..errors import InputError
from ._common import (
    REVIEW_KEY,
    SOURCE_IMAGE_KEY,
    JobRunner,
    LayerChooser,
    ask_question,
    is_instance_layer,
    is_segment_result,
    smoothing_box,
    source_path,
    volume_of,
)

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
DEFAULT_MINUTES = 3.0
#: Epochs in a time-limited run: the time limit ends it (and shapes the LR schedule).
TIME_MODE_EPOCHS = 10_000
AUGMENT_CHOICES = (
    ("light", "light (this scan)"),
    ("full", "full (other scans too)"),
    ("off", "off"),
)
PLUGIN_NAME = "napari-microfossil"

LOSS_COLOR = QColor("#e0a040")
SCORE_COLOR = QColor("#4fc3f7")


def reviewed_slices_of(layer: Any) -> dict[str, list[int]]:
    """The reviewed slices per axis recorded on a Labels layer (empty if none)."""
    state = (getattr(layer, "metadata", None) or {}).get(REVIEW_KEY)
    get = getattr(state, "reviewed_slices", None)
    if not callable(get):
        return {}
    return {axis: list(v) for axis, v in get().items() if v}


def find_dock_widget(viewer: Any, cls: type) -> Any:
    """The first widget of class `cls` docked in `viewer`'s window, or None."""
    window = getattr(viewer, "window", None)
    if window is None:
        return None
    try:
        widgets = list(window.dock_widgets.values())  # napari >= 0.6.2
    except AttributeError:
        qt_window = getattr(window, "_qt_window", None)
        widgets = list(qt_window.findChildren(cls)) if qt_window is not None else []
    for widget in widgets:
        inner = getattr(widget, "native", widget)
        if isinstance(inner, cls):
            return inner
    return None


class TrainingCurve(QWidget):
    """Training loss and validation score per epoch, drawn with QPainter.

    The loss has its own scale (left); the score (IoU, right) spans the scores seen and
    the base model's (a dashed line), so that small changes show. The running mean loss
    of the epoch under way is drawn hollow until the epoch ends.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.score_name = "val IoU"
        self._epochs: dict[int, tuple[float, float | None]] = {}
        self._live: tuple[int, float] | None = None
        self.baseline: float | None = None
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def sizeHint(self) -> QSize:
        return QSize(260, 140)

    def clear(self) -> None:
        self._epochs.clear()
        self._live = None
        self.baseline = None
        self.update()

    def set_baseline(self, score: float | None) -> None:
        """The base model's validation score, drawn as a dashed line."""
        self.baseline = None if score is None else float(score)
        self.update()

    def score_range(self) -> tuple[float, float]:
        """The score axis: the scores seen and the baseline, padded, within 0..1."""
        seen = [s for _, _, s in self.points() if s is not None and math.isfinite(s)]
        if self.baseline is not None and math.isfinite(self.baseline):
            seen.append(self.baseline)
        if not seen:
            return 0.0, 1.0
        lo, hi = min(seen), max(seen)
        pad = max((hi - lo) * 0.15, 0.02)
        lo, hi = max(lo - pad, 0.0), min(hi + pad, 1.0)
        return (lo, hi) if hi > lo else (0.0, 1.0)

    def add_epoch(self, epoch: int, loss: float, score: float | None) -> None:
        """Record an ended epoch's mean training loss and validation score."""
        self._epochs[int(epoch)] = (float(loss), None if score is None else float(score))
        if self._live is not None and self._live[0] <= epoch:
            self._live = None
        self.update()

    def set_live(self, epoch: int, loss: float) -> None:
        """The running mean loss of the epoch under way."""
        if int(epoch) not in self._epochs:
            self._live = (int(epoch), float(loss))
            self.update()

    def points(self) -> list[tuple[int, float, float | None]]:
        """``(epoch, loss, score)`` of the ended epochs, in order."""
        return [(e, *self._epochs[e]) for e in sorted(self._epochs)]

    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        try:
            self._paint(painter)
        finally:
            painter.end()

    def _paint(self, p: QPainter) -> None:
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().windowText().color()
        faint = QColor(text)
        faint.setAlpha(90)
        fm = p.fontMetrics()
        plot = QRectF(self.rect()).adjusted(
            fm.horizontalAdvance("0.000") + 6,
            fm.height() + 6,
            -fm.horizontalAdvance("0.00") - 6,
            -fm.height() - 4,
        )
        if plot.width() < 20 or plot.height() < 20:
            return
        p.setPen(QPen(faint, 1))
        p.drawRect(plot)
        pts = self.points()
        if not pts and self._live is None:
            p.setPen(QPen(text))
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter, "loss and validation IoU per epoch")
            return
        last = max([e for e, _, _ in pts] + ([self._live[0]] if self._live else []))
        x_max = max(last, 2)
        losses = [loss for _, loss, _ in pts] + ([self._live[1]] if self._live else [])
        finite = [v for v in losses if math.isfinite(v)]
        # Both axes span the values seen: a fine-tuning run moves them little, and an
        # axis from 0 would draw them flat.
        y_lo, y_hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        pad = max((y_hi - y_lo) * 0.1, abs(y_hi) * 0.02, 1e-6)
        y_lo, y_hi = max(y_lo - pad, 0.0), y_hi + pad

        def x_of(epoch: float) -> float:
            return plot.left() + (epoch - 1) / (x_max - 1) * plot.width()

        def y_loss(v: float) -> float:
            return plot.bottom() - min(max((v - y_lo) / (y_hi - y_lo), 0.0), 1.0) * plot.height()

        s_lo, s_hi = self.score_range()

        def y_score(v: float) -> float:
            frac = (v - s_lo) / (s_hi - s_lo)
            return plot.bottom() - min(max(frac, 0.0), 1.0) * plot.height()

        def axis_ends(rect: QRectF, align: Any, top: str, bottom: str, color: QColor) -> None:
            """An axis' top and bottom values, beside the plot's top and bottom edges."""
            p.setPen(QPen(color))
            for y, label in ((plot.top(), top), (plot.bottom(), bottom)):
                p.drawText(rect.translated(0, y - fm.height() / 2), align, label)

        # Axes' labels: loss on the left, score on the right, epochs below.
        left = QRectF(0, 0, plot.left() - 3, fm.height())
        axis_ends(left, Qt.AlignmentFlag.AlignRight, f"{y_hi:.3g}", f"{y_lo:.3g}", LOSS_COLOR)
        right = QRectF(plot.right() + 3, 0, self.width() - plot.right() - 3, fm.height())
        axis_ends(right, Qt.AlignmentFlag.AlignLeft, f"{s_hi:.2f}", f"{s_lo:.2f}", SCORE_COLOR)
        if self.baseline is not None and math.isfinite(self.baseline):
            y = y_score(self.baseline)
            p.setPen(QPen(SCORE_COLOR, 1, Qt.PenStyle.DashLine))
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            p.drawText(
                QRectF(plot.left() + 3, y - fm.height() - 1, plot.width(), fm.height()),
                Qt.AlignmentFlag.AlignLeft,
                "base",
            )
        p.setPen(QPen(text))
        below = QRectF(plot.left(), plot.bottom() + 2, plot.width(), fm.height())
        p.drawText(below, Qt.AlignmentFlag.AlignLeft, "epoch 1")
        p.drawText(below, Qt.AlignmentFlag.AlignRight, f"{x_max}")
        legend = QRectF(plot.left(), 0, plot.width(), fm.height() + 4)
        p.setPen(QPen(LOSS_COLOR))
        p.drawText(legend, Qt.AlignmentFlag.AlignLeft, "— training loss")
        p.setPen(QPen(SCORE_COLOR))
        p.drawText(legend, Qt.AlignmentFlag.AlignRight, f"— {self.score_name}")

        def series(values: list[tuple[float, float]], color: QColor) -> None:
            if not values:
                return
            path = QPainterPath(QPointF(*values[0]))
            for xy in values[1:]:
                path.lineTo(QPointF(*xy))
            p.setPen(QPen(color, 2))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawPath(path)
            p.setBrush(color)
            for xy in values:
                p.drawEllipse(QPointF(*xy), 2.5, 2.5)

        loss_xy = [(x_of(e), y_loss(v)) for e, v, _ in pts if math.isfinite(v)]
        series(loss_xy, LOSS_COLOR)
        score_xy = [(x_of(e), y_score(s)) for e, _, s in pts if s is not None and math.isfinite(s)]
        series(score_xy, SCORE_COLOR)
        if self._live is not None and math.isfinite(self._live[1]):
            live = QPointF(x_of(self._live[0]), y_loss(self._live[1]))
            pen = QPen(LOSS_COLOR, 1, Qt.PenStyle.DashLine)
            p.setPen(pen)
            p.setBrush(Qt.BrushStyle.NoBrush)
            if loss_xy:
                p.drawLine(QPointF(*loss_xy[-1]), live)
            p.drawEllipse(live, 3.5, 3.5)


class FinetuneWidget(QWidget):
    """Fine-tune a model on the reviewed slices of a corrected Labels layer.

    Attributes
    ----------
    confirm : callable
        ``confirm(title, text) -> bool``, asked before replacing an existing model
        file; a Yes/No message box unless replaced (tests do).
    model_path_out : Path or None
        The model the last run wrote (also after Cancel, if an epoch had ended).
    """

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        from napari.layers import Image, Labels

        super().__init__(parent)
        self.viewer = napari_viewer
        self.confirm = ask_question(self)
        self.model_path_out: Path | None = None
        self.last_result: Any = None
        self._gen: Any = None
        self._job: dict[str, Any] = {}
        self._cancelled = False
        self._labels_by_user = False
        self._model_by_user = False
        self._auto_output = True
        self._output_default = ""
        self._epoch_losses: list[float] = []
        self._epoch_seen = 0

        self.image = LayerChooser(napari_viewer, Image, parent=self)
        self.labels = LayerChooser(
            napari_viewer,
            Labels,
            prefer=lambda lyr: (
                not is_instance_layer(lyr)
                and (bool(reviewed_slices_of(lyr)) or is_segment_result(lyr))
            ),
            parent=self,
        )
        self.slices_label = QLabel(self)
        self.slices_label.setWordWrap(True)

        self.model = QComboBox(self)
        self.model.addItem("default (bundled)", DEFAULT_MODEL)
        self.browse_model = QPushButton("Browse…", self)
        self.browse_model.setToolTip("Start from a model file (.safetensors)")
        self.model_info = QLabel(self)
        self.model_info.setWordWrap(True)

        self.by_time = QRadioButton("Time", self)
        self.by_epochs = QRadioButton("Epochs", self)
        self._budget = QButtonGroup(self)
        self._budget.addButton(self.by_time)
        self._budget.addButton(self.by_epochs)
        self.by_time.setChecked(True)
        self.minutes = QDoubleSpinBox(self)
        self.minutes.setRange(0.05, 24 * 60)
        self.minutes.setDecimals(2)
        self.minutes.setValue(DEFAULT_MINUTES)
        self.minutes.setSuffix(" min")
        self.minutes.setToolTip("Train for this long; the best model so far is kept")
        self.epochs = QSpinBox(self)
        self.epochs.setRange(1, 10_000)
        self.epochs.setValue(10)
        self.epochs.setToolTip("Train for this many epochs (each 'Steps per epoch' batches)")

        self.smooth = smoothing_box(
            self,
            "3D Gaussian smoothing (sigma) of the scan before training; the new model "
            "remembers it and Segment applies it. 0.5-1 helps on noisy scans. Default: the "
            "base model's.",
        )

        self.output = QLineEdit(self)
        self.output.setToolTip("The new model file; an existing file is replaced only if you agree")
        self.browse_output = QPushButton("…", self)
        self.browse_output.setToolTip("Choose where to save the new model")

        self.show_advanced = QCheckBox("Advanced", self)
        self.show_advanced.setToolTip("Training crops, batches, learning rate and device")
        self.advanced = QWidget(self)
        self.steps_per_epoch = QSpinBox(self)
        self.steps_per_epoch.setRange(1, 10_000)
        self.steps_per_epoch.setValue(25)
        self.batch_size = QSpinBox(self)
        self.batch_size.setRange(1, 256)
        self.batch_size.setValue(8)
        self.crop_size = QSpinBox(self)
        self.crop_size.setRange(32, 2048)
        self.crop_size.setSingleStep(32)
        self.crop_size.setValue(128)
        self.crop_size.setSuffix(" px")
        self.crop_size.setToolTip("Edge of the random training crops, a multiple of 32")
        self.lr = QDoubleSpinBox(self)
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(1e-3)
        self.lr.setToolTip("Peak learning rate (one-cycle schedule)")
        self.find_lr = QPushButton("Find", self)
        self.find_lr.setToolTip(
            "Learning-rate finder: one training step at each of 100 rates from 1e-6 to 1 on "
            "the reviewed slices (not the held-out ones); sets the rate to a tenth of the one "
            "with the lowest loss. The base model is not changed."
        )
        self.augment = QComboBox(self)
        for key, text in AUGMENT_CHOICES:
            self.augment.addItem(text, key)
        self.augment.setToolTip(
            "light: 90° turns, flips and gain, for learning this very scan (its noise and "
            "blur are already right); full: also rotations, shear, zoom, noise and blur, "
            "for a model meant for other scans too"
        )
        self.device = QComboBox(self)
        self._fill_devices()

        self.run_button = QPushButton("Fine-tune", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Stop; the best model so far is kept")
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.curve = TrainingCurve(self)
        self.result_label = QLabel("", self)
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.segment_button = QPushButton("Segment again", self)
        self.segment_button.setToolTip("Run Segment with the new model on the image")
        self.segment_button.setEnabled(False)

        form = QFormLayout()
        form.addRow("Image", self.image)
        form.addRow("Labels", self.labels)
        form.addRow("", self.slices_label)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(self.browse_model)
        form.addRow("Base model", model_row)
        form.addRow("", self.model_info)
        time_row = QHBoxLayout()
        time_row.addWidget(self.by_time)
        time_row.addWidget(self.minutes, 1)
        form.addRow("Budget", time_row)
        epochs_row = QHBoxLayout()
        epochs_row.addWidget(self.by_epochs)
        epochs_row.addWidget(self.epochs, 1)
        form.addRow("", epochs_row)
        form.addRow("Smoothing", self.smooth)
        out_row = QHBoxLayout()
        out_row.addWidget(self.output, 1)
        out_row.addWidget(self.browse_output)
        form.addRow("Output", out_row)
        adv = QFormLayout(self.advanced)
        adv.setContentsMargins(0, 0, 0, 0)
        adv.addRow("Steps per epoch", self.steps_per_epoch)
        adv.addRow("Batch size", self.batch_size)
        adv.addRow("Crop size", self.crop_size)
        lr_row = QHBoxLayout()
        lr_row.addWidget(self.lr, 1)
        lr_row.addWidget(self.find_lr)
        adv.addRow("Learning rate", lr_row)
        adv.addRow("Augmentation", self.augment)
        adv.addRow("Device", self.device)
        self.show_advanced.toggled.connect(self.advanced.setVisible)
        self.advanced.setVisible(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.show_advanced)
        layout.addWidget(self.advanced)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.curve)
        layout.addWidget(self.result_label)
        layout.addWidget(self.segment_button)
        layout.addStretch(1)

        self.runner = JobRunner(
            "Fine-tune",
            self.status,
            [
                self.run_button,
                self.image,
                self.labels,
                self.model,
                self.browse_model,
                self.output,
                self.browse_output,
                self.advanced,
                self.by_time,
                self.by_epochs,
                self.minutes,
                self.epochs,
                self.smooth,
                self.segment_button,
            ],
            self.cancel_button,
            after=self._after_run,
        )
        self.labels.currentIndexChanged.connect(self._on_labels_changed)
        self.labels.activated.connect(self._on_labels_chosen)
        self.image.currentIndexChanged.connect(self._on_image_changed)
        self.model.currentIndexChanged.connect(self._on_model_changed)
        self.model.activated.connect(self._on_model_chosen)
        self.browse_model.clicked.connect(self._browse_model)
        self.browse_output.clicked.connect(self._browse_output)
        self.output.textEdited.connect(self._on_output_edited)
        self.by_time.toggled.connect(self._on_budget_mode)
        self.run_button.clicked.connect(lambda: self.run())
        self.find_lr.clicked.connect(lambda: self.find_learning_rate())
        self.segment_button.clicked.connect(lambda: self.segment_again())
        # The Review widget changes the reviewed slices in place (no event to follow):
        # look again every second while the widget is shown.
        self._timer = QTimer(self)
        self._timer.setInterval(1000)
        self._timer.timeout.connect(self.refresh)

        self._follow_default_labels()
        self._on_labels_changed()
        self._set_default_output()
        self._on_budget_mode()
        self._on_model_changed()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.refresh()
        self._timer.start()

    def hideEvent(self, event: Any) -> None:
        self._timer.stop()
        super().hideEvent(event)

    # -- inputs --------------------------------------------------------------------

    def _fill_devices(self) -> None:
        from ..device import available_devices

        try:
            found = available_devices()
        except Exception as exc:  # torch missing or broken: still show the widget
            log.warning("could not list devices: %s", exc)
            found = ["cpu"]
        self.device.addItem(f"auto ({found[0]})", "auto")
        for name in found:
            self.device.addItem(name, name)

    def _on_budget_mode(self, checked: bool = True) -> None:
        if self.runner.running:
            return
        self.minutes.setEnabled(self.by_time.isChecked())
        self.epochs.setEnabled(self.by_epochs.isChecked())

    def refresh(self) -> None:
        """Follow the Review widget's layer and show the reviewed slices now recorded."""
        if self.runner.running:
            return
        self._follow_default_labels()
        self._show_slices()

    def _default_labels(self) -> Any:
        """The layer the user most likely corrected: Review's, else one with reviews."""
        from .review_widget import ReviewWidget

        review = find_dock_widget(self.viewer, ReviewWidget)
        reviewing = getattr(review, "layer", None) if review is not None else None
        if reviewing is not None and reviewing not in self.viewer.layers:
            reviewing = None
        layers = [lyr for lyr in self.labels.layers() if not is_instance_layer(lyr)]
        if reviewing is not None and reviewed_slices_of(reviewing):
            return reviewing
        with_reviews = [lyr for lyr in layers if reviewed_slices_of(lyr)]
        if with_reviews:
            return with_reviews[-1]
        if reviewing is not None:
            return reviewing
        results = [lyr for lyr in layers if is_segment_result(lyr)]
        return results[-1] if results else None

    def _follow_default_labels(self) -> None:
        if self._labels_by_user:
            return
        current = self.labels.layer()
        best = self._default_labels()
        if best is not None and best is not current:
            if current is None or not reviewed_slices_of(current) or reviewed_slices_of(best):
                self.labels.set_layer(best.name)

    def _on_labels_chosen(self, index: int) -> None:
        self._labels_by_user = True

    def _on_labels_changed(self, index: int | None = None) -> None:
        layer = self.labels.layer()
        if layer is not None:
            wanted = (layer.metadata or {}).get(SOURCE_IMAGE_KEY)
            if wanted and self.image.findData(wanted) >= 0:
                self.image.set_layer(wanted)
            made_with = (layer.metadata or {}).get("model")
            if made_with and not self._model_by_user:
                self._select_model(str(made_with), note="made these labels")
        self._show_slices()

    def _show_slices(self) -> None:
        from ..training.finetune import count_slices, describe_slices, split_reviewed

        layer = self.labels.layer()
        if layer is None:
            text = "Choose the Labels layer you corrected"
        else:
            slices = reviewed_slices_of(layer)
            text = describe_slices(slices)
            if not slices:
                text += " — mark slices reviewed (or paint in them) in Review & correct"
            else:
                _, val = split_reviewed(slices)
                n_val = count_slices(val)
                text += (
                    f"; {n_val} held out for validation"
                    if n_val
                    else "; too few to hold any out: trains on all, no validation"
                )
        if self.slices_label.text() != text:
            self.slices_label.setText(text)

    def _on_image_changed(self, index: int | None = None) -> None:
        if self._auto_output and not self.runner.running:
            self._set_default_output()

    def _scan_path(self) -> str | None:
        image, labels = self.image.layer(), self.labels.layer()
        path = source_path(image) if image is not None else None
        if not path and labels is not None:
            path = (labels.metadata or {}).get("source_path")
        return str(path) if path else None

    def _set_default_output(self) -> None:
        from ..training.finetune import default_output_path

        image = self.image.layer()
        name = image.name if image is not None else "model"
        self._output_default = str(default_output_path(self._scan_path(), name=name))
        self.output.setText(self._output_default)

    def _on_output_edited(self, text: str) -> None:
        self._auto_output = text.strip() == self._output_default

    def _browse_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Save the fine-tuned model as",
            self.output.text(),
            "Models (*.safetensors)",
            options=QFileDialog.Option.DontConfirmOverwrite,  # asked at Fine-tune
        )
        if path:
            if not path.endswith(".safetensors"):
                path += ".safetensors"
            self.output.setText(path)
            self._auto_output = False

    # -- base model ----------------------------------------------------------------

    def model_path(self) -> str:
        """``"default"`` or the chosen base model file."""
        return str(self.model.currentData())

    def _select_model(self, path: str, *, note: str = "") -> None:
        if path == DEFAULT_MODEL:
            self.model.setCurrentIndex(0)
            return
        resolved = str(Path(path).expanduser().resolve())
        if not Path(resolved).is_file():
            return
        index = self.model.findData(resolved)
        if index < 0:
            text = Path(resolved).name + (f" ({note})" if note else "")
            self.model.addItem(text, resolved)
            index = self.model.count() - 1
            self.model.setItemData(index, resolved, Qt.ItemDataRole.ToolTipRole)
        self.model.setCurrentIndex(index)

    def _on_model_chosen(self, index: int) -> None:
        self._model_by_user = True

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose the base model", "", "Models (*.safetensors);;All files (*)"
        )
        if path:
            self._model_by_user = True
            self._select_model(path)

    def _on_model_changed(self, index: int | None = None) -> None:
        from ..model import headline_score, read_spec

        try:
            spec = read_spec(self.model_path())
        except InputError as exc:
            self.model_info.setText(f"<span style='color:#e06c6c'>{html.escape(str(exc))}</span>")
            return
        line = f"{spec.architecture} ({spec.encoder}) · classes: {', '.join(spec.class_names[1:])}"
        metric = headline_score(spec)
        self.model_info.setText(html.escape(line + (f" · {metric}" if metric else "")))
        self.curve.score_name = f"val IoU {spec.class_names[1]}"
        self.curve.update()
        self.smooth.setValue(spec.normalisation.smooth)

    # -- running -------------------------------------------------------------------

    def config(self) -> Any:
        """The :class:`~napari_microfossil.training.TrainConfig` the widget's values give.

        Raises
        ------
        InputError
            If a value is invalid (e.g. a crop size not a multiple of 32).
        """
        from ..training import TrainConfig

        by_time = self.by_time.isChecked()
        return TrainConfig(
            epochs=TIME_MODE_EPOCHS if by_time else int(self.epochs.value()),
            steps_per_epoch=int(self.steps_per_epoch.value()),
            batch_size=int(self.batch_size.value()),
            crop_size=int(self.crop_size.value()),
            lr=float(self.lr.value()),
            augment=str(self.augment.currentData()),
            time_limit_s=float(self.minutes.value()) * 60.0 if by_time else None,
        )

    @property
    def worker(self) -> Any:
        """The last worker started (None before the first run)."""
        return self.runner.worker

    def _inputs(self) -> tuple[Any, Any, Any, dict[str, Any]]:
        """The checked inputs of a run (or of the LR finder): ``(image, labels, spec,
        engine)``, ``engine`` the arguments :func:`iter_finetune` and
        :func:`iter_finetune_lr_find` share (volume, labels, slices, base model, recipe,
        device, name, classes, smoothing).

        Raises
        ------
        InputError
            Naming the first input that is missing or does not fit.
        """
        from ..device import resolve_device
        from ..model import read_spec

        self._show_slices()
        image, labels = self.image.layer(), self.labels.layer()
        device = str(self.device.currentData())
        if image is None:
            raise InputError("image: choose the scan's Image layer (open a scan first)")
        if labels is None:
            raise InputError(
                "labels: choose the Labels layer you corrected (Segment, then Review & correct)"
            )
        slices = reviewed_slices_of(labels)
        if not slices:
            raise InputError(
                f"no reviewed slices on {labels.name!r}: in Review & correct, paint your "
                "corrections or press 'Mark slice reviewed' on the slices you checked; "
                "Fine-tune learns from those slices only"
            )
        if getattr(image, "rgb", False):
            raise InputError(
                f"image: expected a greyscale volume, got the RGB layer {image.name!r}"
            )
        volume, lab = volume_of(image), volume_of(labels)
        if len(volume.shape) != 3 or tuple(volume.shape) != tuple(lab.shape):
            raise InputError(
                f"labels: expected a (Z, Y, X) layer of the image's shape {tuple(volume.shape)}, "
                f"got {tuple(lab.shape)} ({labels.name!r})"
            )
        spec = read_spec(self.model_path())
        names = (labels.metadata or {}).get("class_names")
        if names and tuple(names) != tuple(spec.class_names):
            raise InputError(
                f"base model: its classes {list(spec.class_names)} differ from the labels' "
                f"{list(names)}; choose a model made for these classes"
            )
        config = self.config()
        resolve_device(device)
        engine = {
            "image": volume,
            "labels": lab,
            "slices": slices,
            "base": self.model_path(),
            "config": config,
            "device": device,
            "name": image.name,
            "class_names": tuple(names) if names else None,
            "smooth": round(float(self.smooth.value()), 2),
        }
        return image, labels, spec, engine

    def run(self) -> Any:
        """Check the inputs and start fine-tuning; returns the worker (None if not started)."""
        from napari.utils.notifications import show_error, show_info

        from ..training.finetune import describe_slices, iter_finetune

        if self.runner.running:
            show_info("Fine-tune: already running; cancel it first")
            return self.worker
        try:
            image, labels, spec, engine = self._inputs()
            text = self.output.text().strip()
            if not text:
                raise InputError("output: choose where to save the new model")
            out = Path(text).expanduser()
            if out.suffix != ".safetensors":
                raise InputError(f"output: model files end in .safetensors, got {out.name!r}")
            if out.is_dir():
                raise InputError(f"output: {out} is a folder; give a file name")
        except InputError as exc:
            self.status.setText(f"Fine-tune: {exc}")
            show_error(f"Fine-tune: {exc}")
            return None
        out = out.resolve()
        if out.exists() and not self.confirm(
            "Replace model file?",
            f"{out} exists. Fine-tuning replaces it with the new model. Continue?",
        ):
            self.status.setText("Fine-tune: not started (choose another output file)")
            return None

        self._job = {
            "image": image.name,
            "labels": labels.name,
            "output": out,
            "before_stat": _stat(out),
            "slices": describe_slices(engine["slices"]),
            "time_limited": engine["config"].time_limit_s is not None,
        }
        self._cancelled = False
        self._epoch_losses, self._epoch_seen = [], 0
        self.curve.clear()
        self.curve.score_name = f"val IoU {spec.class_names[1]}"
        self.result_label.setText("")
        self.model_path_out = None
        self.last_result = None
        gen = iter_finetune(
            **engine,
            output=out,
            provenance={
                "image": self._scan_path() or image.name,
                "labels": labels.name,
            },
        )
        self._gen = gen
        worker = self.runner.start(
            gen, on_result=self._on_result, done_message=f"done → {out.name}"
        )
        worker.yielded.connect(self._on_progress)
        worker.aborted.connect(self._on_aborted)
        return worker

    def find_learning_rate(self) -> Any:
        """Start the learning-rate finder on the reviewed slices (see
        ``iter_finetune_lr_find``); the Learning rate field takes its suggestion.
        Returns the worker (None if not started)."""
        from napari.utils.notifications import show_error, show_info

        from ..training.finetune import iter_finetune_lr_find

        if self.runner.running:
            show_info("Fine-tune: already running; cancel it first")
            return self.worker
        try:
            _, _, _, engine = self._inputs()
        except InputError as exc:
            self.status.setText(f"Find learning rate: {exc}")
            show_error(f"Find learning rate: {exc}")
            return None
        gen = iter_finetune_lr_find(**engine)
        return self.runner.start(gen, on_result=self._on_lr_found, done_message=describe_lr_find)

    def _on_lr_found(self, found: Any) -> None:
        self.lr.setValue(found.suggestion)

    def cancel(self) -> None:
        """Stop at the next step; the best model so far stays in the output file."""
        self.runner.cancel()

    def _on_progress(self, p: Any) -> None:
        if not isinstance(p, Progress):
            return
        info = p.info
        if p.stage == "train" and "loss" in info:
            epoch = int(info.get("epoch", 0))
            if epoch != self._epoch_seen:
                self._epoch_seen, self._epoch_losses = epoch, []
            self._epoch_losses.append(float(info["loss"]))
            self.curve.set_live(epoch, sum(self._epoch_losses) / len(self._epoch_losses))
        elif p.stage == "validate base model" and info:
            self.curve.set_baseline(next(iter(info.values())))
        elif p.stage == "validate" and "loss" in info:
            score = next((float(v) for k, v in info.items() if k.startswith("iou_")), None)
            self.curve.add_epoch(int(info["epoch"]), float(info["loss"]), score)

    def _on_aborted(self) -> None:
        self._cancelled = True

    def _on_result(self, result: Any) -> None:
        self.last_result = result
        for h in result.history:
            self.curve.add_epoch(int(h["epoch"]), float(h["loss"]), h.get(result.score_key))
        self.model_path_out = Path(result.path)
        name = result.score_key.removeprefix("iou_")
        lines = []
        worse = (
            result.before is not None and result.after is not None and result.after < result.before
        )
        if result.before is not None and result.after is not None:
            lines.append(
                f"Validation IoU {name}: {result.before:.3f} (base) → {result.after:.3f} "
                f"(fine-tuned, epoch {result.best_epoch})"
            )
            if worse:
                lines.append(
                    "Below the base model on the held-out slices: Segment keeps the model it "
                    "had. Review more slices, give more time, or try Smoothing; the new model "
                    "is in Segment's list (and Segment again uses it) if you want to see it."
                )
        else:
            lines.append(
                f"No validation: {self._job['slices']} are too few to hold any out, so all "
                f"trained (best epoch {result.best_epoch} by training loss)"
            )
        how = {"time-limit": "time budget used", "early-stopping": "stopped early"}.get(
            result.stopped, f"{len(result.history)} epochs"
        )
        lines.append(f"Saved {result.path} ({how}).")
        lines.append(self._register(result.path, select=not worse))
        self.result_label.setText("\n".join(lines))

    def _register(self, path: Path, *, select: bool = True) -> str:
        """Offer the new model in the Segment widget, if one is docked (chosen there
        unless ``select`` is False)."""
        from .segment_widget import SegmentWidget

        segment = find_dock_widget(self.viewer, SegmentWidget)
        if segment is None:
            return "Open Segment (or press Segment again) to use it."
        segment.add_model(path, select=select)
        return "Added to Segment's models." if select else "Added to Segment's list, not chosen."

    def _after_run(self) -> None:
        # A cancelled generator is suspended, not finished: close it, so that the engine
        # drops the network and the optimiser and releases GPU memory now (its finally).
        gen, self._gen = self._gen, None
        if gen is not None:
            gen.close()
        if self._cancelled:
            self._report_cancelled()
        self.segment_button.setEnabled(
            self.model_path_out is not None and self.model_path_out.is_file()
        )
        self._on_budget_mode()
        if self._auto_output:
            self._set_default_output()  # the next run writes a new file

    def _report_cancelled(self) -> None:
        from ..model import read_spec

        out: Path = self._job["output"]
        stat = _stat(out)
        if stat is None or stat == self._job["before_stat"]:
            self.status.setText(
                "Fine-tune: cancelled before the first epoch ended; no model written"
            )
            self.result_label.setText(
                "No model was written: cancelled before the first epoch ended."
                if stat is None
                else f"{out} was left as it was: cancelled before the first epoch ended."
            )
            return
        self.model_path_out = out
        try:
            spec = read_spec(out)
            best = spec.provenance.get("best_epoch")
        except InputError:  # pragma: no cover - the engine writes atomically
            best = None
        where = f"epoch {best}" if best else "so far"
        self.status.setText(f"Fine-tune: cancelled; the best model {where} is kept")
        self.result_label.setText(
            f"Cancelled: the best model ({where}) is kept in {out}.\n" + self._register(out)
        )

    def segment_again(self) -> Any:
        """Run Segment with the new model on the image; returns its worker (or None)."""
        from napari.utils.notifications import show_error

        from .segment_widget import SegmentWidget

        path = self.model_path_out
        if path is None or not path.is_file():
            show_error("Segment again: fine-tune a model first")
            return None
        segment = find_dock_widget(self.viewer, SegmentWidget)
        if segment is None:
            try:
                _, segment = self.viewer.window.add_plugin_dock_widget(PLUGIN_NAME, "Segment")
            except Exception as exc:  # no window or the plugin is not registered
                show_error(f"Segment again: could not open the Segment widget ({exc})")
                return None
        segment.add_model(path)
        image = self._job.get("image")
        if image:
            segment.image.set_layer(image)
        return segment.run()


def describe_lr_find(found: Any) -> str:
    """One status line for an :class:`~napari_microfossil.training.LRFindResult`."""
    how = (
        f"; the sweep ended at {found.lrs[-1]:.2g}, where the loss grew past 4x its lowest"
        if found.stopped == "diverged"
        else ""
    )
    return (
        f"learning rate set to {found.suggestion:.2g} (a tenth of {found.min_loss_lr:.2g}, "
        f"the rate with the lowest loss; steepest fall at {found.steepest_lr:.2g}){how}"
    )


def _stat(path: Path) -> tuple[int, int] | None:
    """``(mtime_ns, size)`` of a file, None if absent: tells whether it was written."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)
