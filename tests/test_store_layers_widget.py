"""Unsaved edits of a store-backed Labels layer are saved when the layer or the window
goes, without the Review panel (run under ``xvfb-run -a``)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtCore import QEvent

from napari_microfossil._napari.labels_3d import Preview3D
from napari_microfossil._napari.store_layers import SaveOnClose, watch_store_layers
from napari_microfossil.review.labels_store import open_store_labels
from test_labels_store import make_store, on_disk

pytestmark = [pytest.mark.gui]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_removing_the_layer_saves_its_edits(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    ref = make_store(tmp_path / "l.zarr")
    layer = viewer.add_labels(open_store_labels(tmp_path / "l.zarr"), name="labels")
    preview = watch_store_layers(viewer)
    assert isinstance(preview, Preview3D) and watch_store_layers(viewer) is preview
    layer.data[2, 3, 4] = 9  # as the brush writes
    ref[2, 3, 4] = 9
    assert not np.array_equal(on_disk(tmp_path / "l.zarr"), ref)
    viewer.layers.remove(layer)
    np.testing.assert_array_equal(on_disk(tmp_path / "l.zarr"), ref)
    assert not layer.data.dirty


def test_closing_the_window_saves_every_store_layer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    refs, shown = [], []
    for name in ("a.zarr", "b.zarr"):
        refs.append(make_store(tmp_path / name, seed=len(refs)))
        shown.append(viewer.add_labels(open_store_labels(tmp_path / name), name=name))
    guard = SaveOnClose.install(viewer)
    shown[0].data[0, 0, 0] = 7
    refs[0][0, 0, 0] = 7
    shown[1].data[9, 11, 13] = 6
    refs[1][9, 11, 13] = 6
    called = []
    shown[1].data.flush_hook = lambda: called.append(True)  # a review follows b: it saves
    guard.eventFilter(viewer.window._qt_window, QEvent(QEvent.Type.Close))
    np.testing.assert_array_equal(on_disk(tmp_path / "a.zarr"), refs[0])
    assert called == [True] and shown[1].data.dirty  # left to the review's autosave
