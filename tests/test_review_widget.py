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

from napari_microfossil._napari.review_widget import STATE_KEY, ReviewWidget
from napari_microfossil.io import write_tiff
from napari_microfossil.review import ReviewState, Sidecar

pytestmark = [
    pytest.mark.gui,
    # napari 0.9 with PyQt5 warns once, on creating its QApplication; not ours to fix.
    pytest.mark.filterwarnings("ignore:System theme detection requires a Qt6:UserWarning"),
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

    # a 3D brush marks every slice its ball touched
    layer.n_edit_dimensions = 3
    layer.paint((6, 25, 25), 1)
    assert widget.state.edited == {3, 5, 6, 7}
    layer.n_edit_dimensions = 2

    # along y: the slider follows, and a paint marks the y-slice
    widget.axis_combo.setCurrentText("y")
    assert viewer.dims.order == (1, 0, 2)
    assert widget.state.axis == "y" and widget.state.n_slices == 32
    layer.brush_size = 1
    layer.paint((2, 20, 5), 2)
    assert widget.state.edited == {20}
    assert widget.state.reviewed_slices() == {"z": [3, 5, 6, 7], "y": [20]}
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
    widget.toggle_reviewed()
    assert widget.state.reviewed == {5}
    assert widget.mark_button.text() == "Unmark slice"
    assert widget.go_to_next() == 2
    widget.toggle_reviewed()
    assert widget.go_to_next() in (0, 1, 3, 4, 7)  # the 90 % slices; never the reviewed
    assert widget.progress_label.text().startswith("2 of 8 slices reviewed")


def test_erase_under_cursor_and_undo_restore_exactly(make_napari_viewer, tmp_path):
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:5, 4:9, 4:9] = 1  # the object to erase, across z = 2..4
    labels[2:5, 20:25, 20:25] = 1  # same class, not connected
    labels[6, 10:12, 10:12] = 2
    original = labels.copy()
    viewer = make_napari_viewer()
    _, layer, widget = _setup(viewer, tmp_path, labels=labels)

    viewer.cursor.position = tuple(layer.data_to_world((3, 6, 6)))
    assert widget.erase_under_cursor()
    assert not layer.data[2:5, 4:9, 4:9].any()
    np.testing.assert_array_equal(layer.data[2:5, 20:25, 20:25], 1)
    assert widget.state.edited == {2, 3, 4}
    assert widget.undo_button.isEnabled()

    viewer.cursor.position = tuple(layer.data_to_world((0, 0, 0)))
    assert not widget.erase_under_cursor()  # background

    assert widget.undo_erase()
    np.testing.assert_array_equal(layer.data, original)
    assert not widget.undo_erase()


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
    assert widget._dirty
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
    viewer.window._qt_window.close()  # the window's close button, without a dialog
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
