"""Tests for napari_microfossil.fossils.mesh: marching-cubes meshes in µm."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microfossil.errors import InputError
from napari_microfossil.fossils.mesh import mask_surface_area, mask_to_mesh


def ball(radius: float, spacing=(1.0, 1.0, 1.0), pad: int = 2) -> np.ndarray:
    """Voxelised ball of ``radius`` µm, centred in its array."""
    sp = np.asarray(spacing, dtype=float)
    n = (2 * np.ceil(radius / sp) + 1 + 2 * pad).astype(int)
    c = (n - 1) / 2
    z, y, x = np.ogrid[: n[0], : n[1], : n[2]]
    r2 = ((z - c[0]) * sp[0]) ** 2 + ((y - c[1]) * sp[1]) ** 2 + ((x - c[2]) * sp[2]) ** 2
    return r2 <= radius**2


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 1.0, 1.0)])
@pytest.mark.parametrize("smooth", [False, True])
def test_ball_is_watertight_with_right_volume_and_area(spacing, smooth):
    r = 12.0
    mask = ball(r, spacing)
    mesh = mask_to_mesh(mask, spacing=spacing, smooth=smooth)
    assert mesh.is_watertight
    voxel_volume = mask.sum() * np.prod(spacing)
    assert mesh.volume > 0  # outward faces
    assert mesh.volume == pytest.approx(voxel_volume, rel=0.03)
    # Marching cubes on a binary mask keeps the voxel staircase, which adds area,
    # more so with coarse z; smoothing removes it.
    tol = 0.08 if (smooth or spacing == (1.0, 1.0, 1.0)) else 0.12
    assert mesh.area == pytest.approx(4 * np.pi * r**2, rel=tol)


@pytest.mark.parametrize("smooth", [False, True])
def test_surface_area_matches_mesh(smooth):
    spacing = (2.0, 1.0, 0.5)
    mask = ball(6.0, spacing)
    area = mask_surface_area(mask, spacing=spacing, smooth=smooth)
    assert area == pytest.approx(mask_to_mesh(mask, spacing=spacing, smooth=smooth).area)


def test_vertices_are_xyz_in_um_with_origin():
    mask = np.zeros((4, 5, 6), dtype=bool)
    mask[1:3, 1:4, 2:5] = True  # z 1..2, y 1..3, x 2..4
    spacing = (3.0, 2.0, 0.5)
    origin = (100.0, 200.0, 300.0)
    mesh = mask_to_mesh(mask, spacing=spacing, origin=origin)
    # The surface lies half a voxel outside the outermost voxel centres.
    lo_zyx = np.array([1 - 0.5, 1 - 0.5, 2 - 0.5]) * spacing + origin
    hi_zyx = np.array([2 + 0.5, 3 + 0.5, 4 + 0.5]) * spacing + origin
    np.testing.assert_allclose(mesh.bounds[0], lo_zyx[::-1])
    np.testing.assert_allclose(mesh.bounds[1], hi_zyx[::-1])
    assert mesh.is_watertight and mesh.volume > 0


def test_object_touching_crop_border_is_closed():
    mask = np.ones((3, 4, 5), dtype=bool)
    mesh = mask_to_mesh(mask)
    assert mesh.is_watertight
    # A box whose corners are cut by marching cubes: a bit less than the voxel volume.
    assert 0.8 * mask.size < mesh.volume <= mask.size


def test_step_size_gives_lighter_mesh():
    mask = ball(8.0)
    fine = mask_to_mesh(mask)
    coarse = mask_to_mesh(mask, step_size=2)
    assert len(coarse.faces) < len(fine.faces)


def test_bad_inputs():
    with pytest.raises(InputError, match="empty"):
        mask_to_mesh(np.zeros((3, 3, 3), dtype=bool))
    with pytest.raises(InputError, match="mask"):
        mask_to_mesh(np.ones((3, 3), dtype=bool))
    with pytest.raises(InputError, match="spacing"):
        mask_to_mesh(np.ones((2, 2, 2), dtype=bool), spacing=(1.0, 0.0, 1.0))
    with pytest.raises(InputError, match="spacing"):
        mask_to_mesh(np.ones((2, 2, 2), dtype=bool), spacing=(1.0, 1.0))
    with pytest.raises(InputError, match="step_size"):
        mask_to_mesh(np.ones((2, 2, 2), dtype=bool), step_size=0)
