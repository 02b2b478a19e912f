"""Tests for napari_microfossil.fossils.blocks.AtomStore: regions through mapped windows."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from napari_microfossil.fossils import blocks
from napari_microfossil.fossils.blocks import AtomStore


@pytest.fixture
def small_windows(monkeypatch):
    # One window = 2 planes of 5 x 7 uint32, at most 2 kept: every path is crossed.
    monkeypatch.setattr(blocks, "WINDOW_BYTES", 2 * 5 * 7 * 4)
    monkeypatch.setattr(blocks, "WINDOWS", 2)


def test_regions_read_back_as_written_across_windows(tmp_path, small_windows):
    rng = np.random.default_rng(0)
    shape = (9, 5, 7)
    store = AtomStore(tmp_path / "a.u32", shape)
    ref = np.zeros(shape, np.uint32)
    assert store._step == 2
    for _ in range(60):
        lo = rng.integers(0, shape, 3)
        hi = lo + rng.integers(1, shape, 3)
        region = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        if rng.random() < 0.5:
            value = rng.integers(0, 1000, ref[region].shape).astype(np.uint32)
            store[region] = value
            ref[region] = value
        got = store[region]
        assert got.dtype == np.uint32
        np.testing.assert_array_equal(got, ref[region])
        assert len(store._maps) <= 2
    np.testing.assert_array_equal(store[:, :, :], ref)
    # The file itself holds the volume (another reader sees every write).
    on_disk = np.fromfile(tmp_path / "a.u32", np.uint32).reshape(shape)
    np.testing.assert_array_equal(on_disk, ref)
    store.close()
    assert not store._maps
    np.testing.assert_array_equal(store[2:7, 1:4, :], ref[2:7, 1:4, :])


def test_empty_region_and_pickle_without_maps(tmp_path, small_windows):
    store = AtomStore(tmp_path / "a.u32", (4, 5, 7))
    store[1:3, :, :] = np.full((2, 5, 7), 7, np.uint32)
    assert store[3:3, :, :].shape == (0, 5, 7)
    copy = pickle.loads(pickle.dumps(store))
    assert not copy._maps and len(pickle.dumps(store)) < 1000  # no window data copied
    np.testing.assert_array_equal(copy[1:3, 2:3, 0:2], 7)


@pytest.mark.parametrize("seed", range(4))
def test_first_voxels_plane_by_plane_equal_the_whole_block_scan(seed):
    import cc3d

    rng = np.random.default_rng(seed)
    mask = rng.random((7, 9, 11)) < 0.3
    local, n = cc3d.connected_components(mask, connectivity=6, return_N=True)
    box = cc3d.statistics(local, no_slice_conversion=True)["bounding_boxes"][1:]
    whole = blocks._first_voxels(local, n)
    planes = blocks._first_voxels(local, n, np.asarray(box)[:, 0])
    np.testing.assert_array_equal(planes, whole)
    # Each is the smallest flat index of its label.
    flat = local.ravel()
    expected = [np.flatnonzero(flat == k)[0] for k in range(1, n + 1)]
    np.testing.assert_array_equal(whole, expected)


def _mapped(store: AtomStore, depth: int) -> int:
    """How many windows boxes `depth` planes deep, one plane on each time, map."""
    seen: list[object] = []  # the maps themselves, so that no id is reused
    for z0 in range(0, store.shape[0] - depth + 1):
        store[z0 : z0 + depth, :, :]
        seen.extend(m for m in store._maps.values() if not any(m is o for o in seen))
    return len(seen)


def test_cover_keeps_the_windows_of_deep_regions_within_its_bytes(
    tmp_path, small_windows, monkeypatch
):
    store = AtomStore(tmp_path / "a.u32", (40, 5, 7))  # 20 windows of 2 planes
    assert _mapped(store, 9) > 20  # 2 kept: boxes spanning 5-6 windows remap them
    store.close()
    store.cover(9)
    assert store._keep == 6
    assert _mapped(store, 9) == 20  # each window mapped once
    assert len(store._maps) == 6
    monkeypatch.setattr(blocks, "COVER_BYTES", 3 * 2 * 5 * 7 * 4)
    store.cover(100)  # capped by COVER_BYTES, never under WINDOWS
    assert store._keep == 3
    store.cover(1)
    assert store._keep == 2
    store.cover(9)
    assert pickle.loads(pickle.dumps(store))._keep == blocks.WINDOWS  # a copy keeps its own
