"""Property-based checks of the promise: for any input in a family (shapes, dtypes,
byte strings, option values), the tool either does the job exactly or refuses with one
InputError line; never another exception (issue 13)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_microfossil.errors import InputError
from napari_microfossil.io import read_labels, read_volume, write_tiff
from napari_microfossil.io.store import create_output, incomplete
from napari_microfossil.segmentation.tiling import check_tiling
from napari_microfossil.workflows.outputs import check_output

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

shapes = st.tuples(st.integers(1, 5), st.integers(1, 9), st.integers(1, 9))
dtypes = st.sampled_from(["uint8", "uint16", "int16", "uint32", "float32", "float64"])
spacings = st.tuples(*[st.floats(0.01, 100.0, allow_nan=False)] * 3)


def _volume(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


@FAST
@given(shape=shapes, dtype=dtypes, spacing=spacings, seed=st.integers(0, 2**16))
def test_tiff_round_trip_keeps_values_and_voxel_size(shape, dtype, spacing, seed):
    data = _volume(shape, dtype, seed)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "v.tif"
        write_tiff(path, data, spacing=spacing)
        vol = read_volume(path, lazy=False)
        got = np.asarray(vol.data)
    assert got.shape == shape
    np.testing.assert_array_equal(got.astype(data.dtype), data)
    np.testing.assert_allclose(vol.spacing, spacing, rtol=1e-5)


@FAST
@given(
    shape=st.tuples(st.integers(1, 12), st.integers(1, 20), st.integers(1, 20)),
    chunks=st.tuples(st.integers(1, 5), st.integers(1, 8), st.integers(1, 8)),
    order=st.randoms(use_true_random=False),
    stop_after=st.integers(0, 4),
)
def test_store_written_in_any_order_and_resumed_reads_back_exactly(
    shape, chunks, order, stop_after
):
    """Slabs written in any order, the run stopped after a few and resumed, give the
    volume exactly; until the last slab the store says it is incomplete."""
    data = _volume(shape, "uint8", sum(shape))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "l.zarr"
        out = create_output(path, shape, np.uint8, chunks=chunks, class_names=("a", "b"))
        slabs = out.todo()
        order.shuffle(slabs)
        for a, b in slabs[:stop_after]:
            out.write(a, data[a:b])
        again = create_output(path, shape, np.uint8, resume=True)
        assert sorted(again.todo()) == sorted(slabs[stop_after:])
        assert incomplete(path) is not None
        for a, b in again.todo():
            again.write(a, data[a:b])
        again.finish()
        assert incomplete(path) is None
        vol = read_labels(path)
        np.testing.assert_array_equal(np.asarray(vol.data), data)
        assert vol.class_names == ("a", "b")


@pytest.fixture(scope="module")
def tiff_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "scan.tif"
    write_tiff(path, _volume((6, 24, 24), "uint16", 1), spacing=(2.0, 1.0, 1.0))
    return path.read_bytes()


@FAST
@given(cut=st.floats(0.0, 1.0, exclude_max=True))
def test_a_truncated_tiff_reads_whole_or_is_refused_in_one_line(tiff_bytes, cut):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "cut.tif"
        path.write_bytes(tiff_bytes[: int(len(tiff_bytes) * cut)])
        try:
            vol = read_volume(path, lazy=True)
            got = np.asarray(vol.data[...])
        except InputError as exc:  # ReadError is an InputError
            assert "\n" not in str(exc) and str(path) in str(exc)
        else:
            assert got.shape == (6, 24, 24)


@FAST
@given(at=st.floats(0.0, 1.0, exclude_max=True), junk=st.binary(min_size=1, max_size=64))
def test_a_tiff_with_overwritten_bytes_reads_or_is_refused_in_one_line(tiff_bytes, at, junk):
    i = int(len(tiff_bytes) * at)
    spoilt = tiff_bytes[:i] + junk + tiff_bytes[i + len(junk) :]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "spoilt.tif"
        path.write_bytes(spoilt)
        try:
            vol = read_volume(path, lazy=True)
            np.asarray(vol.data[...])
        except InputError as exc:
            assert "\n" not in str(exc)


@FAST
@given(
    tile=st.one_of(
        st.integers(-64, 1024), st.floats(allow_nan=True), st.none(), st.text(max_size=3)
    ),
    overlap=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 2), st.text(max_size=3)
    ),
    batch=st.one_of(st.integers(-3, 64), st.booleans(), st.none(), st.floats(allow_nan=True)),
)
def test_tiling_options_are_accepted_or_refused_with_a_named_option(tile, overlap, batch):
    try:
        check_tiling(tile, overlap, batch)
    except InputError as exc:
        assert str(exc).split(":")[0] in ("tile", "overlap", "batch_size")
    else:
        assert tile is None or (isinstance(tile, int) and tile > 0 and tile % 32 == 0)
        assert 0.0 <= float(overlap) < 0.9


@FAST
@given(
    name=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"),
        min_size=1,
        max_size=40,
    ),
    overwrite=st.booleans(),
)
def test_any_output_name_is_accepted_or_refused_in_one_line(tmp_path_factory, name, overwrite):
    folder = tmp_path_factory.getbasetemp()
    try:
        check_output(folder / name, overwrite, "-o", suffixes=(".tif", ".tiff"))
    except InputError as exc:
        assert str(exc).startswith("-o: ") and "\n" not in str(exc)
    else:
        assert Path(name).suffix.lower() in (".tif", ".tiff")


@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 1, 1), (3, 4, 1), (1, 5, 1), (3, 1, 4)])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32"])
def test_a_volume_one_pixel_high_or_wide_keeps_its_shape(tmp_path, shape, dtype):
    """Found by the property above: tifffile wrote (Z, Y, 1) as one (Z, Y) page and read
    (Z, 1, 1) back as axes 'YQX'; a crop of a one-voxel-thin speck has such a shape."""
    data = _volume(shape, dtype, 3)
    write_tiff(tmp_path / "thin.tif", data)
    got = np.asarray(read_volume(tmp_path / "thin.tif", lazy=False).data)
    np.testing.assert_array_equal(got.astype(data.dtype), data)
