"""The lazy volumes (a TIFF read on demand, a folder of slices) behave like the numpy array."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_microfossil.errors import InputError
from napari_microfossil.io import SliceStack, is_supported, read_volume
from napari_microfossil.io.lazy import LazyArray, LazyView

KEYS = [
    1,
    -1,
    np.int64(2),
    slice(None),
    (slice(1, None, 2), 3),
    (Ellipsis, -1),
    (0, Ellipsis, slice(1, 4)),
    (slice(None, None, 2), slice(2, 5), 0),
    [2, 0],  # fancy indexing: read whole, then indexed
    (slice(None), [1, 1, 3]),
]


def _expected() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 200, (4, 6, 5)).astype(np.uint8)


def _tiff_view(tmp_path: Path) -> LazyView:
    tifffile.imwrite(tmp_path / "v.tif", _expected(), photometric="minisblack", compression="zlib")
    data = read_volume(tmp_path / "v.tif", lazy=True).data
    assert isinstance(data, LazyView)
    return data


def _stack(tmp_path: Path) -> SliceStack:
    for z, plane in enumerate(_expected()):
        tifffile.imwrite(tmp_path / f"s{z}.tif", plane)
    data = read_volume(tmp_path, lazy=True).data
    assert isinstance(data, SliceStack)
    return data


@pytest.fixture(params=["tiff", "slices"])
def lazy(request, tmp_path):
    make = _tiff_view if request.param == "tiff" else _stack
    data = make(tmp_path)
    yield data
    del data
    gc.collect()  # the TIFF view closes its file when collected: no ResourceWarning


def test_lazy_arrays_share_the_numpy_protocol(lazy):
    a = _expected()
    assert isinstance(lazy, LazyArray)
    assert (lazy.shape, lazy.ndim, lazy.dtype) == (a.shape, 3, a.dtype)
    assert (lazy.size, lazy.nbytes, len(lazy)) == (a.size, a.nbytes, len(a))
    for key in KEYS:
        np.testing.assert_array_equal(lazy[key], a[key], err_msg=repr(key))
    np.testing.assert_array_equal(lazy[a > 100], a[a > 100])
    out = np.asarray(lazy, dtype=np.float32)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, a)


@pytest.mark.parametrize(
    "key, match",
    [
        (4, "out of bounds"),
        ((0, -7), "out of bounds"),
        ((0, 0, 0, 0), "too many"),
        ((..., 0, ...), "single ellipsis"),
    ],
)
def test_lazy_arrays_reject_bad_indices_like_numpy(lazy, key, match):
    with pytest.raises(IndexError, match=match):
        lazy[key]


def test_is_supported_and_folder_reader_agree_on_slice_files(tmp_path):
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    tifffile.imwrite(hidden / ".z0.tif", np.zeros((3, 3), np.uint8))
    (hidden / "notes.txt").write_text("x")
    assert not is_supported(hidden)
    with pytest.raises(InputError, match=r"no \.tif/\.tiff/\.png slices"):
        read_volume(hidden)

    upper = tmp_path / "upper"
    upper.mkdir()
    tifffile.imwrite(upper / "Z0.TIF", np.ones((3, 3), np.uint8))
    assert is_supported(upper)
    assert read_volume(upper).shape == (1, 3, 3)
