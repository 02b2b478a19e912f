"""Blockwise fossils: the out-of-core path equals the in-memory one, object by object."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_microfossil._progress import drain
from napari_microfossil.errors import InputError
from napari_microfossil.fossils import extract_fossils
from napari_microfossil.fossils.blocks import iter_label_blocks
from napari_microfossil.fossils.blockwise import (
    extract_fossils_blockwise,
    iter_extract_fossils_blockwise,
)
from napari_microfossil.fossils.faces import face_pairs, in_plane_shifts

_blockwise = extract_fossils_blockwise  # measures in a thread by default (workers=1)


def _ball(shape, centre, radii):
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (
        ((z - centre[0]) / radii[0]) ** 2
        + ((y - centre[1]) / radii[1]) ** 2
        + ((x - centre[2]) / radii[2]) ** 2
    ) <= 1.0


def random_labels(seed: int, shape=(64, 64, 64)) -> np.ndarray:
    """Classes 0..2: ellipsoids (some hollow, some touching pairs), specks, and
    diagonal-only contacts, placed anywhere, so that many cross block faces and corners."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint8)
    for _ in range(14):
        c = rng.uniform(0, shape)
        r = rng.uniform(2.5, 8.0, 3)
        body = _ball(shape, c, r)
        if rng.random() < 0.3:  # a hollow shell: a cavity to fill, with a speck inside
            body &= ~_ball(shape, c, np.maximum(r - 2.0, 0.5))
            lab[tuple(np.clip(c.astype(int), 0, np.array(shape) - 1))] = 1
        lab[body] = 1
        if rng.random() < 0.3:  # a touching twin, for the split
            c2 = c + rng.choice([-1, 1], 3) * r * 1.6
            lab[_ball(shape, c2, r)] = 1
    for _ in range(6):
        lab[_ball(shape, rng.uniform(0, shape), rng.uniform(2, 5, 3))] = 2
    specks = rng.random(shape) < 0.004
    lab[specks] = 1
    # Voxels joined only by an edge or a corner, across a block corner (blocks of 16).
    if min(shape) > 33:
        lab[15, 15, 15] = lab[16, 16, 16] = 1
        lab[31, 32, 17] = lab[32, 31, 17] = 1
    return lab


def _assert_same(mem, blk):
    inst = np.asarray(blk.instances[...])
    assert mem.ids == blk.ids
    np.testing.assert_array_equal(inst, mem.instances)
    assert len(mem.rows) == len(blk.rows)
    for a, b in zip(mem.rows, blk.rows, strict=True):
        assert set(a) == set(b)
        for key in a:
            if isinstance(a[key], float) and math.isnan(a[key]):
                assert math.isnan(b[key]), key
            else:
                assert a[key] == b[key], (a["id"], key, a[key], b[key])


@pytest.mark.parametrize(
    ("seed", "connectivity", "workers"), [(0, 6, 1), (1, 18, 1), (2, 26, 1), (9, 26, 2)]
)
def test_blockwise_equals_in_memory(tmp_path, seed, connectivity, workers):
    lab = random_labels(seed)
    image = np.random.default_rng(seed).integers(0, 60000, lab.shape).astype(np.uint16)
    kw = dict(connectivity=connectivity, min_voxels=3, spacing=(1.5, 1.0, 1.0), image=image)
    mem = extract_fossils(lab, **kw)
    blk = _blockwise(lab, tmp_path / "instances.zarr", block=16, workers=workers, **kw)
    assert len(mem) > 10
    _assert_same(mem, blk)
    assert not [p for p in tmp_path.iterdir() if p.name != "instances.zarr"]  # temp removed


@pytest.mark.parametrize(
    ("seed", "shape", "block", "options"),
    [
        (3, (48, 64, 40), 16, {"split": True}),
        (4, (40, 50, 37), (16, 12, 20), {"split": True, "connectivity": 6}),
        (5, (40, 50, 37), (7, 16, 9), {"fill_cavities": False, "connectivity": 18}),
        (6, (33, 64, 20), 16, {"min_volume_um3": 40.0, "split": True}),
        (7, (64, 64, 64), (64, 64, 16), {"min_voxels": 2}),
    ],
)
def test_blockwise_equals_in_memory_split_shapes_blocks(tmp_path, seed, shape, block, options):
    lab = random_labels(seed, shape)
    mem = extract_fossils(lab, **options)
    blk = _blockwise(lab, tmp_path / "i.zarr", block=block, **options)
    _assert_same(mem, blk)


def test_cavity_and_speck_inside_a_shell_across_blocks(tmp_path):
    shape = (48, 48, 48)
    shell = _ball(shape, (24, 24, 24), (14, 14, 14)) & ~_ball(shape, (24, 24, 24), (10, 10, 10))
    lab = shell.astype(np.uint8)
    lab[24, 24, 24] = 1  # a speck in the cavity: a component of its own, met after the shell
    mem = extract_fossils(lab, min_voxels=2)
    blk = _blockwise(lab, tmp_path / "i.zarr", block=16, min_voxels=2)
    _assert_same(mem, blk)
    inst = blk.instances
    assert len(blk) == 1 and inst[24, 24, 30] == 1  # the cavity is filled...
    assert inst[24, 24, 24] == 0  # ...but not over the speck, too small to keep


def test_progress_stages_and_lazy_instances(tmp_path):
    lab = random_labels(8, (32, 32, 32))
    gen = iter_extract_fossils_blockwise(lab, tmp_path / "i.zarr", block=16, workers=1)
    stages = []
    try:
        while True:
            stages.append(next(gen).stage)
    except StopIteration as stop:
        table = stop.value
    assert stages[0] == "label" and "measure" in stages and stages[-1] == "write"
    assert not isinstance(table.instances, np.ndarray)  # read from the store, lazily
    assert table.instances.dtype == np.uint32 and table.instances.shape == lab.shape


def test_face_pairs_follow_the_connectivity():
    a = np.zeros((3, 3), np.uint32)
    b = np.zeros((3, 3), np.uint32)
    a[1, 1] = 5
    b[2, 2] = 7  # a corner neighbour
    b[1, 2] = 8  # an edge neighbour
    b[1, 1] = 9  # a face neighbour
    got = {
        c: {tuple(p) for p in face_pairs(a, b, in_plane_shifts(c)).tolist()} for c in (6, 18, 26)
    }
    assert got[6] == {(5, 9)}
    assert got[18] == {(5, 9), (5, 8)}
    assert got[26] == {(5, 9), (5, 8), (5, 7)}


def test_components_are_ranked_in_raster_order(tmp_path):
    lab = np.zeros((20, 20, 20), np.uint8)
    lab[12:18, 2:4, 2:4] = 1  # first met last, but spans two blocks
    lab[1:3, 15:19, 15:19] = 1
    lab[5:15, 5, 5] = 1
    comps = drain(iter_label_blocks(lab, 1, connectivity=26, block=(8, 8, 8), workdir=tmp_path))
    assert comps.n == 3
    assert comps.count.tolist() == [0, 32, 10, 24]
    assert comps.bbox(3) == (slice(12, 18), slice(2, 4), slice(2, 4))


def test_blockwise_checks_its_arguments(tmp_path):
    lab = np.zeros((8, 8, 8), np.uint8)
    with pytest.raises(InputError, match="labels"):
        _blockwise(lab.astype(float), tmp_path / "i.zarr")
    with pytest.raises(InputError, match="block"):
        _blockwise(lab, tmp_path / "i.zarr", block=(4, 4))
    with pytest.raises(InputError, match="connectivity"):
        _blockwise(lab, tmp_path / "i.zarr", connectivity=8)
    with pytest.raises(InputError, match="image"):
        _blockwise(lab, tmp_path / "i.zarr", image=np.zeros((8, 8, 7)))
    (tmp_path / "i.zarr").mkdir()
    with pytest.raises(InputError, match="already exists"):
        _blockwise(lab, tmp_path / "i.zarr")
    with pytest.raises(InputError, match="workers"):
        _blockwise(lab, tmp_path / "j.zarr", workers=0)
    empty = _blockwise(lab, tmp_path / "i.zarr", overwrite=True, block=4)
    assert len(empty) == 0 and not np.asarray(empty.instances[...]).any()


# ---------------------------------------------------------------- files: workflow and CLI


def _write_zarr(path, data, chunks=(8, 16, 16), spacing=(2.0, 1.0, 1.0), class_names=None):
    from napari_microfossil.io.store import create_output

    out = create_output(
        path, data.shape, data.dtype, spacing=spacing, chunks=chunks, class_names=class_names
    )
    for z0, z1 in out.todo():
        out.write(z0, data[z0:z1])
    return out.finish()


def test_read_labels_reads_zarr_lazily(tmp_path):
    from napari_microfossil.io import read_labels

    lab = random_labels(10, (20, 24, 28))
    vol = read_labels(_write_zarr(tmp_path / "l.zarr", lab))
    assert vol.lazy and not isinstance(vol.data, np.ndarray)
    np.testing.assert_array_equal(vol.data[3:9, 2:20, 5:6], lab[3:9, 2:20, 5:6])
    signed = read_labels(_write_zarr(tmp_path / "s.zarr", lab.astype(np.int16) - 1))
    assert signed.dtype == np.uint16 and signed.lazy
    with pytest.raises(InputError, match="non-negative"):
        signed.data[0:5]  # the check happens as it is read
    assert not read_labels(tmp_path / "l.zarr", lazy=False).lazy


def test_fossils_zarr_input_writes_instances_zarr_like_the_tif_path(tmp_path):
    from napari_microfossil.io import read_labels, write_tiff
    from napari_microfossil.workflows.fossils import FossilsRequest, iter_fossils

    lab = random_labels(11, (40, 48, 36))
    scan = (lab.astype(np.uint16) * 1000 + 5).astype(np.uint16)
    names = ("background", "fossil", "pore")
    write_tiff(tmp_path / "l.tif", lab, spacing=(2.0, 1.0, 1.0), class_names=names)
    _write_zarr(tmp_path / "l.zarr", lab, class_names=names)
    _write_zarr(tmp_path / "scan.zarr", scan)
    options = dict(min_voxels=4, crops=True, mesh_format="ply")
    mem = drain(iter_fossils(FossilsRequest(tmp_path / "l.tif", tmp_path / "a", **options)))
    req = FossilsRequest(
        tmp_path / "l.zarr", tmp_path / "b", image=tmp_path / "scan.zarr", **options
    )
    blk = drain(iter_fossils(req))
    assert blk.export.instances == tmp_path / "b" / "instances.zarr"
    assert not (tmp_path / "b" / "instances.tif").exists()
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "crops",
        "fossils.csv",
        "instances.zarr",
        "meshes",
    ]
    inst = read_labels(tmp_path / "b" / "instances.zarr")
    assert inst.spacing == (2.0, 1.0, 1.0)
    np.testing.assert_array_equal(
        inst.data[...], read_labels(tmp_path / "a" / "instances.tif").data
    )
    assert sorted(p.name for p in (tmp_path / "b" / "meshes").iterdir()) == sorted(
        p.name for p in (tmp_path / "a" / "meshes").iterdir()
    )
    assert len(list((tmp_path / "b" / "crops").iterdir())) == len(blk.table) > 5
    # The same table but for the scan's intensity, which only the zarr run had.
    for a, b in zip(mem.table.rows, blk.table.rows, strict=True):
        assert {k: v for k, v in a.items() if k != "mean_intensity"} == {
            k: v for k, v in b.items() if k != "mean_intensity"
        }
        assert b["mean_intensity"] == pytest.approx(scan[inst.data[...] == b["id"]].mean())
    (tmp_path / "b" / "fossils.csv").unlink()
    with pytest.raises(InputError, match=r"instances\.zarr.*already exists"):
        FossilsRequest(tmp_path / "l.zarr", tmp_path / "b")


def test_fossils_zarr_input_refuses_a_scan_as_labels(tmp_path):
    from napari_microfossil.workflows.fossils import FossilsRequest, iter_fossils

    scan = np.full((16, 16, 16), 300, np.uint16)
    _write_zarr(tmp_path / "scan.zarr", scan)
    with pytest.raises(InputError, match="not a class label volume"):
        drain(iter_fossils(FossilsRequest(tmp_path / "scan.zarr", tmp_path / "o")))
    assert not (tmp_path / "o").exists()  # nothing left behind, not even the folder


def test_cli_fossils_on_zarr(tmp_path, capsys):
    from napari_microfossil.cli import main

    _write_zarr(tmp_path / "l.zarr", random_labels(12, (24, 32, 32)))
    rc = main(["fossils", str(tmp_path / "l.zarr"), "-o", str(tmp_path / "f"), "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert f"instances  {tmp_path / 'f' / 'instances.zarr'}" in out
    assert (tmp_path / "f" / "fossils.csv").exists()


def test_cached_crops_read_what_slicing_reads():
    from napari_microfossil.fossils.crops import CachedCrops

    rng = np.random.default_rng(3)
    data = rng.integers(0, 1000, (23, 31, 17)).astype(np.uint16)
    cached = CachedCrops(data, block=(4, 8, 5), cache_bytes=3 * 4 * 8 * 5 * 2)  # 3 blocks
    for _ in range(200):
        lo = rng.integers(0, data.shape)
        hi = lo + rng.integers(0, 12, 3)
        key = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        np.testing.assert_array_equal(cached[key], data[key])
    assert cached._bytes <= 3 * 4 * 8 * 5 * 2
    np.testing.assert_array_equal(cached[3, :, 2:4], data[3, :, 2:4])  # other keys: direct


def test_edits_of_an_on_disk_table_work_on_a_copy(tmp_path):
    lab = random_labels(13, (32, 32, 32))
    table = _blockwise(lab, tmp_path / "i.zarr", block=16, min_voxels=5)
    first, second = table.ids[:2]
    fewer = table.delete([first])
    assert isinstance(fewer.instances, np.ndarray) and not (fewer.instances == first).any()
    assert np.asarray(table.instances[...] == first).any()  # the store is untouched
    with pytest.raises(InputError, match="in place"):
        table.merge([first, second], copy=False)
