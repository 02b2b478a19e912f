"""Segment panel: run a U-Net over an Image layer in the background.

The fields become a checked ``workflows.segment.SegmentImageRequest`` (a mistake is
refused at once, with the command line's message), run by ``iter_segment_image`` in a
napari worker; Cancel stops it within one batch of tiles and adds no layer. The result
becomes ``"<image> fossils"`` (and ``"<image> confidence"``). The model list is the
:class:`~.context.PluginContext`'s; other panels run Segment through it.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..errors import InputError
from ..model import DEFAULT_MODEL_NAME
from . import layers as md
from . import segment_result as result
from ._common import JobRunner, LayerChooser, ask_question, scrolling, smoothing_box
from .context import PluginContext
from .segment_result import model_key as _model_key
from .segment_result import result_names as _result_names
from .segment_result import row as _row
from .segment_result import spin as _spin
from .segment_result import split_values as _split

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)

AXES_CHOICES = (
    ("z", "z (slices along z)"),
    ("y", "y"),
    ("x", "x"),
    ("zyx", "zyx (all three, fused)"),
)


TOOLTIPS = {
    "voxel_size": "Voxel size in µm: one value (isotropic) or three, z, y, x. Sets the image "
    "layer's scale; the result layers get the same. Fossil sizes are measured in it.",
    "browse": "Choose a model file (.safetensors)",
    "axes": "Slice direction; 'zyx' runs along all three axes and averages the class "
    "probabilities (about 3× the time, fewer slice artefacts)",
    "tile": "Tile edge in pixels, a multiple of 32; default: the model's",
    "overlap": "Fraction of a tile shared with its neighbour",
    "batch_size": "Tiles per network call; larger is faster on a GPU",
    "smooth": "3D Gaussian smoothing (sigma) of the scan before the network sees it: 0.5-1 "
    "helps on noisy scans. Default: what the model was trained with.",
    "suggest_button": "Try a few smoothings on 6 slices of the scan and choose the one the "
    "model is most sure of (usually none on a clean scan)",
    "confidence": "Also add the per-voxel confidence (percent) as an Image layer",
    "flips": "Test-time augmentation: predict each tile as it is and flipped three ways, "
    "and average (4× the time, a little more accurate)",
}


class SegmentWidget(QWidget):
    """Segment an Image layer with a U-Net model, in the background.

    ``confirm(title, text) -> bool`` is asked before replacing a result that holds
    corrections (a Yes/No message box unless replaced, as tests do). A scan whose
    labels exceed ``store_bytes`` (or shown lazily) is segmented into a zarr store
    beside it and shown from there (:mod:`.segment_result`).
    """

    store_bytes: int = result.STORE_BYTES

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        from napari.layers import Image

        super().__init__(parent)
        self.viewer = napari_viewer
        self.confirm: Callable[[str, str], bool] = ask_question(self)
        self._model_ok = False

        self.image = LayerChooser(napari_viewer, Image, parent=self)
        self._scaled: Any = None  # the image layer whose scale the voxel-size field shows
        self._voxel_text = ""  # what the field was last set to (an edit differs from it)
        self.voxel_size = QLineEdit(self)
        self.voxel_note = QLabel(self)
        self.voxel_note.setStyleSheet("color: #e0a040")
        self.model = QComboBox(self)
        self.model.addItem("default (bundled)", DEFAULT_MODEL_NAME)
        self.browse = QPushButton("Browse…", self)
        self.model_info = QLabel(self)
        self.model_info.setWordWrap(True)
        self.model_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.axes = QComboBox(self)
        for key, text in AXES_CHOICES:
            self.axes.addItem(text, key)
        self.tile = _spin(QSpinBox(self), 32, 4096, 32, 256)
        self.tile.setSuffix(" px")
        self.overlap = _spin(QDoubleSpinBox(self), 0.0, 0.85, 0.05, 0.25)
        self.batch_size = _spin(QSpinBox(self), 1, 512, 1, 4)
        self.smooth = smoothing_box(self, "")
        self.suggest_button = QPushButton("Suggest", self)
        self.device = QComboBox(self)
        self._fill_devices()
        self.confidence = QCheckBox("Confidence layer", self)
        self.flips = QCheckBox("Average over flips", self)
        for name, tip in TOOLTIPS.items():
            getattr(self, name).setToolTip(tip)
        self.run_button = QPushButton("Run", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)

        body = QWidget(self)
        form = QFormLayout()
        for label, field in (
            ("Image", self.image),
            ("Voxel size (µm)", _row(self.voxel_size, self.voxel_note)),
            ("Model", _row(self.model, self.browse)),
            ("", self.model_info),
            ("Axes", self.axes),
            ("Tile", self.tile),
            ("Overlap", self.overlap),
            ("Smoothing", _row(self.smooth, self.suggest_button)),
            ("Batch size", self.batch_size),
            ("Device", self.device),
            ("", self.confidence),
            ("", self.flips),
        ):
            form.addRow(label, field)
        inner = QVBoxLayout(body)
        inner.addLayout(form)
        inner.addLayout(_row(self.run_button, self.cancel_button, stretch_first=False))
        inner.addWidget(self.status)
        inner.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scrolling(body))

        # The voxel size is locked too: the result takes the image's scale at the start.
        self.kept = 0  # corrected slices the last result kept
        self.runner = JobRunner(
            "Segment",
            self.status,
            [self.run_button, self.browse, self.model, self.voxel_size, self.suggest_button],
            self.cancel_button,
            after=self._after_run,
        )
        self.image.currentIndexChanged.connect(self._on_image_changed)
        self.voxel_size.editingFinished.connect(self._on_voxel_size_edited)
        self._on_image_changed()
        self.model.currentIndexChanged.connect(self._on_model_changed)
        self.browse.clicked.connect(self._browse)
        self.run_button.clicked.connect(lambda: self.run())
        self.suggest_button.clicked.connect(lambda: self.suggest_smoothing())
        ctx = PluginContext.of(napari_viewer)
        for path in ctx.models:
            self._show_model(path, select=False)
        ctx.model_added.connect(self._show_model)
        ctx.provide_segmenter(self.segment_with, owner=self)
        self._on_model_changed()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        PluginContext.of(self.viewer).dock_as_tab(self)

    def _after_run(self) -> None:
        self.run_button.setEnabled(self._model_ok)
        self._show_voxel_size()

    def _on_image_changed(self, index: int | None = None) -> None:
        layer = self.image.layer()
        if layer is not self._scaled:
            if self._scaled is not None:
                self._scaled.events.scale.disconnect(self._show_voxel_size)
            if layer is not None:
                layer.events.scale.connect(self._show_voxel_size)
            self._scaled = layer
        self._show_voxel_size()

    def _show_voxel_size(self, event: Any = None) -> None:
        """Show the image layer's scale (z, y, x) and whether the file gave no voxel size."""
        from ..workflows.segment import voxel_size_text

        layer = self._scaled
        self.voxel_size.setEnabled(layer is not None and not self.runner.running)
        self._voxel_text = "" if layer is None else voxel_size_text(layer.scale[-3:])
        self.voxel_size.setText(self._voxel_text)
        default = md.meta(layer).get(md.SPACING_SOURCE) == "default"
        self.voxel_note.setText("(not in file: 1 µm assumed)" if default else "")

    def _on_voxel_size_edited(self) -> None:
        from ..workflows.segment import parse_voxel_size

        # PyQt5 emits editingFinished whenever the field loses focus, typed in or not:
        # act only on a changed text (else the size would become the user's unasked).
        text = self.voxel_size.text()
        if self._scaled is None or self.runner.running or _split(text) == _split(self._voxel_text):
            return
        try:
            self.set_voxel_size(parse_voxel_size(text))
        except InputError as exc:
            self._refuse("Voxel size", exc)
            self._show_voxel_size()

    def set_voxel_size(self, spacing: float | Any) -> None:
        """Set the voxel size (µm; one value or ``(z, y, x)``) of the chosen image layer,
        and of the results segmented from it; it is marked as the user's.

        Raises
        ------
        InputError
            If `spacing` is not one or three finite numbers > 0, or a segmentation is
            running (its result takes the scale the image had at its start).
        """
        from ..io import parse_spacing
        from ..workflows.segment import voxel_size_text

        layer = self._scaled
        if layer is None:
            return
        if self.runner.running:
            raise InputError("voxel size: Segment is running; set it when it has finished")
        zyx = parse_spacing(spacing)
        shape = tuple(layer.data.shape[-3:])
        for target in self.viewer.layers:
            same = tuple(target.data.shape[-3:]) == shape
            if target is layer or (same and target.name in _result_names(layer.name)):
                target.scale = (*tuple(target.scale)[:-3], *zyx)
        if layer.metadata.get(md.SPACING_SOURCE) == "default":
            layer.metadata[md.SPACING_SOURCE] = "user"
        self._show_voxel_size()
        self.status.setText(f"Voxel size: {voxel_size_text(zyx)} µm (z, y, x)")

    def _fill_devices(self) -> None:
        from ..device import available_devices

        try:
            found = available_devices()
        except Exception as exc:  # torch missing or broken: still let the user see why
            log.warning("could not list devices: %s", exc)
            found = ["cpu"]
        self.device.addItem(f"auto ({found[0]})", "auto")
        for name in found:
            self.device.addItem(name, name)
        self.device.setToolTip(f"This machine has: {', '.join(found)}")

    @property
    def worker(self) -> Any:
        """The last worker started (None before the first run)."""
        return self.runner.worker

    def model_path(self) -> str:
        """``"default"`` or the chosen model file."""
        return str(self.model.currentData())

    def add_model(self, path: str | Path, *, select: bool = True) -> None:
        """Register a model file with the viewer's panels (e.g. a fine-tuned model):
        every Segment panel lists it and, unless ``select`` is False, chooses it."""
        PluginContext.of(self.viewer).add_model(_model_key(path), select=select)

    def _show_model(self, path: str, select: bool = True) -> None:
        """Offer a registered model in the chooser; choose it if ``select``."""
        path = _model_key(path)
        index = self.model.findData(path)
        if index < 0:
            self.model.addItem(Path(path).name, path)
            index = self.model.count() - 1
            self.model.setItemData(index, path, Qt.ItemDataRole.ToolTipRole)
        if not select:
            return
        if index == self.model.currentIndex():
            self._on_model_changed()  # same item: read its file again (it may be new)
        else:
            self.model.setCurrentIndex(index)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a model file", "", "Models (*.safetensors);;All files (*)"
        )
        if path:
            self.add_model(path)

    def _on_model_changed(self, index: int | None = None) -> None:
        from ..model import describe, headline_score, read_spec

        try:
            spec = read_spec(self.model_path())
        except InputError as exc:
            self.model_info.setText(f"<span style='color:#e06c6c'>{html.escape(str(exc))}</span>")
            self.model_info.setToolTip("")
            self._model_ok = False
            self.run_button.setEnabled(False)
            return
        self._model_ok = True
        classes = ", ".join(spec.class_names)  # class 0 is a class like any other
        line = f"{spec.architecture} ({spec.encoder}) · classes: {classes}"
        metric = headline_score(spec)
        self.model_info.setText(
            html.escape(line)
            + (f"<br><span style='color:gray'>{html.escape(metric)}</span>" if metric else "")
        )
        self.model_info.setToolTip(describe(spec))
        self.tile.setValue(spec.tile_size)
        self.smooth.setValue(spec.normalisation.smooth)
        if not self.runner.running:
            self.run_button.setEnabled(True)

    def options(self) -> dict[str, Any]:
        """The segmentation options as the fields show them (recorded on the result)."""
        return {
            "axes": str(self.axes.currentData()),
            "tile": int(self.tile.value()),
            "overlap": round(float(self.overlap.value()), 4),
            "batch_size": int(self.batch_size.value()),
            "confidence": self.confidence.isChecked(),
            "flips": self.flips.isChecked(),
            "smooth": round(float(self.smooth.value()), 2),
        }

    def request(self, *, suggest: bool = False) -> Any:
        """The chosen image, model and options as a checked ``SegmentImageRequest``
        (only the device counts with `suggest`); raises :class:`InputError` as the
        command line would for the same option."""
        from ..workflows.segment import SegmentImageRequest, SegmentOptions

        layer = self.image.layer()
        if layer is None:
            raise InputError("image: choose an Image layer (open a scan first)")
        if getattr(layer, "rgb", False):
            raise InputError(
                f"image: expected a greyscale volume, got the RGB layer {layer.name!r}"
            )
        o = self.options()
        keys = () if suggest else ("axes", "tile", "overlap", "batch_size", "flips", "smooth")
        options = SegmentOptions(device=str(self.device.currentData()), **{k: o[k] for k in keys})
        return SegmentImageRequest(
            md.volume_of(layer),
            model=self.model_path(),
            options=options,
            confidence=bool(o["confidence"]) and not suggest,
        )

    def segment_with(self, model: str | Path, image: str | None = None) -> Any:
        """Choose `model` (and the image layer named `image`) and run; the segmenter
        this panel provides to :meth:`PluginContext.segment`. Returns the worker."""
        self._show_model(str(model), select=True)
        if image:
            self.image.set_layer(image)
        return self.run()

    def _refuse(self, what: str, exc: InputError) -> None:
        from napari.utils.notifications import show_error

        self.status.setText(f"{what}: {exc}")
        show_error(f"{what}: {exc}")

    def _checked(self, what: str, *, suggest: bool = False) -> Any:
        """The request, or None when refused (reported) or already running."""
        from napari.utils.notifications import show_info

        if self.runner.running:
            show_info("Segment: already running; cancel it first")
            return None
        try:
            return self.request(suggest=suggest)
        except InputError as exc:
            self._refuse(what, exc)
            return None

    def run(self) -> Any:
        """Check the options and start segmenting; returns the worker (None if not started)."""
        from ..workflows.segment import iter_segment_image

        request = self._checked("Segment")
        if request is None:
            return self.worker if self.runner.running else None
        layer = self.image.layer()
        names = _result_names(layer.name)
        common = {"scale": tuple(layer.scale), "translate": tuple(layer.translate)}
        if getattr(layer, "units", None) is not None:
            common["units"] = layer.units
        metadata = {
            md.SOURCE_PATH: md.source_path(layer),
            md.SOURCE_IMAGE: layer.name,  # marks the layer as a Segment result
            md.CONFIDENCE_LAYER: names[1] if request.confidence else None,
            md.MODEL: request.model,
            md.SEGMENT_OPTIONS: self.options(),
        }
        if result.wants_store(layer, limit=self.store_bytes):
            return self._run_into_store(request, layer, names, common, metadata)
        return self.runner.start(
            iter_segment_image(request),
            on_result=lambda seg: self._show(
                seg.labels, seg.confidence, seg.class_names, names, common, metadata
            ),
            done_message=lambda seg: self._done(names[0]),
        )

    def _run_into_store(
        self, request: Any, layer: Any, names: tuple[str, str], common: Any, metadata: Any
    ) -> Any:
        """Segment the scan file into zarr stores (the streaming use case) and show the
        labels from their store; corrected slices of a stored result are kept by it."""
        from ..workflows.segment import SegmentRequest, iter_segment_scan

        scan = md.source_path(layer)
        labels_path, conf_path = result.store_paths(scan, taken=result.stores_shown(self.viewer))
        old = self.viewer.layers[names[0]] if names[0] in self.viewer.layers else None
        keep, slices = None, None
        if old is not None and md.has_corrections(old) and (store := md.labels_store_of(old)):
            keep, slices = store, md.reviewed_slices_of(old)
        try:
            big = SegmentRequest(
                scan=Path(scan),
                output=labels_path,
                confidence=conf_path if request.confidence else None,
                model=request.model,
                options=request.options,
                voxel_size=tuple(float(s) for s in layer.scale[-3:]),
                overwrite=True,
                keep=None if keep is None else Path(keep),
                keep_slices=slices,
            )
        except InputError as exc:
            self._refuse("Segment", exc)
            return None
        kept = sum(len(v) for v in slices.values()) if slices else None

        def show(done: Any) -> None:
            labels, conf = result.open_stored(done)
            self._show(labels, conf, done.class_names, names, common, metadata, kept=kept)

        return self.runner.start(
            iter_segment_scan(big),
            on_result=show,
            done_message=lambda done: self._done(names[0]) + f" (kept in {done.labels_path})",
        )

    def _show(
        self,
        labels: Any,
        conf: Any,
        classes: Any,
        names: Any,
        common: Any,
        metadata: Any,
        kept: int | None = None,
    ) -> None:
        self.kept = result.show_result(
            self.viewer, labels, conf, classes, names, common, dict(metadata), kept=kept
        )

    def _done(self, target: str) -> str:
        kept = f"; your {self.kept} corrected slices kept as they were" if self.kept else ""
        return f"done → {target!r}{kept}"

    def suggest_smoothing(self) -> Any:
        """Start choosing a smoothing for the scan (see ``iter_suggest_smoothing``); the
        Smoothing field takes the result. Returns the worker (None if not started)."""
        from ..workflows.segment import iter_suggest_image

        request = self._checked("Suggest smoothing", suggest=True)
        if request is None:
            return self.worker if self.runner.running else None
        return self.runner.start(
            iter_suggest_image(request),
            on_result=lambda found: self.smooth.setValue(found.sigma),
            done_message=lambda found: found.describe(),
        )

    def cancel(self) -> None:
        """Stop the running segmentation within one batch; no layer is added."""
        self.runner.cancel()
