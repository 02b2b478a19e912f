"""Segment widget: run a U-Net over an Image layer in the background.

The widget gathers options, checks them on the GUI thread (so a mistake is reported at
once, not after the model has loaded), then drains
:func:`~napari_microfossil.inference.iter_segment` in a napari ``thread_worker``. Each
:class:`~napari_microfossil._progress.Progress` moves napari's progress bar; Cancel asks
the worker to stop at the next yield (within one batch of tiles) and no layer is added.
On success a Labels layer ``"<image> fossils"`` (and optionally an Image layer
``"<image> confidence"``) is added or replaced on the GUI thread.
"""

from __future__ import annotations

import html
import logging
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
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .._progress import Progress
from ..errors import InputError
from ._common import (
    REVIEW_KEY,
    JobRunner,
    LayerChooser,
    ask_question,
    has_corrections,
    replace_or_add,
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
    from ..inference import iter_segment
    from ..model import load_model

    yield Progress("load model", 0, 1)
    model = load_model(model_path, device=device)
    yield Progress("load model", 1, 1)
    return (yield from iter_segment(volume, model, device=device, **options))


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
        self.device = QComboBox(self)
        self._fill_devices()
        self.confidence = QCheckBox("Confidence layer", self)
        self.confidence.setToolTip("Also add the per-voxel confidence (percent) as an Image layer")

        self.run_button = QPushButton("Run", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Image", self.image)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(self.browse)
        form.addRow("Model", model_row)
        form.addRow("", self.model_info)
        form.addRow("Axes", self.axes)
        form.addRow("Tile", self.tile)
        form.addRow("Overlap", self.overlap)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Device", self.device)
        form.addRow("", self.confidence)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.runner = JobRunner(
            "Segment",
            self.status,
            [self.run_button, self.browse, self.model],
            self.cancel_button,
            after=lambda: self.run_button.setEnabled(self._model_ok),
        )
        self.model.currentIndexChanged.connect(self._on_model_changed)
        self.browse.clicked.connect(self._browse)
        self.run_button.clicked.connect(lambda: self.run())
        self._on_model_changed()

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

    def add_model(self, path: str | Path) -> None:
        """Offer a model file in the chooser and select it (e.g. a fine-tuned model)."""
        path = str(Path(path).expanduser().resolve())
        index = self.model.findData(path)
        if index < 0:
            self.model.addItem(Path(path).name, path)
            index = self.model.count() - 1
            self.model.setItemData(index, path, Qt.ItemDataRole.ToolTipRole)
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
        from ..model import describe, read_spec

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
        prov = spec.provenance
        bits = [
            f"{key} {prov[key]}"
            for key in ("base", "data", "trained_at", "created")
            if isinstance(prov.get(key), str) and prov.get(key)
        ]
        bits += [
            f"{k} {v:.3f}"
            for k, v in spec.metrics.items()
            if "iou" in k.lower() and isinstance(v, float)
        ][:2]
        extra = " · ".join(bits)
        self.model_info.setText(
            html.escape(f"classes: {classes} · {spec.encoder} · tile {spec.tile_size}")
            + (f"<br><span style='color:gray'>{html.escape(extra)}</span>" if extra else "")
        )
        self.model_info.setToolTip(describe(spec))
        self.tile.setValue(spec.tile_size)
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
        }

    def run(self) -> Any:
        """Check the options and start segmenting; returns the worker (None if not started)."""
        from napari.utils.notifications import show_error, show_info

        from ..device import resolve_device
        from ..inference import iter_segment
        from ..model import read_spec

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

    def cancel(self) -> None:
        """Stop the running segmentation within one batch; no layer is added."""
        self.runner.cancel()

    def _add_result(self, seg: Any, job: dict[str, Any]) -> None:
        from .reader import _label_colormap

        common: dict[str, Any] = {"scale": job["scale"], "translate": job["translate"]}
        if job["units"] is not None:
            common["units"] = job["units"]
        conf_name = f"{job['image']} confidence"
        metadata = {
            "class_names": list(seg.class_names),
            "source_path": job["source_path"],
            "source_image": job["image"],
            "confidence_layer": conf_name if seg.confidence is not None else None,
            "model": job["model"],
            "segment_options": dict(job["options"]),
        }
        labels = replace_or_add(
            self.viewer,
            job["target"],
            "labels",
            seg.labels,
            colormap=_label_colormap(tuple(seg.class_names)),
            metadata=metadata,
            **common,
        )
        # The review state described the labels this run replaced.
        labels.metadata.pop(REVIEW_KEY, None)
        if seg.confidence is not None:
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
            layers = self.viewer.layers
            ci, li = layers.index(conf), layers.index(labels)
            if ci > li:  # keep the labels drawn over the confidence
                layers.move(ci, li)
        self.viewer.layers.selection.active = labels


def _never(batch: np.ndarray) -> np.ndarray:  # pragma: no cover - never called
    raise RuntimeError("stand-in predictor used only to check options")
