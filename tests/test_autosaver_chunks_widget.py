"""Chunked autosave from a real napari Labels layer (run under ``xvfb-run -a``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_microfossil._napari.review_widget import ReviewWidget
from napari_microfossil.io import write_tiff
from napari_microfossil.review import ChunkGrid, Sidecar

pytestmark = [pytest.mark.gui]

SHAPE = (8, 200, 200)  # default chunks (8, 128, 128): a 1 x 2 x 2 grid


def _record(scan):
    return json.loads((scan.with_name(scan.name + ".microfossil") / "review.json").read_text())


def _saved(qtbot, widget, before):
    """Wait for the next autosave; the chunk numbers it wrote."""
    car = widget.sidecar
    qtbot.waitUntil(
        lambda: widget.save_worker is not before and widget.wait_for_save(0), timeout=10_000
    )
    qtbot.waitUntil(lambda: not widget.session.dirty, timeout=10_000)
    return car.last_written


def test_a_brush_stroke_saves_only_its_chunks(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    scan = tmp_path / "scan.tif"
    image = np.zeros(SHAPE, np.uint16)
    write_tiff(scan, image)
    viewer.add_image(image, name="scan", metadata={"path": str(scan)})
    layer = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="labels")
    widget = ReviewWidget(
        viewer,
        confirm=lambda title, q: pytest.fail(f"unexpected question: {q}"),
        autosave_delay_ms=100,
        cache_dir=tmp_path / "cache",
    )
    viewer.window.add_dock_widget(widget)
    grid = ChunkGrid(SHAPE, dtype=np.uint8)
    assert grid.grid == (1, 2, 2) and widget.session.chunk_grid == grid

    layer.brush_size = 10
    layer.paint((3, 30, 30), 1)  # the first save writes every chunk
    assert _saved(qtbot, widget, None) == (0, 1, 2, 3)
    names = _record(scan)["labels"]["names"]

    worker = widget.save_worker
    layer.paint((5, 150, 40), 2)  # a disc inside chunk (0, 1, 0)
    assert _saved(qtbot, widget, worker) == (2,)
    now = _record(scan)["labels"]["names"]
    assert [i for i in range(4) if now[i] != names[i]] == [2]
    labels, state, _ = Sidecar(scan, cache_dir=tmp_path / "cache").load()
    np.testing.assert_array_equal(labels, layer.data)
    assert (labels == 2).sum() > 50 and state.edited == {3, 5}

    worker = widget.save_worker
    layer.undo()  # napari's own undo: no paint event, its history says where
    assert not (layer.data == 2).any()
    assert _saved(qtbot, widget, worker) == (2,)
    labels, _, _ = Sidecar(scan, cache_dir=tmp_path / "cache").load()
    np.testing.assert_array_equal(labels, layer.data)
    worker = widget.save_worker
    layer.redo()
    assert _saved(qtbot, widget, worker) == (2,)
    labels, _, _ = Sidecar(scan, cache_dir=tmp_path / "cache").load()
    assert (labels == 2).sum() > 50 and np.array_equal(labels, layer.data)

    worker = widget.save_worker
    layer.data = np.ones(SHAPE, np.uint8)  # replaced: cannot be localised
    assert _saved(qtbot, widget, worker) == (0, 1, 2, 3)
    labels, _, _ = Sidecar(scan, cache_dir=tmp_path / "cache").load()
    assert (labels == 1).all()
