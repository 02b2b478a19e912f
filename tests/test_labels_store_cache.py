"""The decompressed-chunk cache of store-backed labels: scrolling through the planes
of a chunk reads it from the store once, edits and saves never leave a stale chunk."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microfossil.review.chunk_cache import ChunkCache
from napari_microfossil.review.labels_store import StoreLabels, open_store_labels
from test_labels_store import CHUNKS, SHAPE, make_store


class Counting:
    """A zarr array that counts the chunk-sized reads made of it (and can act mid-read)."""

    def __init__(self, array, during_read=None):
        self.array, self.reads, self.during_read = array, [], during_read
        self.shape, self.dtype, self.chunks = array.shape, array.dtype, array.chunks

    def __getitem__(self, key):
        self.reads.append(key)
        out = self.array[key]
        if self.during_read is not None:
            hook, self.during_read = self.during_read, None
            hook()
        return out

    def __setitem__(self, key, value):
        self.array[key] = value


def counted(path, **kw):
    lab = open_store_labels(path)
    return StoreLabels(Counting(lab.array), path, **kw)


def test_scrolling_through_a_chunk_reads_it_once(tmp_path):
    ref = make_store(tmp_path / "l.zarr")
    lab = counted(tmp_path / "l.zarr")
    per_plane = len(lab.grid.of_box((slice(0, 1), slice(None), slice(None))))
    for z in range(SHAPE[0]):
        np.testing.assert_array_equal(lab[z], ref[z])
    z_chunks = -(-SHAPE[0] // CHUNKS[0])
    assert len(lab.array.reads) == per_plane * z_chunks  # not per_plane * SHAPE[0]
    assert lab.cache.hits == per_plane * (SHAPE[0] - z_chunks)


@pytest.mark.parametrize(
    "key",
    [
        (slice(None, None, -1), 3),
        (slice(1, 9, 3), slice(None, None, -2), slice(2, 13, 4)),
        (Ellipsis, 5),
        (slice(3, 3),),
        (9, 11, 13),
        (slice(None), slice(4, 7)),
    ],
)
def test_cached_reads_equal_numpy_with_edits_in_the_overlay(tmp_path, key):
    ref = make_store(tmp_path / "l.zarr")
    lab = open_store_labels(tmp_path / "l.zarr")
    np.testing.assert_array_equal(lab[key], ref[key])  # fills the cache
    lab[2:7, 3:9, 4:12] = 5
    ref[2:7, 3:9, 4:12] = 5
    np.testing.assert_array_equal(lab[key], ref[key])
    copies, gens = lab.unsaved()
    lab.write_to_store(copies)
    lab.stored(gens)
    assert not lab._overlay
    np.testing.assert_array_equal(lab[key], ref[key])  # from the store again, not stale


def test_a_chunk_edited_while_it_is_read_is_not_cached_stale(tmp_path):
    ref = make_store(tmp_path / "l.zarr")
    lab = counted(tmp_path / "l.zarr")

    def paint():  # the GUI thread paints the chunk another thread is reading
        lab[0, 0, 0] = 9

    lab.array.during_read = paint
    first = lab[0, 0:2, 0:2]
    assert first[0, 0] == ref[0, 0, 0]  # read before the paint
    copies, gens = lab.unsaved()
    lab.write_to_store(copies)
    lab.stored(gens)
    assert lab[0, 0, 0] == 9 and lab[0, 0:2, 0:2][0, 0] == 9


def test_the_cache_stays_within_its_bound_and_big_reads_bypass_it(tmp_path):
    ref = make_store(tmp_path / "l.zarr")
    chunk = int(np.prod(CHUNKS))
    lab = counted(tmp_path / "l.zarr", cache_bytes=3 * chunk)
    for z in range(SHAPE[0]):
        np.testing.assert_array_equal(lab[z, :5, :6], ref[z, :5, :6])  # one chunk a plane
        np.testing.assert_array_equal(lab[z, 5:, 6:], ref[z, 5:, 6:])
        assert lab.cache.nbytes <= 3 * chunk
    before = len(lab.array.reads)
    np.testing.assert_array_equal(np.asarray(lab), ref)
    assert len(lab.array.reads) == before + 1  # one zarr read, not chunk by chunk
    assert lab.cache.nbytes <= 3 * chunk


def test_discard_forgets_cached_chunks(tmp_path):
    make_store(tmp_path / "l.zarr")
    lab = open_store_labels(tmp_path / "l.zarr")
    lab[0]
    assert len(lab.cache)
    lab.discard()
    assert len(lab.cache) == 0


def test_chunk_cache_is_lru_and_read_only():
    cache = ChunkCache(max_bytes=20)
    cache.put(1, np.zeros(10, np.uint8))
    cache.put(2, np.zeros(10, np.uint8))
    assert cache.get(1) is not None  # 1 is now the most recent
    cache.put(3, np.zeros(10, np.uint8))
    assert 2 not in cache and 1 in cache and 3 in cache and cache.nbytes == 20
    cache.put(4, np.zeros(30, np.uint8))  # larger than the bound: not kept
    assert 4 not in cache
    with pytest.raises(ValueError):
        cache.get(1)[0] = 1
    with pytest.raises(ValueError):
        ChunkCache(-1)
