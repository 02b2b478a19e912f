"""Fine-tune panel: teach the model the corrections made in Review & correct.

The panel's values make a :class:`~napari_microfossil.workflows.train.TrainRequest`,
run by :func:`~napari_microfossil.workflows.train.iter_run_training` (the command line's
path too) in a :class:`~._common.JobRunner`; Review, Segment and the model list are
reached through :class:`~.context.PluginContext` only.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy import QtWidgets as qw
from qtpy.QtCore import Qt

from .. import model as models
from ..errors import InputError
from ..training import TrainConfig
from ..training.finetune import default_output_path, describe_slices
from ..workflows import train as workflow
from . import layers
from ._common import JobRunner, LayerChooser, ask_question, scrolling, smoothing_box
from .context import PLUGIN_NAME, PluginContext
from .curve import TrainingCurve
from .finetune_options import TIME_MODE_EPOCHS, TrainOptions, names_written_back
from .forms import button, form, row, spin
from .place import placed_scan
from .train_slices import default_labels, is_corrected, slices_to_train
from .train_slices import describe as describe_slices_to_train

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
DEFAULT_MINUTES = 3.0
__all__ = ["TIME_MODE_EPOCHS", "FinetuneWidget"]


class FinetuneWidget(qw.QWidget):
    """Fine-tune a model on the reviewed slices of a corrected Labels layer.

    ``confirm(title, text) -> bool`` is asked before replacing a model file (tests
    replace it); ``model_path_out`` is the model the last run wrote (also after a
    Cancel, if an epoch had ended) and ``last_result`` its ``TrainRun``.
    """

    def __init__(self, napari_viewer: napari.Viewer, parent: qw.QWidget | None = None) -> None:
        from napari.layers import Image, Labels

        super().__init__(parent)
        self.viewer = napari_viewer
        self.ctx = PluginContext.of(napari_viewer)
        self.confirm = ask_question(self)
        self.model_path_out: Path | None = None
        self.last_result: Any = None
        self._gen: Any = None
        self._job: dict[str, Any] = {}
        self._cancelled = self._labels_by_user = self._model_by_user = False
        self._auto_output = True
        self._output_default = ""
        self.inputs = inputs = qw.QWidget()
        self.image = LayerChooser(napari_viewer, Image, parent=inputs)
        self.labels = LayerChooser(napari_viewer, Labels, prefer=is_corrected, parent=inputs)
        self.model = qw.QComboBox(inputs)
        self.model.addItem("default (bundled)", DEFAULT_MODEL)
        self.browse_model = button(inputs, "Browse…", "Start from a model file (.safetensors)")
        self.slices = qw.QLineEdit(inputs)
        self.slices.setPlaceholderText("the reviewed slices")
        tip = "Train on these slices only, e.g. z:0,20,40 (a quarter held out for validation); "
        self.slices.setToolTip(tip + "empty: every slice reviewed, painted or placed")
        self.classes = qw.QLineEdit(inputs)
        tip = "Names of the new model's classes, id 0 first, comma-separated; rename any, "
        self.classes.setToolTip(tip + "add one for each label id the base model lacks")
        self.by_time = qw.QRadioButton("Time", inputs)  # exclusive: same parent
        self.by_epochs = qw.QRadioButton("Epochs", inputs)
        self.by_time.setChecked(True)
        tip = "Train for this long; the best model so far is kept"
        self.minutes = spin(inputs, 0.05, 24 * 60, DEFAULT_MINUTES, tip, decimals=2, suffix=" min")
        self.epochs = spin(inputs, 1, 10_000, 10, "Train for this many epochs")
        tip = "3D Gaussian smoothing (sigma) of the scan before training; the new model "
        tip += "remembers it and Segment applies it. 0.5-1 helps on noisy scans."
        self.smooth = smoothing_box(inputs, tip + " Default: the base model's.")
        self.output = qw.QLineEdit(inputs)
        self.output.setToolTip("The new model file; an existing file is replaced only if you agree")
        self.browse_output = button(inputs, "…", "Choose where to save the new model")
        self.show_advanced = qw.QCheckBox("Advanced", inputs)
        self.show_advanced.setToolTip("Training crops, batches, learning rate and device")
        self.options = opts = TrainOptions(inputs)
        adv = self.advanced = opts.advanced
        self.all_train = opts.all_train
        self.steps_per_epoch, self.batch_size = opts.steps_per_epoch, opts.batch_size
        self.crop_size, self.lr, self.find_lr = opts.crop_size, opts.lr, opts.find_lr
        self.augment, self.device = opts.augment, opts.device
        self.pixel_features, self.method = opts.pixel_features, opts.method
        body = qw.QWidget()
        self.run_button = qw.QPushButton("Fine-tune", body)
        self.cancel_button = button(body, "Cancel", "Stop; the best model so far is kept")
        self.curve = TrainingCurve(body)
        self.segment_button = button(body, "Segment again", "Segment the image with the model")
        self.segment_button.setEnabled(False)
        self.slices_label, self.model_info = qw.QLabel(inputs), qw.QLabel(inputs)
        self.status, self.result_label = qw.QLabel("", body), qw.QLabel("", body)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        for label in (self.slices_label, self.model_info, self.status, self.result_label):
            label.setWordWrap(True)
        form(
            inputs,
            ("Image", self.image),
            ("Labels", self.labels),
            ("Slices", self.slices),
            ("", self.slices_label),
            ("", self.all_train),
            ("Method", self.method),
            ("Base model", row(self.model, self.browse_model)),
            ("", self.model_info),
            ("Classes", self.classes),
            ("Budget", row(self.by_time, self.minutes, stretch=1)),
            ("", row(self.by_epochs, self.epochs, stretch=1)),
            ("Smoothing", self.smooth),
            ("Output", row(self.output, self.browse_output)),
            ("", self.show_advanced),
            ("", adv),
        )
        self.show_advanced.toggled.connect(adv.setVisible)
        self.method.currentIndexChanged.connect(self._on_method_changed)
        column = qw.QVBoxLayout(body)
        column.addWidget(inputs)
        column.addLayout(row(self.run_button, self.cancel_button))
        for widget in (self.status, self.curve, self.result_label, self.segment_button):
            column.addWidget(widget)
        column.addStretch(1)
        outer = qw.QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scrolling(body))

        busy = [self.run_button, inputs, self.segment_button]  # disabled while running
        self.runner = JobRunner("Fine-tune", self.status, busy, self.cancel_button)
        self.runner.after = self._after_run
        self.labels.currentIndexChanged.connect(self._on_labels_changed)
        self.labels.activated.connect(lambda _: setattr(self, "_labels_by_user", True))
        self.image.currentIndexChanged.connect(self._on_image_changed)
        self.model.currentIndexChanged.connect(self._on_model_changed)
        self.model.activated.connect(lambda _: setattr(self, "_model_by_user", True))
        self.browse_model.clicked.connect(self._browse_model)
        self.browse_output.clicked.connect(self._browse_output)
        self.output.textEdited.connect(
            lambda text: setattr(self, "_auto_output", text.strip() == self._output_default)
        )
        self.by_time.toggled.connect(self.minutes.setEnabled)
        self.slices.textChanged.connect(self._show_slices)
        self.all_train.toggled.connect(self._show_slices)
        self.by_epochs.toggled.connect(self.epochs.setEnabled)
        self.run_button.clicked.connect(lambda: self.run())
        self.find_lr.clicked.connect(lambda: self.find_learning_rate())
        self.segment_button.clicked.connect(lambda: self.segment_again())
        # Review tells the context when its layer or its record changes: follow it.
        self.ctx.review_changed.connect(self.refresh)
        self.ctx.review_layer_changed.connect(self.refresh)
        self._follow_default_labels()
        self._on_labels_changed()
        self._set_default_output()
        self.epochs.setEnabled(False)
        self._on_model_changed()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.ctx.dock_as_tab(self)
        self.refresh()

    def refresh(self, *_: Any) -> None:
        """Follow the reviewed layer and show the reviewed slices now recorded."""
        if self.runner.running:
            return
        self._follow_default_labels()
        self._show_slices()

    def _follow_default_labels(self) -> None:
        if self._labels_by_user:
            return
        current = self.labels.layer()
        best = default_labels(self.ctx.review_layer, self.labels.layers())
        if best is not None and best is not current:
            if (
                current is None
                or not layers.reviewed_slices_of(current)
                or layers.reviewed_slices_of(best)
            ):
                self.labels.set_layer(best.name)

    def _on_labels_changed(self, index: int | None = None) -> None:
        md = layers.meta(self.labels.layer())
        wanted = md.get(layers.SOURCE_IMAGE) or placed_scan(self.labels.layer())
        if wanted and self.image.findData(wanted) >= 0:
            self.image.set_layer(wanted)
        if md.get(layers.MODEL) and not self._model_by_user:
            self._select_model(str(md[layers.MODEL]), note="made these labels")
        self._fill_classes()
        self._show_slices()

    def _show_slices(self, *_: Any) -> None:
        text = describe_slices_to_train(
            self.labels.layer(), self.slices.text(), hold_out=not self.all_train.isChecked()
        )
        if self.slices_label.text() != text:
            self.slices_label.setText(text)

    def _on_image_changed(self, index: int | None = None) -> None:
        if self._auto_output and not self.runner.running:
            self._set_default_output()

    def _scan_path(self) -> str | None:
        image, labels = self.image.layer(), self.labels.layer()
        if labels is None:
            return layers.source_path(image) if image is not None else None
        return layers.scan_path_of(labels, self.viewer.layers, image=image)

    def _set_default_output(self) -> None:
        image = self.image.layer()
        name = image.name if image is not None else "model"
        self._output_default = str(default_output_path(self._scan_path(), name=name))
        self.output.setText(self._output_default)

    def _browse_output(self) -> None:
        path, _ = qw.QFileDialog.getSaveFileName(
            self,
            "Save the fine-tuned model as",
            self.output.text(),
            "Models (*.safetensors)",
            options=qw.QFileDialog.Option.DontConfirmOverwrite,  # asked at Fine-tune
        )
        if path:
            self.output.setText(path if path.endswith(".safetensors") else path + ".safetensors")
            self._auto_output = False

    def model_path(self) -> str:
        """``"default"`` or the chosen base model file."""
        return str(self.model.currentData())

    def _select_model(self, path: str, *, note: str = "") -> None:
        resolved = path if path == DEFAULT_MODEL else str(Path(path).expanduser().resolve())
        if resolved != DEFAULT_MODEL and not Path(resolved).is_file():
            return
        if self.model.findData(resolved) < 0:
            self.model.addItem(Path(resolved).name + (f" ({note})" if note else ""), resolved)
            self.model.setItemData(self.model.count() - 1, resolved, Qt.ItemDataRole.ToolTipRole)
        self.model.setCurrentIndex(self.model.findData(resolved))

    def _browse_model(self) -> None:
        path, _ = qw.QFileDialog.getOpenFileName(
            self, "Choose the base model", "", "Models (*.safetensors);;All files (*)"
        )
        if path:
            self._model_by_user = True
            self._select_model(path)

    def _on_model_changed(self, index: int | None = None) -> None:
        try:
            spec = models.read_spec(self.model_path())
        except InputError as exc:
            self.model_info.setText(f"<span style='color:#e06c6c'>{html.escape(str(exc))}</span>")
            return
        line = f"{spec.architecture} ({spec.encoder}) · classes: {', '.join(spec.class_names)}"
        metric = models.headline_score(spec)
        rounds = "".join(f"<br>{html.escape(r)}" for r in workflow.rounds_report(spec))
        self.model_info.setText(html.escape(line + (f" · {metric}" if metric else "")) + rounds)
        self.curve.score_name = f"val IoU {spec.class_names[1]}"
        self.curve.update()
        self.smooth.setValue(spec.normalisation.smooth)
        self._fill_classes(spec.class_names)

    def _fill_classes(self, model_names: Any = None) -> None:
        """Propose the labels layer's class names, else the base model's (the user's
        own typing stays)."""
        if self.classes.isModified():
            return
        names = layers.class_names_of(self.labels.layer())
        if not names and model_names is None:
            try:
                model_names = models.read_spec(self.model_path()).class_names
            except InputError:
                model_names = ()
        self.classes.setText(", ".join(names or model_names or ()))

    def _on_method_changed(self, *_: Any) -> None:
        """A pixel forest has no base model, budget or network recipe: grey them out."""
        network = self.method.currentData() == "network"
        for widget in (
            self.model,
            self.browse_model,
            self.by_time,
            self.minutes,
            self.by_epochs,
            self.epochs,
            self.find_lr,
            self.pixel_features,
        ):
            widget.setEnabled(network)
        self.run_button.setText("Fine-tune" if network else "Fit forest")
        for widget in (self.model_info, self.curve):  # no base, no epochs to draw
            widget.setVisible(network)

    def config(self) -> TrainConfig:
        """The recipe the panel's values give (InputError if one is invalid)."""
        minutes = float(self.minutes.value()) if self.by_time.isChecked() else None
        return self.options.config(minutes=minutes, epochs=int(self.epochs.value()))

    @property
    def worker(self) -> Any:
        """The last worker started (None before the first run)."""
        return self.runner.worker

    def request(self) -> workflow.TrainRequest:
        """The checked training request (InputError naming the first misfit)."""
        self._show_slices()
        image, labels = self.image.layer(), self.labels.layer()
        if image is None:
            raise InputError("image: choose the scan's Image layer (open a scan first)")
        if labels is None:
            raise InputError("labels: choose the Labels layer you corrected in Review & correct")
        slices = slices_to_train(labels, self.slices.text())
        text = self.output.text().strip()
        if not text:
            raise InputError("output: choose where to save the new model")
        names = layers.class_names_of(labels) or None
        # What the user typed; a proposal left as it was follows the layer's own names.
        typed = [n.strip() for n in self.classes.text().split(",") if n.strip()]
        typed = typed if self.classes.isModified() else []
        return workflow.TrainRequest(
            layers.volume_of(image),
            layers.volume_of(labels),
            Path(text).expanduser().resolve(),
            slices=slices,
            base=self.model_path(),
            classes=typed or names,
            label_class_names=names,
            config=self.config(),
            smooth=round(float(self.smooth.value()), 2),
            name=image.name,
            overwrite=True,  # asked in run()
            provenance={"image": self._scan_path() or image.name, "labels": labels.name},
            **self.options.request_options(),  # hold-out, pixel features, device, ...
        )

    def _checked_request(self, what: str) -> workflow.TrainRequest | None:
        """The request, or None after showing why not (or that a job runs)."""
        from napari.utils.notifications import show_error, show_info

        if self.runner.running:
            show_info("Fine-tune: already running; cancel it first")
            return None
        try:
            return self.request()
        except InputError as exc:
            self.status.setText(f"{what}: {exc}")
            show_error(f"{what}: {exc}")
            return None

    def run(self) -> Any:
        """Check the inputs and start fine-tuning; returns the worker (None if not started)."""
        request = self._checked_request("Fine-tune")
        if request is None:
            return self.worker if self.runner.running else None
        out = Path(request.output)
        if out.exists() and not self.confirm(
            "Replace model file?",
            f"{out} exists. Fine-tuning replaces it with the new model. Continue?",
        ):
            self.status.setText("Fine-tune: not started (choose another output file)")
            return None
        slices = describe_slices(request.slices or {})
        self._job = dict(image=request.name, output=out, slices=slices, labels=self.labels.layer())
        self._job["before"] = workflow.output_stamp(out)
        self._cancelled = False
        self.curve.clear()
        if request.classes:  # the score is that of class 1, by the new model's names
            self.curve.score_name = f"val IoU {request.classes[1]}"
        self.result_label.setText("")
        self.model_path_out = self.last_result = None
        self._gen = gen = workflow.iter_run_training(request)
        worker = self.runner.start(
            gen, on_result=self._on_result, done_message=f"done → {out.name}"
        )
        worker.yielded.connect(self.curve.follow)
        worker.aborted.connect(lambda: setattr(self, "_cancelled", True))
        return worker

    def find_learning_rate(self) -> Any:
        """Start the LR finder; the Learning rate takes its suggestion. Returns the worker."""
        request = self._checked_request("Find learning rate")
        if request is None:
            return self.worker if self.runner.running else None
        return self.runner.start(
            workflow.iter_find_lr(request),
            on_result=lambda found: self.lr.setValue(found.suggestion),
            done_message=workflow.lr_find_summary,
        )

    def cancel(self) -> None:
        """Stop at the next step; the best model so far stays in the output file."""
        self.runner.cancel()

    def _on_result(self, result: Any) -> None:
        self.last_result = result
        self.curve.add_history(result.history, result.score_key)
        self.model_path_out = Path(result.path)
        lines = workflow.run_report(result, slices=self._job.get("slices", "the slices"))
        lines.append(self._register(result.path, select=result.improved))
        lines.append(names_written_back(self._job.get("labels"), tuple(result.spec.class_names)))
        # the next round starts from it, on all slices reviewed by then (a forest is
        # fitted anew each round: it is never a base)
        if result.improved and result.stopped != "fitted":
            self._select_model(str(result.path), note="last round")
        rounds = workflow.rounds_report(result.spec)
        self.result_label.setText("\n".join([*filter(None, lines), *rounds]))

    def _register(self, path: Path, *, select: bool = True) -> str:
        """Register a model with the plugin (Segment lists it, and chooses it if `select`)."""
        self.ctx.add_model(str(Path(path).resolve()), select=select)
        if not self.ctx.can_segment:
            return "Open Segment (or press Segment again) to use it."
        return "Added to Segment's models." if select else "Added to Segment's list, not chosen."

    def _after_run(self) -> None:
        # A cancelled generator is suspended: closing it releases the network and GPU now.
        gen, self._gen = self._gen, None
        if gen is not None:
            gen.close()
        if self._cancelled:
            self._report_cancelled()
        self.segment_button.setEnabled(bool(self.model_path_out and self.model_path_out.is_file()))
        if self._auto_output:
            self._set_default_output()  # the next run writes a new file

    def _report_cancelled(self) -> None:
        report = workflow.cancel_report(self._job["output"], self._job["before"])
        self.status.setText(f"Fine-tune: {report.summary}")
        text = report.text[0].upper() + report.text[1:] + "."
        if report.written:
            self.model_path_out = report.path
            text += "\n" + self._register(report.path)
        self.result_label.setText(text)

    def segment_again(self) -> Any:
        """Run Segment with the new model on the image; returns its worker (or None)."""
        from napari.utils.notifications import show_error

        if not (path := self.model_path_out) or not path.is_file():
            show_error("Segment again: fine-tune a model first")
            return None
        self._labels_by_user = False  # the next round corrects the new result: follow it
        try:
            if not self.ctx.can_segment:
                self.viewer.window.add_plugin_dock_widget(PLUGIN_NAME, "Segment")
            return self.ctx.segment(str(path.resolve()), self._job.get("image"))
        except Exception as exc:  # no window, the plugin is not registered, no Segment
            show_error(f"Segment again: could not open the Segment panel ({exc})")
            return None
