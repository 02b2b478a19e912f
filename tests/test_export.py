"""Tests for napari_microfossil.fossils.export: files written for each fossil, read back."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
import trimesh

from napari_microfossil._progress import Progress
from napari_microfossil.errors import InputError
from napari_microfossil.fossils import FOSSIL_COLUMNS, extract_fossils
from napari_microfossil.fossils.export import (
    FILE_COLUMNS,
    export_fossils,
    fossil_stem,
    iter_export_fossils,
    write_fossils_csv,
)
from napari_microfossil.io import read_volume

SPACING = (2.0, 1.0, 0.5)


def ball(shape, centre, r_um, spacing=SPACING) -> np.ndarray:
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    d = sum(((g - c) * s) ** 2 for g, c, s in zip((z, y, x), centre, spacing, strict=True))
    return d <= r_um**2


@pytest.fixture(scope="module")
def scene():
    """Two fossils (a big ball and a box at the scan's edge) and a uint16 scan."""
    shape = (16, 30, 60)
    labels = ball(shape, (7.5, 12.0, 20.0), 10.0).astype(np.uint8)
    labels[10:16, 22:26, 50:60] = 1
    rng = np.random.default_rng(0)
    image = rng.integers(100, 1000, size=shape, dtype=np.uint16)
    table = extract_fossils(labels, spacing=SPACING, image=image)
    assert len(table) == 2
    return table, image


def read_voxel_size(path):
    """(z, y, x) voxel size from ImageJ metadata and the X/Y resolution tags."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        x_res = page.tags["XResolution"].value
        y_res = page.tags["YResolution"].value
        z = tif.imagej_metadata["spacing"]
        return (float(z), y_res[1] / y_res[0], x_res[1] / x_res[0])


@pytest.mark.parametrize("fmt", ["stl", "ply", "obj"])
def test_mesh_round_trip(scene, tmp_path, fmt):
    table, _ = scene
    result = export_fossils(table, tmp_path, mesh_format=fmt, crops=False, write_instances=False)
    assert set(result.meshes) == {1, 2}
    for row in table.rows:
        path = tmp_path / "meshes" / f"fossil_{row['id']:04d}.{fmt}"
        assert result.meshes[row["id"]] == path
        mesh = trimesh.load(path, file_type=fmt, force="mesh")
        assert mesh.is_watertight
        assert mesh.volume == pytest.approx(row["volume_um3"], rel=0.05)
        # (x, y, z) in µm; the surface lies half a voxel outside the outer voxel centres.
        lo = np.array([row["bbox_z0"], row["bbox_y0"], row["bbox_x0"]]) - 0.5
        hi = np.array([row["bbox_z1"], row["bbox_y1"], row["bbox_x1"]]) - 0.5
        np.testing.assert_allclose(mesh.bounds[0], (lo * SPACING)[::-1], atol=1e-4)
        np.testing.assert_allclose(mesh.bounds[1], (hi * SPACING)[::-1], atol=1e-4)


def test_crops_with_image(scene, tmp_path):
    table, image = scene
    margin = 3
    result = export_fossils(table, tmp_path, image=image, mesh_format=None, margin=margin)
    assert result.meshes == {} and not (tmp_path / "meshes").exists()
    for row in table.rows:
        fid = row["id"]
        path = tmp_path / "crops" / f"{fossil_stem(fid)}.tif"
        assert result.crops[fid] == path
        data = tifffile.imread(path)
        start = np.array([row["bbox_z0"], row["bbox_y0"], row["bbox_x0"]])
        stop = np.array([row["bbox_z1"], row["bbox_y1"], row["bbox_x1"]])
        lo = np.maximum(start - margin, 0)
        hi = np.minimum(stop + margin, image.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        assert data.shape == (hi[0] - lo[0], 2, hi[1] - lo[1], hi[2] - lo[2])
        assert data.dtype == image.dtype
        np.testing.assert_array_equal(data[:, 0], image[box])
        np.testing.assert_array_equal(data[:, 1] > 0, table.instances[box] == fid)
        assert data[:, 1].max() == np.iinfo(np.uint16).max
        assert read_voxel_size(path) == pytest.approx(SPACING)


def test_crops_without_image_are_masks(scene, tmp_path):
    table, _ = scene
    export_fossils(table, tmp_path, mesh_format=None, margin=0, write_instances=False)
    row = table.rows[0]
    data = tifffile.imread(tmp_path / "crops" / "fossil_0001.tif")
    box = tuple(slice(row[f"bbox_{a}0"], row[f"bbox_{a}1"]) for a in ("z", "y", "x"))
    assert data.dtype == np.uint8 and data.ndim == 3
    np.testing.assert_array_equal(data, (table.instances[box] == 1) * 255)
    vol = read_volume(tmp_path / "crops" / "fossil_0001.tif")
    assert vol.spacing == pytest.approx(SPACING)
    assert vol.metadata["fossil_id"] == 1
    assert vol.metadata["crop_start_zyx"] == [row["bbox_z0"], row["bbox_y0"], row["bbox_x0"]]


def test_csv_and_instances(scene, tmp_path):
    table, image = scene
    result = export_fossils(table, tmp_path, image=image)
    with open(result.csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["id"]) for r in rows] == [1, 2]
    assert tuple(rows[0]) == (*FOSSIL_COLUMNS, *FILE_COLUMNS)
    assert rows[0]["mesh_file"] == "meshes/fossil_0001.stl"
    assert rows[1]["crop_file"] == "crops/fossil_0002.tif"
    assert int(rows[0]["voxels"]) == table.rows[0]["voxels"]
    assert float(rows[0]["volume_um3"]) == pytest.approx(table.rows[0]["volume_um3"])
    assert rows[1]["touches_border"] == "true"
    inst = read_volume(tmp_path / "instances.tif")
    assert inst.spacing == pytest.approx(SPACING) and inst.unit == "µm"
    np.testing.assert_array_equal(inst.load(), table.instances)
    assert inst.dtype == table.instances.dtype
    assert set(result.paths) == {
        tmp_path / "fossils.csv",
        tmp_path / "instances.tif",
        *(tmp_path / "meshes" / f"fossil_000{i}.stl" for i in (1, 2)),
        *(tmp_path / "crops" / f"fossil_000{i}.tif" for i in (1, 2)),
    }


def test_ids_subset_and_progress(scene, tmp_path):
    table, _ = scene
    gen = iter_export_fossils(table, tmp_path, ids=[2], crops=False)
    records = []
    while True:
        try:
            records.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert all(isinstance(p, Progress) for p in records)
    assert [p.done for p in records if p.stage == "export"] == [0, 1]
    assert set(result.meshes) == {2}
    assert sorted(p.name for p in (tmp_path / "meshes").iterdir()) == ["fossil_0002.stl"]
    with open(result.csv, newline="", encoding="utf-8") as fh:
        assert [r["id"] for r in csv.DictReader(fh)] == ["2"]
    with pytest.raises(InputError, match="ids"):
        export_fossils(table, tmp_path / "other", ids=[7])


def test_refuses_to_overwrite(scene, tmp_path):
    table, _ = scene
    export_fossils(table, tmp_path, crops=False)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(InputError, match=r"fossils\.csv.*already exists.*overwrite"):
        export_fossils(table, tmp_path, crops=False)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "crops").exists()
    result = export_fossils(table, tmp_path, crops=False, overwrite=True)
    assert result.csv.exists()
    # Only the files written are listed; no temporary files are left behind.
    assert {p for p in tmp_path.rglob("*") if p.is_file()} == set(result.paths)


def test_bad_mesh_format_suggests(scene, tmp_path):
    table, _ = scene
    with pytest.raises(InputError, match=r"mesh_format.*'stk'.*did you mean 'stl'"):
        export_fossils(table, tmp_path, mesh_format="stk")
    with pytest.raises(InputError, match="margin"):
        export_fossils(table, tmp_path, margin=-1)
    with pytest.raises(InputError, match="image"):
        export_fossils(table, tmp_path, image=np.zeros((2, 2, 2)))
    assert not any(tmp_path.iterdir())


def test_fossil_stem_grows_past_9999():
    assert fossil_stem(7) == "fossil_0007"
    assert fossil_stem(12345) == "fossil_12345"


def test_write_fossils_csv_formats(tmp_path):
    rows = [{"id": 1, "a": 0.1, "b": float("nan"), "c": True}, {"id": 2, "a": 1e12}]
    path = write_fossils_csv(tmp_path / "t.csv", rows, ("id", "a", "b", "c"))
    assert path.read_text(encoding="utf-8").splitlines() == [
        "id,a,b,c",
        "1,0.1,,true",
        "2,1e+12,,",
    ]
