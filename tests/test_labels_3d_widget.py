"""The 3D view of a store-backed Labels layer (run under ``xvfb-run -a``): a preview
instead of the whole volume, gone in 2D, kept and updated after painting."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_microfossil._napari.labels_3d import PREVIEW_SUFFIX, Preview3D
from napari_microfossil.review.labels_store import StoreLabels, open_store_labels
from napari_microfossil.review.store_preview import _reduce
from test_labels_store_cache import Counting
from test_store_preview import SHAPE, make

pytestmark = [pytest.mark.gui]


def whole_reads(array):
    full = tuple(slice(0, n) for n in SHAPE)
    return [
        k
        for k in array.reads
        if tuple(slice(*s.indices(n)[:2]) for s, n in zip(k, SHAPE, strict=True)) == full
    ]


def store_layer(viewer, tmp_path):
    ref = make(tmp_path / "l.zarr")
    base = open_store_labels(tmp_path / "l.zarr")
    data = StoreLabels(Counting(base.array), tmp_path / "l.zarr", cache_bytes=0)
    return ref, viewer.add_labels(data, name="labels", scale=(2.0, 1.0, 1.0))


def test_3d_shows_a_preview_and_never_reads_the_whole_store(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    ref, layer = store_layer(viewer, tmp_path)
    small = viewer.add_labels(np.zeros((3, 4, 5), np.uint8), name="in memory")
    watcher = Preview3D.install(viewer, max_side=6)
    assert Preview3D.install(viewer) is watcher  # one per viewer
    viewer.dims.ndisplay = 3
    qtbot.waitUntil(lambda: watcher.preview_of(layer) is not None, timeout=30_000)
    preview = watcher.preview_of(layer)
    assert not layer.visible and small.visible and watcher.preview_of(small) is None
    assert preview.name == "labels" + PREVIEW_SUFFIX and not preview.editable
    f = 4  # 22 / 4 <= 6
    np.testing.assert_array_equal(preview.data, _reduce(ref, f))
    np.testing.assert_allclose(preview.scale, (2 * f, f, f))
    np.testing.assert_allclose(preview.translate, (f - 1, (f - 1) / 2, (f - 1) / 2))
    assert viewer.layers.index(preview) == viewer.layers.index(layer) + 1
    viewer.screenshot()  # drawn
    assert whole_reads(layer.data.array) == []
    viewer.dims.ndisplay = 2
    assert watcher.previews() == [] and preview not in viewer.layers and layer.visible
    np.testing.assert_array_equal(layer.data[5], ref[5])
    assert whole_reads(layer.data.array) == []


def test_the_preview_is_kept_and_redone_where_painted(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    ref, layer = store_layer(viewer, tmp_path)
    watcher = Preview3D.install(viewer, max_side=6)
    viewer.dims.ndisplay = 3
    qtbot.waitUntil(lambda: watcher.preview_of(layer) is not None, timeout=30_000)
    viewer.dims.ndisplay = 2
    layer.data[8:12, 8:12, 0:4] = 3  # as a brush would, in 2D
    ref[8:12, 8:12, 0:4] = 3
    layer.data.array.reads.clear()
    viewer.dims.ndisplay = 3
    qtbot.waitUntil(lambda: watcher.preview_of(layer) is not None, timeout=30_000)
    np.testing.assert_array_equal(watcher.preview_of(layer).data, _reduce(ref, 4))
    assert len(layer.data.array.reads) <= 1  # the painted chunk is in memory: no store read
    viewer.layers.remove(layer)  # its preview goes with it
    assert watcher.previews() == [] and len(viewer.layers) == 0


def test_a_small_store_layer_is_drawn_whole(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    _, layer = store_layer(viewer, tmp_path)
    watcher = Preview3D.install(viewer, max_side=64)
    viewer.dims.ndisplay = 3
    assert layer.visible and watcher.building() == [] and watcher.previews() == []
