"""Multiscale pyramids of scans (io.pyramid) and ``microfossil pyramid``."""

import json
import os

import numpy as np
import pytest

from napari_microfossil.cli import main
from napari_microfossil.errors import InputError
from napari_microfossil.io import create_output, read_volume, store, write_tiff
from napari_microfossil.io import pyramid as pyr


@pytest.fixture(autouse=True)
def _tiny_chunks(monkeypatch, tmp_path):
    # One or two planes per chunk: every level is written in many slabs.
    monkeypatch.setattr(store, "CHUNK_BYTES", 200)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _scan(rng, shape=(9, 21, 14)):
    return rng.integers(0, 60000, shape, dtype=np.uint16)


def _reference(a, *, labels=False, max_side):
    """Every level made from the whole previous level in one call."""
    levels = [a]
    while max(levels[-1].shape) > max_side:
        levels.append(pyr.downsample(levels[-1], labels=labels))
    return levels


def test_level_shapes_halve_each_axis_longer_than_one_voxel():
    assert pyr.level_shapes((5, 1100, 600)) == [(5, 1100, 600), (3, 550, 300), (2, 275, 150)]
    assert pyr.level_shapes((1, 9, 4), max_side=2) == [(1, 9, 4), (1, 5, 2), (1, 3, 1), (1, 2, 1)]
    assert pyr.level_shapes((4, 4, 4), max_side=4) == [(4, 4, 4)]
    with pytest.raises(ValueError, match="max_side"):
        pyr.level_shapes((4, 4, 4), max_side=0)


def test_downsample_is_the_mean_of_each_block_with_odd_edges_kept():
    a = np.arange(3 * 2 * 3, dtype=np.uint16).reshape(3, 2, 3)
    out = pyr.downsample(a)
    assert out.shape == (2, 1, 2) and out.dtype == np.uint16
    # block z 0:2, y 0:2, x 0:2 -> values 0,1,3,4,6,7,9,10: mean 5
    assert out[0, 0, 0] == 5
    # the last x column alone: 2,5,8,11 -> 6.5, rounded half up
    assert out[0, 0, 1] == 7
    # the last z plane alone: 12,13,15,16 -> 14
    assert out[1, 0, 0] == 14
    f = np.ones((2, 2, 2), np.float32) * np.float32(0.25)
    assert pyr.downsample(f).dtype == np.float32 and pyr.downsample(f)[0, 0, 0] == 0.25


def test_downsample_labels_takes_the_mode_and_prefers_objects_in_ties():
    lab = np.zeros((2, 2, 4), np.uint8)
    lab[:, :, 0] = 2  # block 0: four 2s, four 0s -> tie, goes to 2
    lab[0, 0, 2] = 1  # block 1: one 1, seven 0s -> 0
    out = pyr.downsample(lab, labels=True)
    assert out.tolist() == [[[2, 0]]]
    rng = np.random.default_rng(0)
    many = rng.integers(0, 5, (7, 9, 5), dtype=np.uint8)
    assert set(np.unique(pyr.downsample(many, labels=True))) <= set(np.unique(many))


def test_pyramid_of_a_tiff_copies_level_0_and_reduces_slab_by_slab(tmp_path):
    a = _scan(np.random.default_rng(1))
    write_tiff(tmp_path / "scan.tif", a, spacing=(3.0, 1.5, 1.5))
    stages = []
    gen = pyr.iter_build_pyramid(tmp_path / "scan.tif", max_side=5)
    try:
        while True:
            stages.append(next(gen))
    except StopIteration as stop:
        where = stop.value
    assert where == tmp_path / "scan.tif.pyramid.zarr"
    per_level = [sum(p.stage == f"level {k}" for p in stages) for k in range(3)]
    assert per_level[:2] == [9, 5]  # one plane per slab
    opened = pyr.open_pyramid(tmp_path / "scan.tif")
    want = _reference(a, max_side=5)
    assert [lvl.shape for lvl in opened.levels] == [w.shape for w in want]
    for lvl, w in zip(opened.levels, want, strict=True):
        np.testing.assert_array_equal(lvl[...], w)
    assert opened.scales[:3] == [(3.0, 1.5, 1.5), (6.0, 3.0, 3.0), (12.0, 6.0, 6.0)]
    # an OME-Zarr others read: one scale transform per level, level 0 at the voxel size
    ome = json.loads((where / "zarr.json").read_text())["attributes"]["ome"]
    datasets = ome["multiscales"][0]["datasets"]
    assert [d["path"] for d in datasets] == [str(k) for k in range(len(want))]
    assert datasets[1]["coordinateTransformations"] == [{"type": "scale", "scale": [6.0, 3.0, 3.0]}]
    vol = read_volume(where)
    assert vol.shape == a.shape and vol.spacing == pytest.approx((3.0, 1.5, 1.5))


def test_an_uncompressed_tiff_is_copied_with_plain_reads(tmp_path):
    import tifffile

    a = _scan(np.random.default_rng(10), (5, 12, 9))
    mm = tifffile.memmap(tmp_path / "scan.tif", shape=a.shape, dtype=a.dtype)
    mm[:] = a
    mm.flush()
    del mm
    assert isinstance(read_volume(tmp_path / "scan.tif", lazy=True).data, np.memmap)
    for z0, z1 in [(0, 2), (3, 5)]:
        got = pyr._planes(read_volume(tmp_path / "scan.tif", lazy=True).data, z0, z1)
        assert not isinstance(got, np.memmap)
        np.testing.assert_array_equal(got, a[z0:z1])
    pyr.build_pyramid(tmp_path / "scan.tif", max_side=4)
    np.testing.assert_array_equal(pyr.open_pyramid(tmp_path / "scan.tif").levels[0][...], a)


def test_pyramid_of_a_zarr_scan_uses_the_scan_as_level_0(tmp_path):
    a = _scan(np.random.default_rng(2))
    out = create_output(tmp_path / "scan.zarr", a.shape, a.dtype, spacing=(2.0, 1.0, 1.0))
    for z0, z1 in out.todo():
        out.write(z0, a[z0:z1])
    out.finish()
    where = pyr.build_pyramid(tmp_path / "scan.zarr", max_side=8)
    assert not (where / "0").exists()  # nothing copied
    opened = pyr.open_pyramid(tmp_path / "scan.zarr")
    assert opened.levels[0].base.store_path.store.root == (tmp_path / "scan.zarr")
    for lvl, w in zip(opened.levels, _reference(a, max_side=8), strict=True):
        np.testing.assert_array_equal(lvl[...], w)
    # the store alone reads as its finest level, at that level's voxel size
    assert read_volume(where).spacing == pytest.approx((4.0, 2.0, 2.0))


def test_a_small_zarr_scan_gets_a_one_level_pyramid(tmp_path):
    a = _scan(np.random.default_rng(2), (3, 4, 5))
    out = create_output(tmp_path / "scan.zarr", a.shape, a.dtype)
    out.write(0, a)
    out.finish()
    where = pyr.build_pyramid(tmp_path / "scan.zarr")
    [level] = pyr.open_store(where).levels
    np.testing.assert_array_equal(level[...], a)


def test_label_volumes_are_reduced_by_their_mode(tmp_path):
    lab = np.random.default_rng(3).integers(0, 3, (6, 17, 10)).astype(np.uint8)
    write_tiff(tmp_path / "lab.tif", lab, class_names=("background", "fossil", "pore"))
    pyr.build_pyramid(tmp_path / "lab.tif", max_side=4)
    opened = pyr.open_pyramid(tmp_path / "lab.tif")
    assert opened.labels
    for lvl, w in zip(opened.levels, _reference(lab, labels=True, max_side=4), strict=True):
        np.testing.assert_array_equal(lvl[...], w)


def test_a_fresh_pyramid_is_reused_and_a_changed_scan_rebuilds_it(tmp_path):
    rng = np.random.default_rng(4)
    scan = tmp_path / "scan.tif"
    write_tiff(scan, _scan(rng), spacing=1.0)
    where = pyr.build_pyramid(scan, max_side=8)
    stamp = (where / "zarr.json").stat().st_mtime_ns
    assert pyr.build_pyramid(scan, max_side=8) == where
    assert (where / "zarr.json").stat().st_mtime_ns == stamp  # not rebuilt
    assert pyr.find_pyramid(scan) == where
    # the same shape written again, later: stale
    b = _scan(rng)
    write_tiff(scan, b, spacing=1.0, overwrite=True)
    later = os.stat(where / "zarr.json").st_mtime + 5
    os.utime(scan, (later, later))
    assert pyr.find_pyramid(scan) is None
    pyr.build_pyramid(scan, max_side=8)
    np.testing.assert_array_equal(pyr.open_pyramid(scan).levels[1][...], pyr.downsample(b))
    # another shape under the same name: stale whatever the times say
    write_tiff(scan, _scan(rng, (5, 21, 14)), spacing=1.0, overwrite=True)
    os.utime(scan, (0, 0))
    assert pyr.find_pyramid(scan) is None


def test_a_killed_build_leaves_no_half_pyramid(tmp_path):
    scan = tmp_path / "scan.tif"
    write_tiff(scan, _scan(np.random.default_rng(5)), spacing=1.0)
    gen = pyr.iter_build_pyramid(scan, max_side=4)
    next(gen)
    next(gen)
    gen.close()  # a cancel; a kill leaves only a dot-named temp folder, removed later
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.tif"]
    assert pyr.find_pyramid(scan) is None


def test_an_unwritable_scan_folder_sends_the_pyramid_to_the_cache(tmp_path, monkeypatch):
    scan = tmp_path / "scan.tif"
    write_tiff(scan, _scan(np.random.default_rng(6)), spacing=1.0)
    real = os.access
    monkeypatch.setattr(
        pyr.os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real(p, mode)
    )
    where = pyr.build_pyramid(scan, max_side=8)
    assert where == pyr.cache_path(scan)
    assert (tmp_path / "cache" / "napari-microfossil" / "pyramids") in where.parents
    assert not pyr.beside_path(scan).exists()
    assert pyr.find_pyramid(scan) == where


def test_a_folder_of_slices_gets_a_pyramid(tmp_path):
    import tifffile

    a = _scan(np.random.default_rng(7), (4, 12, 10))
    (tmp_path / "slices").mkdir()
    for z, plane in enumerate(a):
        tifffile.imwrite(tmp_path / "slices" / f"s{z:03d}.tif", plane)
    where = pyr.build_pyramid(tmp_path / "slices", max_side=6)
    assert where == tmp_path / "slices.pyramid.zarr"
    np.testing.assert_array_equal(
        pyr.open_pyramid(tmp_path / "slices").levels[1][...], pyr.downsample(a)
    )


def test_a_store_not_made_by_the_tool_is_never_replaced(tmp_path):
    scan = tmp_path / "scan.tif"
    write_tiff(scan, _scan(np.random.default_rng(8)), spacing=1.0)
    other = tmp_path / "scan.tif.pyramid.zarr"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not a pyramid made by this tool"):
        pyr.build_pyramid(scan)
    assert (other / "keep.txt").exists()
    with pytest.raises(InputError, match="not a pyramid"):
        pyr.open_store(other)


def test_cli_builds_reuses_and_reports_errors_on_one_line(tmp_path, capsys):
    scan = tmp_path / "scan.tif"
    write_tiff(scan, _scan(np.random.default_rng(9)), spacing=1.0)
    assert main(["pyramid", str(scan), "--max-side", "8", "--quiet"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(tmp_path / "scan.tif.pyramid.zarr")
    assert len(pyr.open_store(out).levels) == 3
    assert main(["pyramid", str(scan), "-o", str(tmp_path / "p.zarr"), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "p.zarr")
    assert main(["pyramid", str(tmp_path / "missing.tif")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("microfossil pyramid: error:") and "\n" not in err
    assert main(["pyramid", str(scan), "--max-side", "0"]) == 2
    assert "--max-side" in capsys.readouterr().err
