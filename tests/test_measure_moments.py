"""Tests for napari_microfossil.fossils.measure: shape moments from projections."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microfossil.fossils.measure import _moments, measure_one


@pytest.mark.parametrize("seed", range(5))
def test_moments_equal_those_of_the_voxel_coordinates(seed):
    rng = np.random.default_rng(seed)
    body = rng.random(tuple(rng.integers(1, 12, 3))) < rng.uniform(0.1, 0.9)
    body.flat[0] = True
    start = rng.integers(0, 500, 3)
    n, centroid, cov = _moments(body, start)
    idx = np.argwhere(body).astype(np.float64) + start
    assert n == len(idx)
    np.testing.assert_allclose(centroid, idx.mean(axis=0), rtol=1e-12)
    ref = np.cov(idx, rowvar=False, bias=True) if n > 1 else np.zeros((3, 3))
    np.testing.assert_allclose(cov, ref, rtol=1e-9, atol=1e-9)


def test_single_voxel_and_non_bool_mask():
    body = np.zeros((3, 4, 5), np.uint8)
    body[1, 2, 3] = 5  # any non-zero value counts as inside
    n, centroid, cov = _moments(body, np.array([10, 20, 30]))
    assert n == 1
    np.testing.assert_array_equal(centroid, [11, 22, 33])
    np.testing.assert_array_equal(cov, np.zeros((3, 3)))


def test_box_lengths_and_centroid_in_um():
    body = np.ones((4, 6, 10), bool)  # a solid box
    slc = (slice(2, 6), slice(0, 6), slice(5, 15))
    row = measure_one(3, body, slc, (2.0, 1.0, 0.5), (10, 10, 20), None)
    assert row["voxels"] == 240 and row["volume_um3"] == pytest.approx(240.0)
    assert (row["centroid_z_um"], row["centroid_y_um"], row["centroid_x_um"]) == pytest.approx(
        (3.5 * 2.0, 2.5, 9.5 * 0.5)
    )
    # Variance of a uniform box of side L is L²/12 (voxel sums plus the voxels' own).
    assert row["length_um"] == pytest.approx(2 * np.sqrt(5 * 8.0**2 / 12))
    assert row["width_um"] == pytest.approx(2 * np.sqrt(5 * 6.0**2 / 12))
    assert row["thickness_um"] == pytest.approx(2 * np.sqrt(5 * 5.0**2 / 12))
    assert row["touches_border"] is True
