"""Labels layers backed by a zarr store in napari (run under ``xvfb-run -a``): painting,
the review autosave into the store, reopening, slice navigation, and Segment writing a
big scan's result into a store."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_microfossil._napari import layers
from napari_microfossil._napari.review_widget import ReviewWidget
from napari_microfossil.io import read_labels, write_tiff
from napari_microfossil.io.store import create_output
from napari_microfossil.review.labels_store import StoreLabels

pytestmark = [pytest.mark.gui]

SHAPE, CHUNKS = (8, 40, 40), (2, 16, 16)
CLASSES = ["background", "fossil", "pore"]


def make_store(path):
    rng = np.random.default_rng(1)
    labels = (rng.random(SHAPE) < 0.1).astype(np.uint8) * 2
    out = create_output(path, SHAPE, np.uint8, class_names=CLASSES, chunks=CHUNKS)
    for z in range(0, SHAPE[0], CHUNKS[0]):
        out.write(z, labels[z : z + CHUNKS[0]])
    out.finish()
    return labels


def open_layer(viewer, path):
    data = layers.editable_labels(str(path), None)
    assert isinstance(data, StoreLabels)
    meta = {layers.CLASS_NAMES: CLASSES, layers.PATH: str(path)}  # as the reader's
    return viewer.add_labels(data, name="labels", metadata=meta)


def review(viewer, tmp_path, **kw):
    widget = ReviewWidget(viewer, autosave_delay_ms=100, cache_dir=tmp_path / "cache", **kw)
    viewer.window.add_dock_widget(widget)
    return widget


def saved(qtbot, widget, before):
    qtbot.waitUntil(
        lambda: widget.save_worker is not before and widget.wait_for_save(0), timeout=30_000
    )
    qtbot.waitUntil(lambda: not widget.session.dirty, timeout=30_000)


def test_painting_goes_into_the_store(make_napari_viewer, qtbot, tmp_path):
    store = tmp_path / "labels.zarr"
    ref = make_store(store)
    viewer = make_napari_viewer()
    layer = open_layer(viewer, store)
    widget = review(viewer, tmp_path, confirm=lambda t, q: pytest.fail(q))
    assert widget.session.chunk_grid.chunks == CHUNKS
    layer.brush_size = 5
    viewer.dims.set_point(0, 3)
    layer.paint((3, 20, 20), 1)
    painted = np.asarray(layer.data) == 1
    assert painted.sum() > 5 and painted[3].sum() == painted.sum()
    assert (np.asarray(layer.data)[~painted] == ref[~painted]).all()
    saved(qtbot, widget, None)
    rec = json.loads((store.parent / "labels.zarr.microfossil" / "review.json").read_text())
    assert rec["version"] == 3 and rec["state"]["edited"] == [3]
    on_disk = np.asarray(read_labels(store, lazy=False).data)
    np.testing.assert_array_equal(on_disk[painted], 1)
    np.testing.assert_array_equal(on_disk[~painted], ref[~painted])
    assert not layer.data._overlay  # saved chunks leave memory
    assert f"into {store}" in widget.save_label.text()

    # napari's undo: back in the store too
    worker = widget.save_worker
    layer.undo()
    saved(qtbot, widget, worker)
    np.testing.assert_array_equal(np.asarray(read_labels(store, lazy=False).data), ref)
    layer.redo()
    widget.flush()  # e.g. the window closes
    widget.close()
    viewer.layers.clear()

    # reopened: the painted voxels are there, the rest unchanged; the review restores
    again = open_layer(viewer, store)
    widget = review(viewer, tmp_path, confirm=lambda t, q: True)
    assert widget.state.edited == {3}
    np.testing.assert_array_equal(np.asarray(again.data)[painted], 1)
    np.testing.assert_array_equal(np.asarray(again.data)[~painted], ref[~painted])


def test_slice_navigation_on_a_store_backed_layer(make_napari_viewer, qtbot, tmp_path):
    store = tmp_path / "labels.zarr"
    make_store(store)
    viewer = make_napari_viewer()
    conf = np.full(SHAPE, 90, np.uint8)
    conf[5] = 10  # the least confident slice
    viewer.add_image(conf, name="conf")
    open_layer(viewer, store)
    widget = review(viewer, tmp_path, confirm=lambda t, q: pytest.fail(q))
    widget.conf_combo.set_layer("conf")
    assert widget.go_to_next() == 5 and widget.current_slice() == 5
    widget.mark_current_reviewed()
    assert widget.state.is_reviewed(5)
    assert widget.go_to_next() != 5
    widget.set_axis("y")
    assert widget.current_slice() is not None
    assert widget.session.labels is widget.layer.data  # never copied into memory


def test_labels_store_of_saves_unsaved_edits(make_napari_viewer, tmp_path):
    store = tmp_path / "labels.zarr"
    ref = make_store(store)
    viewer = make_napari_viewer()
    layer = open_layer(viewer, store)
    layer.data[0, 0, 0:3] = 1  # no Review panel: nobody autosaves
    ref[0, 0, 0:3] = 1
    assert layers.store_of(layer) == str(store)
    assert layers.labels_store_of(layer) == str(store)
    np.testing.assert_array_equal(np.asarray(read_labels(store, lazy=False).data), ref)
    assert layers.store_of(viewer.add_labels(ref)) is None


def test_segment_writes_a_big_scan_into_a_store(make_napari_viewer, qtbot, model_file, tmp_path):
    from napari_microfossil._napari.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    scan = tmp_path / "scan.tif"
    image = rng.integers(0, 1000, size=(6, 64, 64)).astype(np.uint16)
    write_tiff(scan, image, spacing=(2.0, 1.5, 1.5))
    viewer.add_image(image, name="scan", scale=(2.0, 1.5, 1.5), metadata={"path": str(scan)})
    widget = SegmentWidget(viewer)
    widget.add_model(model_file)
    widget.device.setCurrentIndex(widget.device.findData("cpu"))
    widget.store_bytes = 1000  # "big": 6 * 64 * 64 voxels of labels
    widget.confidence.setChecked(True)
    widget.run()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)
    layer = viewer.layers["scan fossils"]
    assert isinstance(layer.data, StoreLabels), widget.status.text()
    assert layer.data.path == tmp_path / "scan.tif.labels.zarr"
    assert layer.metadata[layers.CLASS_NAMES] == ["background", "fossil", "pore"]
    assert tuple(layer.scale) == (2.0, 1.5, 1.5)
    assert viewer.layers["scan confidence"].data.shape == (6, 64, 64)
    assert "kept in" in widget.status.text()

    # reviewed slices are kept by the next run, which writes a new store
    widget_r = review(viewer, tmp_path, confirm=lambda t, q: False)
    widget_r.labels_combo.set_layer("scan fossils")
    layer.data[2] = 2  # a corrected slice (as the brush would)
    widget_r.session.record_paint([], current=2)
    widget_r.session.mark_reviewed(2)
    widget.run()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)
    layer = viewer.layers["scan fossils"]
    assert layer.data.path == tmp_path / "scan.tif.labels-1.zarr"
    assert (np.asarray(layer.data[2]) == 2).all() and widget.kept == 1
