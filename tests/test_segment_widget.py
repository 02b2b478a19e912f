"""Segment widget: runs a tiny model in a worker, cancels cleanly, asks before replacing."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = [
    pytest.mark.gui,
    # napari 0.9 with PyQt5 warns once, on creating its QApplication; not ours to fix.
    pytest.mark.filterwarnings("ignore:System theme detection requires a Qt6:UserWarning"),
]

SHAPE = (6, 64, 64)
SCALE = (2.0, 1.5, 1.5)
TIMEOUT_MS = 60_000


@pytest.fixture
def model_file(tmp_path, tiny_model):
    from napari_microfossil.model import save_model

    return save_model(tmp_path / "tiny.safetensors", tiny_model.network, tiny_model.spec)


@pytest.fixture
def setup(make_napari_viewer, model_file):
    from napari_microfossil._napari.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    scan = rng.integers(0, 1000, size=SHAPE).astype(np.uint16)
    viewer.add_image(
        scan, name="scan", scale=SCALE, translate=(5.0, 0.0, 0.0), metadata={"path": "/d/scan.tif"}
    )
    widget = SegmentWidget(viewer)
    widget.add_model(model_file)
    widget.device.setCurrentIndex(widget.device.findData("cpu"))
    return viewer, widget


def wait_idle(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=TIMEOUT_MS)


def test_model_chooser_shows_classes_and_tile(setup, model_file):
    _, widget = setup
    assert widget.model_path() == str(model_file.resolve())
    assert "fossil" in widget.model_info.text() and "pore" in widget.model_info.text()
    assert "architecture" in widget.model_info.toolTip()
    assert widget.tile.value() == 64
    widget.add_model(model_file)  # again: selected, not listed twice
    assert widget.model.count() == 2
    assert widget.device.itemData(0) == "auto"
    assert widget.device.findData("cpu") > 0
    assert widget.image.layer().name == "scan"


def test_run_adds_labels_and_confidence(setup, qtbot, model_file):
    viewer, widget = setup
    widget.confidence.setChecked(True)
    seen = []
    worker = widget.run()
    assert worker is widget.worker
    worker.yielded.connect(seen.append)
    wait_idle(qtbot, widget)

    layer = viewer.layers["scan fossils"]
    assert layer.data.shape == SHAPE and layer.data.dtype == np.uint8
    assert tuple(layer.scale) == SCALE and tuple(layer.translate) == (5.0, 0.0, 0.0)
    assert layer.metadata["class_names"] == ["background", "fossil", "pore"]
    assert layer.metadata["source_path"] == "/d/scan.tif"
    assert layer.metadata["model"] == str(model_file.resolve())
    assert layer.metadata["confidence_layer"] == "scan confidence"
    assert layer.colormap.map(1).tolist() != layer.colormap.map(2).tolist()
    conf = viewer.layers["scan confidence"]
    assert conf.data.shape == SHAPE and 0 <= conf.data.min() <= conf.data.max() <= 100
    assert tuple(conf.contrast_limits) == (0, 100)
    # The labels are drawn over the confidence.
    assert viewer.layers.index(layer) > viewer.layers.index(conf)
    assert "done" in widget.status.text()
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()
    assert widget.runner.pbar is None  # progress bar closed

    # Running again replaces the layers rather than adding new ones.
    n = len(viewer.layers)
    widget.run()
    wait_idle(qtbot, widget)
    assert len(viewer.layers) == n


def test_cancel_adds_no_layer(setup, qtbot):
    viewer, widget = setup
    scan = np.random.default_rng(1).integers(0, 1000, size=(8, 160, 160)).astype(np.uint16)
    viewer.add_image(scan, name="big")
    widget.image.set_layer("big")
    widget.tile.setValue(32)
    widget.batch_size.setValue(1)
    progress = []

    def on_progress(p):
        progress.append(p)
        widget.cancel()

    worker = widget.run()
    worker.yielded.connect(on_progress)
    aborted = []
    worker.aborted.connect(lambda: aborted.append(True))
    wait_idle(qtbot, widget)
    assert progress, "the worker yielded no progress"
    assert aborted == [True]
    assert "big fossils" not in viewer.layers
    assert "cancelled" in widget.status.text()
    assert widget.run_button.isEnabled()


def test_bad_option_is_reported_not_run(setup):
    viewer, widget = setup
    widget.tile.setValue(48)  # not a multiple of 32
    assert widget.run() is None
    assert "tile" in widget.status.text()
    assert "scan fossils" not in viewer.layers


def test_asks_before_replacing_corrections(setup, qtbot):
    viewer, widget = setup
    old = np.zeros(SHAPE, np.uint8)
    layer = viewer.add_labels(old, name="scan fossils")
    layer.metadata["microfossil_review"] = SimpleNamespace(edited={2}, reviewed=set())
    questions = []

    def no(title, text):
        questions.append(text)
        return False

    widget.confirm = no
    assert widget.run() is None
    assert len(questions) == 1 and "corrections" in questions[0]
    assert viewer.layers["scan fossils"].data is old

    widget.confirm = lambda title, text: True
    widget.run()
    wait_idle(qtbot, widget)
    layer = viewer.layers["scan fossils"]
    assert layer.data is not old
    assert "microfossil_review" not in layer.metadata
    assert layer.metadata["class_names"] == ["background", "fossil", "pore"]


def test_no_question_without_corrections(setup, qtbot):
    viewer, widget = setup
    layer = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="scan fossils")
    layer.metadata["microfossil_review"] = SimpleNamespace(edited=set(), reviewed=set())

    def fail(title, text):
        raise AssertionError("asked without corrections")

    widget.confirm = fail
    widget.run()
    wait_idle(qtbot, widget)
    assert viewer.layers["scan fossils"].metadata["model"]


def test_no_image_layer(make_napari_viewer):
    from napari_microfossil._napari.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    assert widget.run() is None
    viewer.add_image(np.zeros((2, 32, 32), np.uint8), name="later")
    assert widget.image.layer().name == "later"
    viewer.layers["later"].name = "renamed"
    assert widget.image.currentText() == "renamed"
