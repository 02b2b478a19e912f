"""Segment widget: runs a tiny model in a worker, cancels cleanly, asks before replacing."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = [
    pytest.mark.gui,
]

SHAPE = (6, 64, 64)
SCALE = (2.0, 1.5, 1.5)
TIMEOUT_MS = 60_000


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


def test_flip_averaging_reaches_the_engine(setup, qtbot, model_file):
    from napari_microfossil.model import load_model
    from napari_microfossil.segmentation import segment

    viewer, widget = setup
    widget.flips.setChecked(True)
    assert widget.options()["flips"] is True
    widget.run()
    wait_idle(qtbot, widget)
    got = viewer.layers["scan fossils"].data
    scan = viewer.layers["scan"].data
    model = load_model(model_file, device="cpu")
    kw = dict(tile=widget.tile.value(), overlap=widget.overlap.value(), device="cpu")
    flipped = segment(scan, model, flips=True, **kw).labels
    plain = segment(scan, model, flips=False, **kw).labels
    np.testing.assert_array_equal(got, flipped)
    assert not np.array_equal(flipped, plain)  # a random-init net is not flip-symmetric


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


def test_segment_again_keeps_corrected_slices_verbatim(setup, qtbot):
    """No question: the reviewed slices of the layer it replaces are copied into the
    new result bit for bit, the rest is the model's, and the record carries over."""
    from napari_microfossil.review import ReviewState

    viewer, widget = setup
    old = np.zeros(SHAPE, np.uint8)
    old[2] = 7  # painted: a value the model never gives
    old[4, 3:9, 3:9] = 2
    layer = viewer.add_labels(old.copy(), name="scan fossils")
    state = ReviewState(n_slices=SHAPE[0], edited={2}, reviewed={2, 4})
    layer.metadata["microfossil_review"] = state
    widget.confirm = lambda title, text: pytest.fail(f"unexpected question: {text}")
    widget.run()
    wait_idle(qtbot, widget)
    layer = viewer.layers["scan fossils"]
    np.testing.assert_array_equal(layer.data[2], old[2])
    np.testing.assert_array_equal(layer.data[4], old[4])
    others = [z for z in range(SHAPE[0]) if z not in (2, 4)]
    assert not (layer.data[others] == 7).any()  # the model's own result elsewhere
    assert layer.metadata["microfossil_review"] is state
    assert "2 corrected slices kept" in widget.status.text()
    assert layer.metadata["class_names"] == ["background", "fossil", "pore"]


def test_a_record_of_another_shape_is_dropped(setup, qtbot):
    viewer, widget = setup
    layer = viewer.add_labels(np.zeros((3, 4, 5), np.uint8), name="scan fossils")
    layer.metadata["microfossil_review"] = SimpleNamespace(edited={2}, reviewed={2})
    widget.run()
    wait_idle(qtbot, widget)
    layer = viewer.layers["scan fossils"]
    assert layer.data.shape == SHAPE
    assert "microfossil_review" not in layer.metadata
    assert "kept" not in widget.status.text()


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


def test_restore_accepted_on_segment_survives(setup, qtbot, tmp_path):
    """Segment → Review offers the autosave → Yes: labels and reviewed slices stay."""
    from napari_microfossil._napari.layers import REVIEW as STATE_KEY
    from napari_microfossil._napari.review_widget import ReviewWidget
    from napari_microfossil.review import ReviewState, Sidecar

    viewer, widget = setup
    scan = viewer.layers["scan"]
    scan.metadata["path"] = str(tmp_path / "scan.tif")
    sidecar = Sidecar(tmp_path / "scan.tif", cache_dir=tmp_path / "cache")
    saved = np.zeros(SHAPE, np.uint8)
    saved[2, 5:9, 5:9] = 2
    sidecar.save(saved, ReviewState(n_slices=6, edited={2}, reviewed={4}))
    asked = []
    review = ReviewWidget(
        viewer,
        confirm=lambda title, q: asked.append(q) or True,
        autosave_delay_ms=60_000,
        cache_dir=tmp_path / "cache",
    )
    widget.confidence.setChecked(True)
    widget.run()
    wait_idle(qtbot, widget)

    layer = viewer.layers["scan fossils"]
    assert len(asked) == 1 and review.layer is layer
    np.testing.assert_array_equal(layer.data, saved)  # restored, not the new result
    assert layer.metadata[STATE_KEY] is review.state
    assert review.state.reviewed == {2, 4} and review.state.edited == {2}
    assert review.progress_label.text().startswith("2 of 6 slices reviewed")
    assert not list((tmp_path / "scan.tif.microfossil").glob("declined-*"))
    # Segment added the confidence before the labels: Review picked it up.
    assert review.conf_combo.currentText() == "scan confidence"
    review.flush()
    _, state, _ = Sidecar(tmp_path / "scan.tif", cache_dir=tmp_path / "cache").load()
    assert state.reviewed == {2, 4}


def test_voxel_size_sets_the_scale(make_napari_viewer):
    from napari_microfossil._napari.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    image = viewer.add_image(
        np.zeros(SHAPE, np.uint16), name="scan", metadata={"spacing_source": "default"}
    )
    viewer.add_labels(np.zeros(SHAPE, np.uint8), name="scan fossils")
    widget = SegmentWidget(viewer)
    assert widget.voxel_size.text() == "1"
    assert "not in file" in widget.voxel_note.text()

    widget.voxel_size.setText("2, 0.5, 0.5")
    widget.voxel_size.editingFinished.emit()
    assert tuple(image.scale) == (2.0, 0.5, 0.5)
    assert tuple(viewer.layers["scan fossils"].scale) == (2.0, 0.5, 0.5)
    assert widget.voxel_note.text() == ""  # the user's now

    widget.voxel_size.setText("0.8")  # one value: isotropic
    widget.voxel_size.editingFinished.emit()
    assert tuple(image.scale) == (0.8, 0.8, 0.8)

    widget.voxel_size.setText("-1")
    widget.voxel_size.editingFinished.emit()
    assert tuple(image.scale) == (0.8, 0.8, 0.8)
    assert "spacing" in widget.status.text() and widget.voxel_size.text() == "0.8"

    image.scale = (3.0, 1.0, 1.0)  # changed elsewhere: the field follows
    assert widget.voxel_size.text() == "3, 1, 1"


def test_voxel_size_left_unchanged_does_nothing(make_napari_viewer):
    """PyQt5 emits editingFinished when the box loses focus, typed in or not."""
    from napari_microfossil._napari.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    image = viewer.add_image(
        np.zeros(SHAPE, np.uint16), name="scan", metadata={"spacing_source": "default"}
    )
    widget = SegmentWidget(viewer)
    widget.voxel_size.editingFinished.emit()  # focus left the box; nothing was typed
    assert image.metadata["spacing_source"] == "default"
    assert "not in file" in widget.voxel_note.text()
    assert widget.status.text() == ""

    widget.voxel_size.setText(" 1 ")  # the same value, spaced differently: no change
    widget.voxel_size.editingFinished.emit()
    assert image.metadata["spacing_source"] == "default"

    widget.voxel_size.setText("1.0")  # typed: the size is the user's now
    widget.voxel_size.editingFinished.emit()
    assert tuple(image.scale) == (1.0, 1.0, 1.0)
    assert image.metadata["spacing_source"] == "user"
    assert widget.voxel_note.text() == ""


def test_voxel_size_is_locked_while_segmenting(setup, qtbot):
    from napari_microfossil.errors import InputError

    viewer, widget = setup
    viewer.add_image(np.zeros(SHAPE, np.uint16), name="other")
    widget.image.set_layer("scan")
    assert widget.voxel_size.isEnabled()
    widget.run()
    assert widget.runner.running
    assert not widget.voxel_size.isEnabled()
    widget.image.set_layer("other")  # choosing another image does not unlock it
    assert not widget.voxel_size.isEnabled()
    widget.image.set_layer("scan")
    with pytest.raises(InputError, match="running"):
        widget.set_voxel_size(3.0)
    assert tuple(viewer.layers["scan"].scale) == SCALE
    wait_idle(qtbot, widget)
    assert widget.voxel_size.isEnabled()
    assert tuple(viewer.layers["scan fossils"].scale) == SCALE
    widget.set_voxel_size(3.0)  # after the run: the result follows
    assert tuple(viewer.layers["scan fossils"].scale) == (3.0, 3.0, 3.0)


def test_review_follows_the_segment_result(setup, qtbot, tmp_path):
    """The sample's ground truth is chosen first; Segment's result takes over."""
    from napari_microfossil._napari.layers import REVIEW as STATE_KEY
    from napari_microfossil._napari.review_widget import ReviewWidget
    from napari_microfossil.review import Sidecar

    viewer, widget = setup
    viewer.layers["scan"].metadata["path"] = str(tmp_path / "scan.tif")
    truth = viewer.add_labels(
        np.zeros(SHAPE, np.uint8),
        name="ground truth",
        visible=False,
        metadata={"class_names": ["background", "fossil", "pore"]},
    )
    review = ReviewWidget(
        viewer,
        confirm=lambda title, q: pytest.fail(f"unexpected question: {q}"),
        autosave_delay_ms=60_000,
        cache_dir=tmp_path / "cache",
    )
    assert review.layer is truth
    widget.run()
    wait_idle(qtbot, widget)
    layer = viewer.layers["scan fossils"]
    assert review.layer is layer
    layer.paint((2, 10, 10), 2)
    assert layer.metadata[STATE_KEY] is review.state and review.state.edited == {2}
    review.flush()
    labels, state, _ = Sidecar(tmp_path / "scan.tif", cache_dir=tmp_path / "cache").load()
    np.testing.assert_array_equal(labels, layer.data)
    assert state.edited == {2}


def test_model_info_is_short(make_napari_viewer, tmp_path, tiny_model):
    from napari_microfossil._napari.segment_widget import SegmentWidget
    from napari_microfossil.model import save_model

    spec = tiny_model.spec.with_updates(
        metrics={"iou_fossil": 0.8766, "iou_pore": 0.5, "loss": 0.1},
        provenance={"base": "default", "data": "/a/long/path/to/scans", "trained_at": "x"},
    )
    path = save_model(tmp_path / "m.safetensors", tiny_model.network, spec)
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    widget.add_model(path)
    text = widget.model_info.text()
    assert "Unet (resnet18)" in text and "fossil, pore" in text and "IoU fossil 0.877" in text
    assert "/a/long/path" not in text and text.count("<br>") <= 1
    assert "/a/long/path" in widget.model_info.toolTip()  # the full description


def test_suggest_smoothing_sets_the_field(setup, qtbot, model_file):
    from napari_microfossil.model import load_model
    from napari_microfossil.segmentation import suggest_smoothing

    viewer, widget = setup
    widget.smooth.setValue(3.0)
    worker = widget.suggest_smoothing()
    assert worker is widget.worker
    assert not widget.suggest_button.isEnabled() and not widget.run_button.isEnabled()
    wait_idle(qtbot, widget)
    expected = suggest_smoothing(
        viewer.layers["scan"].data, load_model(model_file, device="cpu"), device="cpu"
    )
    assert widget.smooth.value() == pytest.approx(expected.sigma)
    assert widget.smooth.value() != 3.0 or expected.sigma == 3.0
    text = widget.status.text()
    assert "chosen" in text and "mean confidence" in text and "none" in text
    assert widget.suggest_button.isEnabled() and widget.run_button.isEnabled()
    assert "scan fossils" not in viewer.layers  # suggesting segments nothing


def test_suggest_smoothing_needs_an_image(make_napari_viewer):
    from napari_microfossil._napari.segment_widget import SegmentWidget

    widget = SegmentWidget(make_napari_viewer())
    assert widget.suggest_smoothing() is None
    assert "Suggest smoothing: image: choose an Image layer" in widget.status.text()


def test_panel_fits_a_laptop_screen(make_napari_viewer):
    from napari_microfossil._napari.segment_widget import SegmentWidget

    widget = SegmentWidget(make_napari_viewer())
    assert widget.minimumSizeHint().height() <= 600


def test_models_come_from_the_plugin_context(make_napari_viewer, model_file, tmp_path):
    """Models registered before the panel opened are listed; later ones follow the signal."""
    from napari_microfossil._napari.context import PluginContext
    from napari_microfossil._napari.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    ctx = PluginContext.of(viewer)
    ctx.add_model(model_file, select=False)
    widget = SegmentWidget(viewer)
    assert widget.model.findData(str(model_file.resolve())) > 0
    assert widget.model_path() == "default"

    other = tmp_path / "other.safetensors"
    other.write_bytes(model_file.read_bytes())
    ctx.add_model(other, select=False)
    assert widget.model.findData(str(other.resolve())) > 0 and widget.model_path() == "default"
    ctx.add_model(other, select=True)
    assert widget.model_path() == str(other.resolve())
    widget.add_model(model_file)  # the panel's own method goes through the context
    assert str(model_file.resolve()) in ctx.models
    assert widget.model_path() == str(model_file.resolve())


def test_context_segment_runs_the_panel(setup, qtbot, model_file):
    """Another panel (Fine-tune) segments through the context, naming model and image."""
    from napari_microfossil._napari.context import PluginContext

    viewer, widget = setup
    viewer.add_image(np.zeros(SHAPE, np.uint16), name="other")
    widget.image.set_layer("other")
    widget.model.setCurrentIndex(0)  # "default"
    ctx = PluginContext.of(viewer)
    assert ctx.can_segment
    worker = ctx.segment(model_file, "scan")
    assert worker is widget.worker and worker is not None
    assert widget.model_path() == str(model_file.resolve())
    assert widget.image.layer().name == "scan"
    wait_idle(qtbot, widget)
    assert viewer.layers["scan fossils"].metadata["model"] == str(model_file.resolve())


def test_class_zero_is_listed_like_any_class(setup, tmp_path, tiny_model):
    """A model whose class 0 is "pore" (real rock has no background) shows all four."""
    import dataclasses

    from napari_microfossil.model import save_model

    _, widget = setup
    spec = dataclasses.replace(tiny_model.spec, class_names=("pore", "clay", "grain"))
    path = save_model(tmp_path / "rock.safetensors", tiny_model.network, spec)
    widget.add_model(path)
    assert "classes: pore, clay, grain" in widget.model_info.text()
