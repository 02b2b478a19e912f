"""The Fine-tune panel's live curve: training loss and validation score per epoch,
drawn with QPainter."""

from __future__ import annotations

import math
from typing import Any

from qtpy.QtCore import QPointF, QRectF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

LOSS_COLOR = QColor("#e0a040")
SCORE_COLOR = QColor("#4fc3f7")


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
        self._live_epoch = 0
        self._live_losses: list[float] = []
        self.baseline: float | None = None
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def sizeHint(self) -> QSize:
        return QSize(260, 140)

    def clear(self) -> None:
        self._epochs.clear()
        self._live = None
        self._live_epoch, self._live_losses = 0, []
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

    def follow(self, p: Any) -> None:
        """Draw a training run's progress record (see
        :func:`~napari_microfossil.workflows.train.iter_run_training`): the running
        loss of each ``"train"`` step, the base model's score, each ended epoch."""
        info = getattr(p, "info", None) or {}
        stage = getattr(p, "stage", None)
        if stage == "train" and "loss" in info:
            epoch = int(info.get("epoch", 0))
            if epoch != self._live_epoch:
                self._live_epoch, self._live_losses = epoch, []
            self._live_losses.append(float(info["loss"]))
            self.set_live(epoch, sum(self._live_losses) / len(self._live_losses))
        elif stage == "validate base model" and info:
            self.set_baseline(next(iter(info.values())))
        elif stage == "validate" and "loss" in info:
            score = next((float(v) for k, v in info.items() if k.startswith("iou_")), None)
            self.add_epoch(int(info["epoch"]), float(info["loss"]), score)

    def add_history(self, history: list[dict[str, Any]], score_key: str) -> None:
        """All epochs of a finished run (``TrainRun.history``)."""
        for h in history:
            self.add_epoch(int(h["epoch"]), float(h["loss"]), h.get(score_key))

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
