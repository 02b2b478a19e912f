"""The 3D preview of store-backed labels: built slab by slab equal to a whole-volume
reduction, and updated by reading only the chunks edited since."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microfossil._progress import drain
from napari_microfossil.io.store import create_output
from napari_microfossil.review.labels_store import StoreLabels, open_store_labels
from napari_microfossil.review.store_preview import _reduce, iter_preview, preview_factor
from test_labels_store_cache import Counting

SHAPE, CHUNKS = (19, 22, 13), (4, 8, 8)


def make(path, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, SHAPE, dtype=np.uint8)
    out = create_output(path, SHAPE, np.uint8, class_names=list("abcd"), chunks=CHUNKS)
    for z in range(0, SHAPE[0], CHUNKS[0]):
        out.write(z, labels[z : z + CHUNKS[0]])
    out.finish()
    return labels


def test_preview_factor():
    assert preview_factor((512, 100, 3), 512) == 1
    assert preview_factor((513, 100, 3), 512) == 2
    assert preview_factor((2048, 2048, 1000), 512) == 4
    assert preview_factor((2160, 2560, 2560), 512) == 8
    with pytest.raises(ValueError):
        preview_factor((4, 4, 4), 0)


@pytest.mark.parametrize("max_side", [22, 11, 6, 3])
def test_slab_by_slab_equals_the_whole_volume_reduced(tmp_path, max_side):
    ref = make(tmp_path / "l.zarr")
    lab = open_store_labels(tmp_path / "l.zarr")
    steps = []
    gen = iter_preview(lab, max_side=max_side)
    try:
        while True:
            steps.append(next(gen))
    except StopIteration as stop:
        prev = stop.value
    f = preview_factor(SHAPE, max_side)
    assert prev.factor == f and max(prev.data.shape) <= max_side
    np.testing.assert_array_equal(prev.data, _reduce(ref, f))
    assert steps[-1].done == steps[-1].total > 1  # progress, slab by slab
    assert set(np.unique(prev.data)) <= set(np.unique(ref))  # no new label values
    assert prev.translate == ((f - 1) / 2,) * 3 and prev.scale == (f,) * 3


def test_an_update_reads_only_the_chunks_edited_since(tmp_path):
    ref = make(tmp_path / "l.zarr")
    base = open_store_labels(tmp_path / "l.zarr")
    lab = StoreLabels(Counting(base.array), tmp_path / "l.zarr", cache_bytes=0)
    first = drain(iter_preview(lab, max_side=6))
    old = first.data.copy()  # the update redoes `first` in place
    lab[8:12, 8:12, 0:4] = 3  # one chunk, one block of the preview
    ref[8:12, 8:12, 0:4] = 3
    lab.array.reads.clear()
    again = drain(iter_preview(lab, max_side=6, previous=first))
    f = again.factor
    np.testing.assert_array_equal(again.data, _reduce(ref, f))
    assert not np.array_equal(again.data, old)
    assert len(lab.array.reads) <= 1  # the edited chunk is in the overlay: no store read
    # saved, then discarded (a restore): the preview does not trust what it had
    lab.discard()
    expected = _reduce(np.asarray(lab), f)  # the store without the stroke
    lab.array.reads.clear()
    fresh = drain(iter_preview(lab, max_side=6, previous=again))
    np.testing.assert_array_equal(fresh.data, expected)
    assert len(lab.array.reads) == 1
