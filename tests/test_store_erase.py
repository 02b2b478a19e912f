"""Erasing an object in store-backed labels: the same result as in memory, only the
chunks the object crosses edited, a bound on what is read, and undo."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microfossil.review.edits import UndoStack, erase_object
from napari_microfossil.review.labels_store import open_store_labels
from napari_microfossil.review.store_erase import erase_in_store, write_through
from test_labels_store import write_store

SHAPE, CHUNKS = (40, 40, 40), (8, 8, 8)


def make(path):
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:30, 3:6, 4:7] = 1  # a long rod across z-chunks, and past the first box
    labels[10:12, 20:23, 20:22] = 1  # another object of the same class
    labels[0:40, 35:40, 0:40] = 2  # a slab touching every z-chunk
    return write_store(path, labels, CHUNKS)


def test_erase_equals_the_in_memory_erase_and_touches_only_its_chunks(tmp_path):
    ref = make(tmp_path / "l.zarr")
    lab = open_store_labels(tmp_path / "l.zarr")
    edit = erase_in_store(lab, (29.2, 4, 5))
    want = erase_object(ref, (29.2, 4, 5))
    assert edit is not None and want is not None
    np.testing.assert_array_equal(np.asarray(lab), ref)
    assert ref[10, 21, 21] == 1  # the other object stays
    assert edit.bbox == want.bbox
    np.testing.assert_array_equal(edit.mask, want.mask)
    np.testing.assert_array_equal(edit.old_values, want.old_values)
    rod = lab.grid.of_box((slice(2, 30), slice(3, 6), slice(4, 7)))
    assert set(lab._overlay) == rod  # not every chunk of the bounding box grown to
    assert erase_in_store(lab, (29, 4, 5)) is None  # background now


def test_undo_through_write_through(tmp_path):
    ref = make(tmp_path / "l.zarr")
    lab = open_store_labels(tmp_path / "l.zarr")
    stack = UndoStack()
    stack.push(erase_in_store(lab, (10, 21, 21)))
    assert lab[10, 21, 21] == 0
    assert stack.undo(write_through(lab)) is not None
    np.testing.assert_array_equal(np.asarray(lab), ref)


def test_an_object_too_big_to_read_is_refused_unchanged(tmp_path):
    ref = make(tmp_path / "l.zarr")
    lab = open_store_labels(tmp_path / "l.zarr")
    with pytest.raises(ValueError, match="larger than a box of"):
        erase_in_store(lab, (5, 37, 5), max_bytes=30**3)
    assert not lab.dirty
    np.testing.assert_array_equal(np.asarray(lab), ref)
    assert erase_in_store(lab, (5, 37, 5)) is not None  # with the default bound
    assert not (np.asarray(lab) == 2).any()
    with pytest.raises(ValueError, match="point"):
        erase_in_store(lab, (40, 0, 0))
