"""Corrected slices survive a new segmentation, bit for bit (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microfossil.errors import InputError
from napari_microfossil.workflows.keep import check_kept, keep_in_slab, keep_planes


@pytest.fixture
def volumes():
    rng = np.random.default_rng(0)
    new = rng.integers(0, 3, (12, 10, 9), dtype=np.uint8)
    corrected = rng.integers(0, 3, (12, 10, 9), dtype=np.uint8)
    return new, corrected


KEEP = {"z": [0, 5, 11], "y": [3], "x": [8]}


def _expected(new, corrected, slices):
    out = new.copy()
    for z in slices.get("z", []):
        out[z] = corrected[z]
    for y in slices.get("y", []):
        out[:, y] = corrected[:, y]
    for x in slices.get("x", []):
        out[:, :, x] = corrected[:, :, x]
    return out


def test_kept_planes_are_the_corrected_ones_and_nothing_else_changes(volumes):
    new, corrected = volumes
    want = _expected(new, corrected, KEEP)
    got = new.copy()
    assert keep_planes(got, corrected, KEEP) == 5
    np.testing.assert_array_equal(got, want)
    untouched = np.ones(new.shape, bool)
    untouched[[0, 5, 11]] = False
    untouched[:, 3] = False
    untouched[:, :, 8] = False
    np.testing.assert_array_equal(got[untouched], new[untouched])


@pytest.mark.parametrize("slab", [1, 4, 5, 12])
def test_slab_by_slab_gives_the_same_as_whole(volumes, slab):
    new, corrected = volumes
    out = new.copy()
    for z0 in range(0, new.shape[0], slab):
        part = out[z0 : z0 + slab].copy()
        keep_in_slab(part, z0, corrected, KEEP)
        out[z0 : z0 + slab] = part
    np.testing.assert_array_equal(out, _expected(new, corrected, KEEP))


def test_into_a_zarr_array(volumes, tmp_path):
    zarr = pytest.importorskip("zarr")
    new, corrected = volumes
    z = zarr.open_array(
        str(tmp_path / "l.zarr"), mode="w", shape=new.shape, dtype="u1", chunks=(4, 4, 4)
    )
    z[...] = new
    keep_planes(z, corrected, KEEP)
    np.testing.assert_array_equal(z[...], _expected(new, corrected, KEEP))


@pytest.mark.parametrize(
    ("slices", "message"),
    [
        ({"z": [12]}, "--keep-slices: z-slice 12 is outside the volume's 12 z-slices (0..11)"),
        ({"x": [-1]}, "--keep-slices: x-slice -1 is outside"),
        ({"q": [1]}, "--keep-slices: expected axes z, y or x, got 'q'"),
    ],
)
def test_bad_slices_are_refused(slices, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_kept(slices, (12, 10, 9))


def test_shapes_must_match(volumes):
    new, _ = volumes
    with pytest.raises(InputError, match="expected the segmentation's shape"):
        keep_planes(new, np.zeros((12, 10, 8), np.uint8), {"z": [1]})


# -- microfossil segment --keep / --keep-slices ----------------------------------------

SHAPE = (10, 40, 48)


@pytest.fixture
def corrected(tmp_path):
    from napari_microfossil.io import write_tiff

    data = np.full(SHAPE, 2, np.uint8)
    data[:, :, :5] = 1  # a pattern the model never gives
    return write_tiff(
        tmp_path / "corrected.tif", data, class_names=("background", "fossil", "pore")
    )


def _segment(scan, model_file, out, *extra):
    from napari_microfossil.cli import main

    argv = ["segment", str(scan), "-o", str(out), "--model", str(model_file)]
    return main([*argv, "--device", "cpu", "--quiet", *extra])


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_cli_keeps_the_corrected_planes_bit_exact(
    tmp_path, scan, model_file, corrected, suffix, capsys, monkeypatch
):
    import napari_microfossil.io.store as store
    from napari_microfossil.io import read_labels

    monkeypatch.setattr(store, "CHUNK_BYTES", 2 * 40 * 48)  # slabs of 2 planes
    assert _segment(scan, model_file, tmp_path / f"plain{suffix}") == 0
    spec = "z:0,3,9;y:7;x:47"
    assert (
        _segment(
            scan,
            model_file,
            tmp_path / f"kept{suffix}",
            "--keep",
            str(corrected),
            "--keep-slices",
            spec,
        )
        == 0
    )
    assert f"kept       z:0,3,9;y:7;x:47 of {corrected}" in capsys.readouterr().out
    plain = np.asarray(read_labels(tmp_path / f"plain{suffix}").data)
    kept = np.asarray(read_labels(tmp_path / f"kept{suffix}").data)
    truth = np.asarray(read_labels(corrected).data)
    want = _expected(plain, truth, {"z": [0, 3, 9], "y": [7], "x": [47]})
    np.testing.assert_array_equal(kept, want)
    assert not np.array_equal(plain, want)  # the test can fail


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--keep", "CORRECTED"], "--keep-slices: needed with --keep"),
        (["--keep-slices", "z:1"], "--keep: needed with --keep-slices"),
        (["--keep", "missing.tif", "--keep-slices", "z:1"], "--keep: missing.tif: no such file"),
        (["--keep", "CORRECTED", "--keep-slices", "z:10"], "--keep-slices: z-slice 10 is outside"),
        (["--keep", "CORRECTED", "--keep-slices", "q:1"], "--keep-slices: expected e.g."),
        (["--keep", "SMALL", "--keep-slices", "z:1"], "--keep: "),
    ],
)
def test_cli_keep_refusals_are_one_line(
    tmp_path, scan, model_file, corrected, capsys, extra, message, monkeypatch
):
    from napari_microfossil.io import write_tiff

    monkeypatch.chdir(tmp_path)
    small = write_tiff(tmp_path / "small.tif", np.zeros((2, 4, 4), np.uint8))
    extra = [{"CORRECTED": str(corrected), "SMALL": str(small)}.get(a, a) for a in extra]
    assert _segment(scan, model_file, tmp_path / "out.tif", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out.tif").exists()
