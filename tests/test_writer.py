"""Tests for the napari writers: Labels → TIFF, Surface → STL/PLY/OBJ, voxel size kept."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from napari_microfossil._napari.writer import surface_to_trimesh, write_labels, write_surface
from napari_microfossil.fossils.mesh import mask_to_mesh
from napari_microfossil.io import read_volume

SPACING = (2.0, 0.5, 0.5)


def test_write_labels_keeps_spacing_and_class_names(tmp_path):
    data = np.zeros((4, 6, 8), dtype=np.int32)  # napari paints into int32 layers
    data[1:3, 2:4, 3:6] = 2
    path = tmp_path / "labels.tif"
    meta = {
        "scale": SPACING,
        "units": ("micrometer",) * 3,
        "metadata": {"class_names": ["background", "fossil", "pore"]},
    }
    assert write_labels(str(path), data, meta) == [str(path)]
    vol = read_volume(path)
    np.testing.assert_array_equal(np.asarray(vol.data), data)
    assert vol.data.dtype == np.uint8
    assert vol.spacing == pytest.approx(SPACING)
    assert tuple(vol.class_names) == ("background", "fossil", "pore")


def test_write_labels_units_and_big_ids(tmp_path):
    data = np.zeros((2, 3, 4), dtype=np.int64)
    data[0, 0, 0] = 70000
    path = tmp_path / "ids.tif"
    write_labels(str(path), data, {"scale": (0.002, 0.001, 0.001), "units": ("mm",) * 3})
    vol = read_volume(path)
    assert np.asarray(vol.data).max() == 70000
    assert vol.spacing == pytest.approx((2.0, 1.0, 1.0))  # mm → µm


def test_write_labels_2d_and_negative(tmp_path):
    write_labels(str(tmp_path / "a.tif"), np.ones((3, 4), np.uint8), {"scale": (1.0, 1.0)})
    assert read_volume(tmp_path / "a.tif").shape == (1, 3, 4)
    with pytest.raises(ValueError, match="non-negative"):
        write_labels(str(tmp_path / "b.tif"), -np.ones((2, 3, 4), np.int32), {})
    assert not (tmp_path / "b.tif").exists()


@pytest.mark.parametrize("fmt", ["stl", "ply", "obj"])
def test_surface_round_trip_in_um(tmp_path, fmt):
    # A fossil mesh shown as a napari Surface: vertices (z, y, x) in µm, scale 1.
    mask = np.zeros((6, 8, 10), bool)
    mask[1:5, 2:6, 2:8] = True
    mesh = mask_to_mesh(mask, spacing=SPACING, origin=(10.0, 0.0, 4.0))
    data = (mesh.vertices[:, ::-1].copy(), mesh.faces.copy())
    path = tmp_path / f"fossil.{fmt}"
    assert write_surface(str(path), data, {"scale": (1, 1, 1), "translate": (0, 0, 0)}) == [
        str(path)
    ]
    back = trimesh.load(path, file_type=fmt, force="mesh")
    assert back.is_watertight
    assert back.volume == pytest.approx(mesh.volume, rel=1e-4)
    np.testing.assert_allclose(back.bounds, mesh.bounds, atol=1e-4)


def test_surface_scale_translate_and_orientation():
    # A unit tetrahedron in data coordinates, consistently wound; the (z, y, x) to
    # (x, y, z) swap mirrors it, so one of the two windings comes out inward.
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    for faces in (
        np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]),
        np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]]),
    ):
        meta = {"scale": (2.0, 3.0, 4.0), "translate": (1.0, 0.0, -1.0)}
        mesh = surface_to_trimesh((verts, faces), meta)
        world_zyx = verts * (2.0, 3.0, 4.0) + (1.0, 0.0, -1.0)
        np.testing.assert_allclose(mesh.vertices, world_zyx[:, ::-1])
        assert mesh.volume == pytest.approx(2 * 3 * 4 / 6)  # positive: outward


def test_surface_bad_input(tmp_path):
    verts = np.zeros((3, 3))
    faces = np.array([[0, 1, 2]])
    with pytest.raises(ValueError, match=r"\.stl, \.ply, \.obj"):
        write_surface(str(tmp_path / "x.vtk"), (verts, faces), {})
    with pytest.raises(ValueError, match="faces"):
        write_surface(str(tmp_path / "x.stl"), (verts, np.zeros((1, 4), int)), {})
    assert not list(tmp_path.iterdir())
