"""Review & correct widget in a headless napari (run under ``xvfb-run -a``)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtWidgets import QApplication

from napari_microfossil._napari.layers import REVIEW as STATE_KEY
from napari_microfossil._napari.review_widget import ReviewWidget
from napari_microfossil.io import write_tiff
from napari_microfossil.review import ReviewState, Sidecar

pytestmark = [
    pytest.mark.gui,
]

SHAPE = (8, 32, 32)
CLASSES = ["background", "fossil", "pore"]


def _setup(viewer, tmp_path, *, labels=None, delay=150, confirm=None, conf=None):
    scan = tmp_path / "scan.tif"
    image = np.random.default_rng(0).integers(0, 1000, SHAPE, dtype=np.uint16)
    if not scan.exists():
        write_tiff(scan, image)
    viewer.add_image(image, name="scan", metadata={"path": str(scan)})
    meta = {"class_names": CLASSES}
    if conf is not None:
        viewer.add_image(conf, name="confidence")
        meta["confidence_layer"] = "confidence"
    layer = viewer.add_labels(
        np.zeros(SHAPE, np.uint8) if labels is None else labels, name="labels", metadata=meta
    )
    widget = ReviewWidget(
        viewer,
        confirm=confirm or (lambda title, q: pytest.fail(f"unexpected question: {q}")),
        autosave_delay_ms=delay,
        cache_dir=tmp_path / "cache",
    )
    viewer.window.add_dock_widget(widget)
    return scan, layer, widget


def _saved_json(scan):
    path = scan.with_name(scan.name + ".microfossil") / "review.json"
    return json.loads(path.read_text()) if path.is_file() else None


def test_paint_marks_slice_and_autosaves(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    scan, layer, widget = _setup(viewer, tmp_path)
    assert layer.metadata[STATE_KEY] is widget.state
    assert widget.progress_label.text().startswith("0 of 8 slices reviewed")

    layer.brush_size = 3
    layer.paint((3, 10, 10), 1)  # napari's brush, on z-slice 3
    assert widget.state.edited == {3}
    assert widget.state.reviewed_slices() == {"z": [3]}
    assert widget.progress_label.text().startswith("1 of 8 slices reviewed")

    qtbot.waitUntil(lambda: _saved_json(scan) is not None, timeout=10_000)
    assert widget.wait_for_save()
    labels, state, meta = Sidecar(scan, cache_dir=tmp_path / "cache").load()
    np.testing.assert_array_equal(labels, layer.data)
    assert labels[3].sum() > 0 and labels.sum() == labels[3].sum()
    assert state.reviewed_slices() == {"z": [3]}
    assert meta["class_names"] == CLASSES

    # data_setitem (the other programmatic edit) emits the same event
    layer.data_setitem((np.array([6, 6]), np.array([1, 2]), np.array([1, 1])), 2)
    assert widget.state.edited == {3, 6}
    qtbot.waitUntil(lambda: _saved_json(scan)["state"]["edited"] == [3, 6], timeout=10_000)

    # a 3D brush changes z = 5..7; only the slice shown counts (the user saw that one)
    layer.n_edit_dimensions = 3
    widget.go_to_slice(7)
    layer.paint((6, 25, 25), 1)
    assert layer.data[5].any() and layer.data[7].any()
    assert widget.state.edited == {3, 6, 7}
    widget.go_to_slice(0)  # a 3D edit away from the slice shown marks nothing
    layer.paint((6, 5, 25), 1)
    assert widget.state.edited == {3, 6, 7}
    layer.n_edit_dimensions = 2

    # along y: the slider follows, and a paint marks the y-slice
    widget.axis_combo.setCurrentText("y")
    assert viewer.dims.order == (1, 0, 2)
    assert widget.state.axis == "y" and widget.state.n_slices == 32
    layer.brush_size = 1
    layer.paint((2, 20, 5), 2)
    assert widget.state.edited == {20}
    assert widget.state.reviewed_slices() == {"z": [3, 6, 7], "y": [20]}
    widget.flush()
    assert _saved_json(scan)["state"]["axis"] == "y"


def test_mark_reviewed_and_next_slice_follow_confidence(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    conf = np.full(SHAPE, 90, np.uint8)
    conf[5] = 30
    conf[2] = 40
    conf[6] = 95
    _, _, widget = _setup(viewer, tmp_path, conf=conf)
    assert widget.conf_combo.currentText() == "confidence"

    assert widget.go_to_next() == 5
    assert widget.current_slice() == 5
    widget.mark_button.click()
    assert widget.state.reviewed == {5}
    assert widget.mark_button.text() == "✓ Slice reviewed"
    assert widget.go_to_next() == 2
    widget.mark_button.click()
    assert widget.go_to_next() in (0, 1, 3, 4, 7)  # the 90 % slices; never the reviewed
    assert widget.progress_label.text().startswith("2 of 8 slices reviewed")


def _erase_labels():
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:5, 4:9, 4:9] = 1  # the object to erase, across z = 2..4
    labels[2:5, 20:25, 20:25] = 1  # same class, not connected
    labels[6, 10:12, 10:12] = 2
    return labels


class _Click:
    """What napari passes a mouse callback, reduced to what the erase mode reads."""

    type = "mouse_press"

    def __init__(self, position):
        self.position = tuple(float(v) for v in position)
        self.dims_displayed = [1, 2]
        self.view_direction = None


def test_erase_under_cursor_and_undo_restore_exactly(make_napari_viewer, tmp_path):
    labels = _erase_labels()
    original = labels.copy()
    viewer = make_napari_viewer()
    _, layer, widget = _setup(viewer, tmp_path, labels=labels)

    widget.go_to_slice(3)
    viewer.cursor.position = tuple(layer.data_to_world((3, 6, 6)))
    assert widget.erase_under_cursor()
    assert not layer.data[2:5, 4:9, 4:9].any()
    np.testing.assert_array_equal(layer.data[2:5, 20:25, 20:25], 1)
    assert widget.undo_button.isEnabled()

    viewer.cursor.position = tuple(layer.data_to_world((0, 0, 0)))
    assert not widget.erase_under_cursor()  # background

    assert widget.undo_erase()
    np.testing.assert_array_equal(layer.data, original)
    assert not widget.undo_erase()


def test_erase_marks_only_the_slice_shown_and_undo_unmarks(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    _, layer, widget = _setup(viewer, tmp_path, labels=_erase_labels())
    st = widget.state
    widget.go_to_slice(6)
    widget.mark_current_reviewed()
    layer.paint((6, 30, 30), 2)  # painted: edited
    assert (st.reviewed, st.edited) == ({6}, {6})

    widget.go_to_slice(3)
    assert widget.erase_at(layer.data_to_world((3, 6, 6)))  # the object spans z = 2..4
    assert (st.reviewed, st.edited) == ({3, 6}, {3, 6})  # not 2 and 4: not seen
    widget.go_to_slice(2)
    widget.mark_current_reviewed()  # looked at it afterwards: stays reviewed on undo
    assert widget.undo_erase()
    assert (st.reviewed, st.edited) == ({2, 6}, {6})  # back to before the erase

    # erasing on a slice already edited, then undoing, keeps that slice edited
    widget.go_to_slice(6)
    assert widget.erase_at(layer.data_to_world((6, 10, 10)))
    assert widget.undo_erase()
    assert (st.reviewed, st.edited) == ({2, 6}, {6})


def test_undo_erase_keeps_a_slice_painted_afterwards(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    _, layer, widget = _setup(viewer, tmp_path, labels=_erase_labels())
    st = widget.state
    widget.go_to_slice(3)
    assert widget.erase_at(layer.data_to_world((3, 6, 6)))
    assert (st.reviewed, st.edited) == ({3}, {3})
    layer.paint((3, 28, 28), 2)  # a correction on the same slice, after the erase
    assert widget.undo_erase()
    assert layer.data[3, 6, 6] == 1 and layer.data[3, 28, 28] == 2
    assert (st.reviewed, st.edited) == ({3}, {3})  # the stroke keeps the slice marked
    assert widget.slice_label.text() == "z = 3: edited"


def test_erase_mode_erases_the_clicked_object(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    _, layer, widget = _setup(viewer, tmp_path, labels=_erase_labels())
    layer.mode = "paint"
    widget.go_to_slice(3)
    # The cursor is elsewhere (where the mouse left the canvas, on its way to the button).
    viewer.cursor.position = tuple(layer.data_to_world((3, 22, 22)))

    widget.erase_button.click()
    assert widget.erase_button.isChecked()
    assert widget.eraser.on_click in viewer.mouse_drag_callbacks
    assert layer.mode == "pan_zoom"  # the click must not paint

    # napari calls the viewer's drag callbacks with the click's world position
    widget.eraser.on_click(viewer, _Click(layer.data_to_world((3, 6, 6))))
    assert not layer.data[2:5, 4:9, 4:9].any()  # the clicked object...
    np.testing.assert_array_equal(layer.data[2:5, 20:25, 20:25], 1)  # ...not the cursor's
    assert widget.state.edited == {3}
    assert not widget.erase_button.isChecked()  # one click, then the mode ends
    assert layer.mode == "paint"
    QApplication.processEvents()
    assert widget.eraser.on_click not in viewer.mouse_drag_callbacks

    widget.erase_button.click()  # a click on background erases nothing
    widget.eraser.on_click(viewer, _Click(layer.data_to_world((3, 0, 0))))
    assert widget.undo_stack and len(widget.undo_stack) == 1
    assert not widget.erase_button.isChecked()


def test_erase_key_acts_at_the_cursor(make_napari_viewer, tmp_path):
    from napari.utils.key_bindings import coerce_keybinding

    key = coerce_keybinding("Shift-E")
    viewer = make_napari_viewer()
    _, layer, widget = _setup(viewer, tmp_path, labels=_erase_labels())
    assert key in layer.keymap
    widget.go_to_slice(3)
    viewer.cursor.position = tuple(layer.data_to_world((3, 22, 22)))  # the mouse is there
    layer.keymap[key](layer)
    assert not layer.data[2:5, 20:25, 20:25].any()
    np.testing.assert_array_equal(layer.data[2:5, 4:9, 4:9], 1)
    viewer.layers.remove(layer)  # a layer no longer reviewed loses the binding
    assert key not in layer.keymap


def test_mark_button_after_painting_keeps_the_slice(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    _, layer, widget = _setup(viewer, tmp_path)
    widget.go_to_slice(4)
    layer.paint((4, 10, 10), 1)
    assert widget.state.edited == {4}
    assert not widget.mark_button.isEnabled()  # already reviewed: nothing to mark
    assert widget.mark_button.text() == "✓ Slice reviewed"
    widget.mark_current_reviewed()  # even called directly, it never unmarks
    assert (widget.state.reviewed, widget.state.edited) == ({4}, {4})
    assert not widget.unmark_button.isEnabled()  # an edited slice stays reviewed
    assert not widget.unmark_current()
    assert (widget.state.reviewed, widget.state.edited) == ({4}, {4})

    widget.go_to_slice(1)
    assert widget.mark_button.isEnabled() and not widget.unmark_button.isEnabled()
    widget.mark_button.click()
    widget.mark_button.click()
    assert widget.state.reviewed == {1, 4}
    assert widget.unmark_button.isEnabled()
    widget.unmark_button.click()  # a slice only looked at can be unmarked
    assert widget.state.reviewed == {4} and widget.mark_button.isEnabled()


def test_instance_layer_is_never_reviewed(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    asked = []
    scan, layer, widget = _setup(
        viewer, tmp_path, delay=60_000, confirm=lambda t, q: asked.append(q) or False
    )
    layer.paint((4, 8, 8), 1)
    widget.flush()
    before = _saved_json(scan)
    # what Fossils ▸ Extract adds: instance ids on the scan's grid, no review state
    instances = viewer.add_labels(
        np.arange(np.prod(SHAPE), dtype=np.uint32).reshape(SHAPE) % 7,
        name="labels instances",
        metadata={"fossil_instances": True, "source_labels": "labels"},
    )
    assert asked == []  # no "Restore?" for the instance layer
    assert widget.layer is layer
    assert [widget.labels_combo.itemText(i) for i in range(widget.labels_combo.count())] == [
        "labels"
    ]
    assert STATE_KEY not in instances.metadata
    widget.flush()
    assert _saved_json(scan) == before  # the class labels' autosave is untouched
    assert not list(scan.with_name("scan.tif.microfossil").glob("declined-*"))
    viewer.layers.remove(layer)  # with the class labels gone, the instances are not taken
    assert widget.layer is None and asked == []


def test_confidence_layer_added_after_the_labels_is_picked(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    _, layer, widget = _setup(viewer, tmp_path)
    layer.metadata["confidence_layer"] = "labels confidence"
    assert widget.conf_combo.currentText() == "(none)"
    conf = np.full(SHAPE, 90, np.uint8)
    conf[6] = 10
    viewer.add_image(conf, name="labels confidence")
    assert widget.conf_combo.currentText() == "labels confidence"
    viewer.layers["labels confidence"].name = "renamed"  # the choice follows a rename
    assert widget.conf_combo.currentText() == "renamed"
    assert widget.go_to_next() == 6


def test_dock_title_shows_the_ampersand(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer(show=True)
    widget = ReviewWidget(viewer, confirm=lambda t, q: False, cache_dir=tmp_path / "cache")
    dock = viewer.window.add_dock_widget(widget, name="Review & correct")
    QApplication.processEvents()
    assert dock.windowTitle() == "Review && correct"  # Qt shows "&&" as "&" in a tab
    assert dock.name == "Review & correct"


def test_class_picker_sets_brush_label(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    _, layer, widget = _setup(viewer, tmp_path)
    assert [widget.class_combo.itemText(i) for i in range(3)] == [
        "0: background",
        "1: fossil",
        "2: pore",
    ]
    widget.select_class("pore")
    assert layer.selected_label == 2 and layer.mode == "paint"
    assert widget.class_combo.currentIndex() == 2
    layer.selected_label = 1  # napari's own control: the picker follows
    assert widget.class_combo.currentIndex() == 1


def test_napari_undo_and_layer_removal_are_saved(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    scan, layer, widget = _setup(viewer, tmp_path, delay=60_000)  # only explicit saves
    layer.paint((1, 10, 10), 1)
    widget.flush()
    assert np.asarray(Sidecar(scan).load()[0]).any()
    layer.undo()  # napari's own undo emits no paint event
    assert widget.session.dirty
    viewer.layers.remove(layer)  # removing the layer saves at once
    assert widget.state is None
    labels, state, _ = Sidecar(scan).load()
    assert not labels.any()
    assert state.edited == {1}


def test_restore_offered_and_declined(make_napari_viewer, tmp_path):
    scan = tmp_path / "scan.tif"
    write_tiff(scan, np.zeros(SHAPE, np.uint16))
    saved = np.zeros(SHAPE, np.uint8)
    saved[4, 1:5, 1:5] = 2
    Sidecar(scan, cache_dir=tmp_path / "cache").save(
        saved, ReviewState(n_slices=8, edited={4}, reviewed={0})
    )
    questions = []

    def yes(title, q):
        questions.append(q)
        return True

    viewer = make_napari_viewer()
    _, layer, widget = _setup(viewer, tmp_path, confirm=yes)
    assert len(questions) == 1 and "Restore" in questions[0]
    np.testing.assert_array_equal(layer.data, saved)
    assert widget.state.reviewed == {0, 4} and widget.state.edited == {4}
    assert layer.metadata[STATE_KEY] is widget.state

    widget.close()
    viewer.layers.remove(layer)
    viewer.layers.remove("scan")
    _, layer2, widget2 = _setup(viewer, tmp_path, confirm=lambda title, q: False)
    assert not layer2.data.any()  # declined: nothing restored...
    assert not Sidecar(scan, cache_dir=tmp_path / "cache").exists()
    kept = list(scan.with_name("scan.tif.microfossil").glob("declined-*/review.json"))
    assert len(kept) == 1  # ...and the earlier autosave is kept aside, not overwritten
    widget2.flush()


def test_no_scan_path_saves_to_cache(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="orphan")
    widget = ReviewWidget(viewer, autosave_delay_ms=60_000, cache_dir=tmp_path / "cache")
    assert "cache" in widget.save_label.text()
    layer.paint((0, 3, 3), 1)
    widget.flush()
    got = Sidecar(name="orphan", cache_dir=tmp_path / "cache").load()[0]
    np.testing.assert_array_equal(got, layer.data)


_CHILD = textwrap.dedent(
    """
    import sys, time, numpy as np, napari
    from qtpy.QtWidgets import QApplication
    from napari_microfossil._napari.review_widget import ReviewWidget

    scan, cache = sys.argv[1], sys.argv[2]
    viewer = napari.Viewer(show=False)
    viewer.add_image(np.zeros((8, 32, 32), np.uint16), name="scan", metadata={"path": scan})
    layer = viewer.add_labels(np.zeros((8, 32, 32), np.uint8), name="labels")
    w = ReviewWidget(viewer, autosave_delay_ms=100, cache_dir=cache)
    layer.brush_size = 5
    layer.paint((5, 16, 16), 2)
    t0 = time.time()
    while w.save_worker is None or not w.wait_for_save(0):  # the debounced autosave
        QApplication.processEvents()
        time.sleep(0.01)
        assert time.time() - t0 < 60
    QApplication.processEvents()
    print("saved", flush=True)
    layer.paint((6, 16, 16), 1)  # an edit not yet autosaved when we are killed
    time.sleep(600)
    """
)


@pytest.mark.slow
def test_killed_napari_restores_from_sidecar(make_napari_viewer, tmp_path):
    """A napari process is SIGKILLed after an autosave; a new session restores the labels."""
    scan = tmp_path / "scan.tif"
    write_tiff(scan, np.zeros(SHAPE, np.uint16))
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(scan), str(tmp_path / "cache")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "saved"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    viewer = make_napari_viewer()
    _, layer, widget = _setup(viewer, tmp_path, confirm=lambda title, q: True)
    assert layer.data[5].sum() > 0  # the autosaved stroke is back
    assert not layer.data[6].any()  # the later one had not been saved: gone, not torn
    assert set(np.unique(layer.data)) == {0, 2}
    assert widget.state.edited == {5}


def test_closing_the_window_saves(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer(show=True)
    scan, layer, widget = _setup(viewer, tmp_path, delay=60_000)
    qtbot.waitUntil(widget.isVisible)  # the dock is shown: the widget watches its window
    layer.paint((2, 8, 8), 1)
    assert _saved_json(scan) is None
    viewer.close()  # File > Close Window: napari's own close, without a dialog
    saved = _saved_json(scan)
    assert saved is not None and saved["state"]["edited"] == [2]


def test_new_segmentation_resets_state_and_keeps_old_autosave(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    scan, layer, widget = _setup(viewer, tmp_path, delay=60_000)
    layer.paint((4, 8, 8), 1)
    widget.flush()
    # what the Segment widget does when it replaces the labels with a new result
    new = np.full(SHAPE, 2, np.uint8)
    layer.data = new
    layer.metadata.pop(STATE_KEY)
    widget.flush()
    labels, state, _ = Sidecar(scan).load()
    np.testing.assert_array_equal(labels, new)
    assert state.reviewed == set() and widget.state is layer.metadata[STATE_KEY]
    old = list(scan.with_name("scan.tif.microfossil").glob("declined-*/review.json"))
    assert len(old) == 1 and json.loads(old[0].read_text())["state"]["edited"] == [4]


def _fail_question(title, q):
    pytest.fail(f"unexpected question: {q}")


def _segment_result(viewer, image, *, name=None, source_path=None):
    """A Labels layer with the metadata the Segment widget gives its result."""
    return viewer.add_labels(
        np.zeros(SHAPE, np.uint8),
        name=name or f"{image} fossils",
        metadata={
            "class_names": CLASSES,
            "source_path": source_path,
            "source_image": image,
            "confidence_layer": None,
            "model": "default",
            "segment_options": {"axes": "z"},
        },
    )


def _sample(viewer):
    """What File > Open Sample adds: a scan with no path, its hidden ground truth."""
    image = np.random.default_rng(0).integers(0, 1000, SHAPE, dtype=np.uint16)
    viewer.add_image(image, name="microfossil sample", metadata={"class_names": CLASSES})
    truth = np.zeros(SHAPE, np.uint8)
    truth[2:5, 4:9, 4:9] = 1
    return viewer.add_labels(
        truth, name="ground truth", visible=False, metadata={"class_names": CLASSES}
    )


def test_review_moves_to_the_segment_result_and_tracks_it(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    truth = _sample(viewer)
    truth_before = truth.data.copy()
    cache = tmp_path / "cache"
    widget = ReviewWidget(viewer, confirm=_fail_question, autosave_delay_ms=150, cache_dir=cache)
    assert widget.layer is truth  # nothing else to review yet

    result = _segment_result(viewer, "microfossil sample")  # Segment's "Run"
    assert widget.layer is result
    assert widget.labels_combo.currentText() == "microfossil sample fossils"
    result.paint((3, 10, 10), 1)
    assert widget.state is result.metadata[STATE_KEY] and widget.state.edited == {3}
    sidecar = Sidecar(name="microfossil sample fossils", cache_dir=cache)  # no scan path
    qtbot.waitUntil(sidecar.exists, timeout=10_000)
    assert widget.wait_for_save()
    labels, state, _ = sidecar.load()
    np.testing.assert_array_equal(labels, result.data)
    assert state.edited == {3}
    np.testing.assert_array_equal(truth.data, truth_before)

    # A Segment result is kept: neither a second result nor the instances take its place.
    _segment_result(viewer, "microfossil sample", name="another result")
    viewer.add_labels(
        np.zeros(SHAPE, np.uint32),
        name="microfossil sample fossils instances",
        metadata={"fossil_instances": True, "source_labels": result.name},
    )
    assert widget.layer is result
    widget.flush()


def test_review_opened_later_prefers_the_segment_result(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    truth = _sample(viewer)
    result = _segment_result(viewer, "microfossil sample")
    widget = ReviewWidget(viewer, confirm=_fail_question, cache_dir=tmp_path / "cache")
    assert widget.layer is result  # not the first Labels layer, the ground truth
    viewer.layers.remove(result)  # with the result gone, the ground truth is all there is
    assert widget.layer is truth
    # the Fossils instance layer is never taken, even one that names its scan
    viewer.add_labels(
        np.zeros(SHAPE, np.uint32),
        name="instances",
        metadata={"fossil_instances": True, "source_image": "microfossil sample"},
    )
    assert widget.layer is truth


def test_autosave_goes_beside_the_scan_segment_names(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    viewer.add_image(np.zeros(SHAPE, np.uint16), name="a", metadata={"path": str(a)})
    viewer.add_image(np.zeros(SHAPE, np.uint16), name="b", metadata={"path": str(b)})
    # no source_path (the result of a scan Segment could not place): the scan is "b"
    layer = _segment_result(viewer, "b")
    widget = ReviewWidget(viewer, confirm=_fail_question, cache_dir=tmp_path / "cache")
    assert widget.layer is layer
    assert widget.sidecar is not None and widget.sidecar.scan_path == b


def test_panel_fits_a_small_screen(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    _, _, widget = _setup(viewer, tmp_path)
    assert widget.minimumSizeHint().height() <= 600  # a 1366x768 screen, with napari's bars


def test_other_panels_hear_of_the_review_through_the_context(make_napari_viewer, tmp_path):
    from napari_microfossil._napari.context import PluginContext

    viewer = make_napari_viewer()
    ctx = PluginContext.of(viewer)
    chosen, changed = [], []
    ctx.review_layer_changed.connect(chosen.append)
    ctx.review_changed.connect(changed.append)
    _, layer, widget = _setup(viewer, tmp_path, labels=_erase_labels(), delay=60_000)
    assert ctx.review_layer is layer and chosen == [layer] and changed == []

    widget.go_to_slice(1)
    widget.mark_current_reviewed()
    layer.paint((2, 30, 30), 2)
    assert widget.erase_at(layer.data_to_world((3, 6, 6)))
    assert widget.undo_erase()
    widget.axis_combo.setCurrentText("y")
    assert changed == [layer] * 5  # marked, painted, erased, undone, axis switched
    assert widget.state.reviewed_slices() == {"z": [1, 2]}

    layer.metadata.pop(STATE_KEY)  # what Segment does before it replaces the labels
    assert widget.state is layer.metadata[STATE_KEY] and not widget.state.reviewed
    assert len(changed) == 6  # a fresh record is a change too
    viewer.layers.remove(layer)
    assert ctx.review_layer is None and chosen[-1] is None
