"""Segment widget: run a U-Net over an Image layer in the background.

The widget gathers options, checks them on the GUI thread (so a mistake is reported at
once, not after the model has loaded), then drains
:func:`~napari_microfossil.segmentation.iter_segment` in a napari ``thread_worker``. Each
:class:`~napari_microfossil._progress.Progress` moves napari's progress bar; Cancel asks
the worker to stop at the next yield (within one batch of tiles) and no layer is added.
On success a Labels layer ``"<image> fossils"`` (and optionally an Image layer
``"<image> confidence"``) is added or replaced on the GUI thread.
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
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
    has_corrections,
    replace_or_add,
    smoothing_box,
    source_path,
    volume_of,
)

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
AXES_CHOICES = (
    ("z", "z (slices along z)"),
    ("y", "y"),
    ("x", "x"),
    ("zyx", "zyx (all three, fused)"),
)


def _segment_job(
    volume: Any, model_path: str, *, device: str, **options: Any
) -> Generator[Progress, None, Any]:
    from ..model import load_model
    from ..segmentation import iter_segment

    yield Progress("load model", 0, 1)
    model = load_model(model_path, device=device)
    yield Progress("load model", 1, 1)
    return (yield from iter_segment(volume, model, device=device, **options))


def _suggest_job(volume: Any, model_path: str, *, device: str) -> Generator[Progress, None, Any]:
    from ..model import load_model
    from ..segmentation import iter_suggest_smoothing

    yield Progress("load model", 0, 1)
    model = load_model(model_path, device=device)
    yield Progress("load model", 1, 1)
    return (yield from iter_suggest_smoothing(volume, model, device=device))


class SegmentWidget(QWidget):
    """Segment an Image layer with a U-Net model, in the background.

    Attributes
    ----------
    worker : napari worker or None
        The last job started by :meth:`run`.
    confirm : callable
        ``confirm(title, text) -> bool``, asked before replacing a result that holds
        corrections; a Yes/No message box unless replaced (tests do).
    """

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
        self.voxel_size.setToolTip(
            "Voxel size in µm: one value (isotropic) or three, z, y, x. Sets the image "
            "layer's scale; the result layers get the same. Fossil sizes are measured in it."
        )
        self.voxel_note = QLabel(self)
        self.voxel_note.setStyleSheet("color: #e0a040")

        self.model = QComboBox(self)
        self.model.addItem("default (bundled)", DEFAULT_MODEL)
        self.browse = QPushButton("Browse…", self)
        self.browse.setToolTip("Choose a model file (.safetensors)")
        self.model_info = QLabel(self)
        self.model_info.setWordWrap(True)
        self.model_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.axes = QComboBox(self)
        for key, text in AXES_CHOICES:
            self.axes.addItem(text, key)
        self.axes.setToolTip(
            "Slice direction; 'zyx' runs along all three axes and averages the class "
            "probabilities (about 3× the time, fewer slice artefacts)"
        )
        self.tile = QSpinBox(self)
        self.tile.setRange(32, 4096)
        self.tile.setSingleStep(32)
        self.tile.setValue(256)
        self.tile.setSuffix(" px")
        self.tile.setToolTip("Tile edge in pixels, a multiple of 32; default: the model's")
        self.overlap = QDoubleSpinBox(self)
        self.overlap.setRange(0.0, 0.85)
        self.overlap.setSingleStep(0.05)
        self.overlap.setValue(0.25)
        self.overlap.setToolTip("Fraction of a tile shared with its neighbour")
        self.batch_size = QSpinBox(self)
        self.batch_size.setRange(1, 512)
        self.batch_size.setValue(4)
        self.batch_size.setToolTip("Tiles per network call; larger is faster on a GPU")
        self.smooth = smoothing_box(
            self,
            "3D Gaussian smoothing (sigma) of the scan before the network sees it: 0.5-1 "
            "helps on noisy scans. Default: what the model was trained with.",
        )
        self.suggest_button = QPushButton("Suggest", self)
        self.suggest_button.setToolTip(
            "Try a few smoothings on 6 slices of the scan and choose the one the model is "
            "most sure of (usually none on a clean scan)"
        )
        self.device = QComboBox(self)
        self._fill_devices()
        self.confidence = QCheckBox("Confidence layer", self)
        self.confidence.setToolTip("Also add the per-voxel confidence (percent) as an Image layer")
        self.flips = QCheckBox("Average over flips", self)
        self.flips.setToolTip(
            "Test-time augmentation: predict each tile as it is and flipped three ways, "
            "and average (4× the time, a little more accurate)"
        )

        self.run_button = QPushButton("Run", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Image", self.image)
        voxel_row = QHBoxLayout()
        voxel_row.addWidget(self.voxel_size, 1)
        voxel_row.addWidget(self.voxel_note)
        form.addRow("Voxel size (µm)", voxel_row)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(self.browse)
        form.addRow("Model", model_row)
        form.addRow("", self.model_info)
        form.addRow("Axes", self.axes)
        form.addRow("Tile", self.tile)
        form.addRow("Overlap", self.overlap)
        smooth_row = QHBoxLayout()
        smooth_row.addWidget(self.smooth, 1)
        smooth_row.addWidget(self.suggest_button)
        form.addRow("Smoothing", smooth_row)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Device", self.device)
        form.addRow("", self.confidence)
        form.addRow("", self.flips)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addStretch(1)

        # The voxel size is locked too: the result takes the image's scale at the start.
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
        self._on_model_changed()

    def _after_run(self) -> None:
        self.run_button.setEnabled(self._model_ok)
        self._show_voxel_size()

    # -- voxel size ----------------------------------------------------------------

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
        layer = self._scaled
        self.voxel_size.setEnabled(layer is not None and not self.runner.running)
        if layer is None:
            self._voxel_text = ""
            self.voxel_size.setText("")
            self.voxel_note.setText("")
            return
        zyx = [float(v) for v in layer.scale[-3:]]
        same = all(math.isclose(v, zyx[0], rel_tol=1e-9) for v in zyx)
        self._voxel_text = _format_spacing(zyx[:1] if same else zyx)
        self.voxel_size.setText(self._voxel_text)
        default = (layer.metadata or {}).get("spacing_source") == "default"
        self.voxel_note.setText("(not in file: 1 µm assumed)" if default else "")

    def _on_voxel_size_edited(self) -> None:
        from napari.utils.notifications import show_error

        layer = self._scaled
        if layer is None or self.runner.running:
            return
        # PyQt5 emits editingFinished whenever the field loses focus, typed in or not:
        # act only on a changed text (else the size would become the user's unasked).
        text = _split(self.voxel_size.text())
        if text == _split(self._voxel_text):
            return
        try:
            values = [float(v) for v in text]
        except ValueError:
            values = []
        try:
            self.set_voxel_size(values[0] if len(values) == 1 else values)
        except (InputError, IndexError) as exc:
            message = str(exc) if isinstance(exc, InputError) else "expected a number"
            self.status.setText(f"Voxel size: {message}")
            show_error(f"Voxel size: {message}")
            self._show_voxel_size()

    def set_voxel_size(self, spacing: float | Any) -> None:
        """Set the voxel size (µm; one value or ``(z, y, x)``) of the chosen image layer.

        It becomes the layer's scale and that of the results segmented from it
        (``"<image> fossils"`` and ``"<image> confidence"``); it is marked as the user's.

        Raises
        ------
        InputError
            If `spacing` is not one or three finite numbers > 0, or a segmentation is
            running (its result takes the scale the image had at its start).
        """
        from ..io import parse_spacing

        layer = self._scaled
        if layer is None:
            return
        if self.runner.running:
            raise InputError("voxel size: Segment is running; set it when it has finished")
        zyx = parse_spacing(spacing)
        targets = [layer] + [
            self.viewer.layers[name]
            for name in (f"{layer.name} fossils", f"{layer.name} confidence")
            if name in self.viewer.layers
            and tuple(self.viewer.layers[name].data.shape[-3:]) == tuple(layer.data.shape[-3:])
        ]
        for target in targets:
            target.scale = (*tuple(target.scale)[:-3], *zyx)
        if layer.metadata.get("spacing_source") == "default":
            layer.metadata["spacing_source"] = "user"
        self._show_voxel_size()
        self.status.setText(f"Voxel size: {_format_spacing(list(zyx))} µm (z, y, x)")

    # -- model and device ----------------------------------------------------------

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
        """Offer a model file in the chooser (e.g. a fine-tuned model) and select it,
        unless ``select`` is False."""
        path = str(Path(path).expanduser().resolve())
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
        classes = ", ".join(spec.class_names[1:])
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

    # -- running -------------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        """The segmentation options as :func:`iter_segment` takes them."""
        return {
            "axes": str(self.axes.currentData()),
            "tile": int(self.tile.value()),
            "overlap": round(float(self.overlap.value()), 4),
            "batch_size": int(self.batch_size.value()),
            "confidence": self.confidence.isChecked(),
            "flips": self.flips.isChecked(),
            "smooth": round(float(self.smooth.value()), 2),
        }

    def run(self) -> Any:
        """Check the options and start segmenting; returns the worker (None if not started)."""
        from napari.utils.notifications import show_error, show_info

        from ..device import resolve_device
        from ..model import read_spec
        from ..segmentation import iter_segment

        if self.runner.running:
            show_info("Segment: already running; cancel it first")
            return self.worker
        layer = self.image.layer()
        if layer is None:
            show_error("Segment: choose an Image layer (open a scan first)")
            return None
        volume = volume_of(layer)
        model_path = self.model_path()
        options = self.options()
        device = str(self.device.currentData())
        try:
            if getattr(layer, "rgb", False):
                raise InputError(
                    f"image: expected a greyscale volume, got the RGB layer {layer.name!r}"
                )
            spec = read_spec(model_path)
            # iter_segment checks everything when called and reads nothing until
            # iterated: check the options here with a stand-in predictor.
            iter_segment(volume, _never, spec=spec, **options).close()
            resolve_device(device)
        except InputError as exc:
            self.status.setText(f"Segment: {exc}")
            show_error(f"Segment: {exc}")
            return None

        target = f"{layer.name} fossils"
        existing = self.viewer.layers[target] if target in self.viewer.layers else None
        if existing is not None and has_corrections(existing):
            question = (
                f"The layer {target!r} holds corrections. Segmenting again replaces it "
                "(corrections autosaved by the Review widget stay on disk). Continue?"
            )
            if not self.confirm("Replace corrected labels?", question):
                self.status.setText("Segment: not started")
                return None

        job = {
            "image": layer.name,
            "target": target,
            "scale": tuple(layer.scale),
            "translate": tuple(layer.translate),
            "units": getattr(layer, "units", None),
            "source_path": source_path(layer),
            "model": model_path,
            "class_names": tuple(spec.class_names),
            "options": options,
        }
        gen = _segment_job(volume, model_path, device=device, **options)
        return self.runner.start(
            gen,
            on_result=lambda seg: self._add_result(seg, job),
            done_message=f"done → {target!r}",
        )

    def suggest_smoothing(self) -> Any:
        """Start choosing a smoothing for the scan (see ``iter_suggest_smoothing``); the
        Smoothing field takes the result. Returns the worker (None if not started)."""
        from napari.utils.notifications import show_error, show_info

        from ..device import resolve_device

        if self.runner.running:
            show_info("Segment: already running; cancel it first")
            return self.worker
        layer = self.image.layer()
        device = str(self.device.currentData())
        try:
            if layer is None:
                raise InputError("image: choose an Image layer (open a scan first)")
            volume = volume_of(layer)
            if getattr(layer, "rgb", False) or len(volume.shape) != 3:
                raise InputError(
                    f"image: expected a greyscale (Z, Y, X) volume, got {layer.name!r} "
                    f"of shape {tuple(volume.shape)}"
                )
            if not self._model_ok:
                raise InputError("model: choose a model that can be read first")
            resolve_device(device)
        except InputError as exc:
            self.status.setText(f"Suggest smoothing: {exc}")
            show_error(f"Suggest smoothing: {exc}")
            return None
        gen = _suggest_job(volume, self.model_path(), device=device)
        return self.runner.start(
            gen, on_result=self._on_suggestion, done_message=lambda found: found.describe()
        )

    def _on_suggestion(self, found: Any) -> None:
        self.smooth.setValue(found.sigma)

    def cancel(self) -> None:
        """Stop the running segmentation within one batch; no layer is added."""
        self.runner.cancel()

    def _add_result(self, seg: Any, job: dict[str, Any]) -> None:
        from napari.layers import Labels

        from .layers import label_colormap

        common: dict[str, Any] = {"scale": job["scale"], "translate": job["translate"]}
        if job["units"] is not None:
            common["units"] = job["units"]
        conf_name = f"{job['image']} confidence"
        metadata = {
            "class_names": list(seg.class_names),
            "source_path": job["source_path"],
            SOURCE_IMAGE_KEY: job["image"],  # marks the layer as a Segment result
            "confidence_layer": conf_name if seg.confidence is not None else None,
            "model": job["model"],
            "segment_options": dict(job["options"]),
        }
        # The review state described the labels this run replaces: drop it before the
        # data changes. (Not after: for a new layer, the Review widget may already have
        # restored an autosave the user accepted, on the layer's insertion.)
        old = self.viewer.layers[job["target"]] if job["target"] in self.viewer.layers else None
        if isinstance(old, Labels):
            old.metadata.pop(REVIEW_KEY, None)
        conf = None
        if seg.confidence is not None:
            # First, so that the labels' "confidence_layer" names a layer when they appear.
            conf = replace_or_add(
                self.viewer,
                conf_name,
                "image",
                seg.confidence,
                colormap="viridis",
                contrast_limits=(0, 100),
                opacity=0.6,
                metadata={"unit": "percent", "labels_layer": job["target"]},
                **common,
            )
        labels = replace_or_add(
            self.viewer,
            job["target"],
            "labels",
            seg.labels,
            colormap=label_colormap(tuple(seg.class_names)),
            metadata=metadata,
            **common,
        )
        if conf is not None:
            layers = self.viewer.layers
            ci, li = layers.index(conf), layers.index(labels)
            if ci > li:  # keep the labels drawn over the confidence
                layers.move(ci, li)
        self.viewer.layers.selection.active = labels


def _format_spacing(values: list[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _split(text: str) -> list[str]:
    """The values typed in the voxel-size field (commas or spaces between them)."""
    return text.replace(",", " ").split()


def _never(batch: np.ndarray) -> np.ndarray:  # pragma: no cover - never called
    raise RuntimeError("stand-in predictor used only to check options")
