"""The one-seed shortcut of ``split_body`` gives what the full h-dome check gives."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microfossil.fossils import split


def _bodies(n: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        shape = tuple(int(s) for s in rng.integers(8, 28, 3))
        zz, yy, xx = np.indices(shape)
        body = np.zeros(shape, bool)
        for _ in range(int(rng.integers(1, 4))):
            c = [rng.uniform(0, s) for s in shape]
            r = [rng.uniform(2, 8) for _ in range(3)]
            body |= ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + (
                (xx - c[2]) / r[2]
            ) ** 2 <= 1
        if body.any():
            yield body


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 1.0, 1.0)])
def test_shortcut_changes_no_split(spacing, monkeypatch):
    bodies = list(_bodies(80, 3))
    fast = [split.split_body(b, spacing, None, 0.6) for b in bodies]
    monkeypatch.setattr(split, "_one_seed", lambda f, h: False)  # always reconstruct
    slow = [split.split_body(b, spacing, None, 0.6) for b in bodies]
    assert sum(len(p) > 1 for p in slow) >= 5  # the cases include real splits
    for a, b in zip(fast, slow, strict=True):
        assert len(a) == len(b)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def _maxima(f: np.ndarray) -> int:
    from scipy import ndimage as ndi
    from skimage.morphology import local_maxima

    peaks = local_maxima(f, connectivity=3, allow_borders=True)
    return int(ndi.label(peaks, structure=np.ones((3, 3, 3), dtype=bool))[1])


def test_one_seed_decides_bodies_with_several_maxima():
    """The shortcut is not only the one-maximum case: shallow dips along a ridge."""
    from scipy import ndimage as ndi

    h = np.log(1 / 0.6)
    several = 0
    for body in _bodies(80, 3):
        padded = np.pad(body, 1)
        dist = ndi.gaussian_filter(ndi.distance_transform_edt(padded), 0.75) * padded
        f = np.log(dist + 1.0)  # as split_body makes it
        several += _maxima(f) > 1 and split._one_seed(f, h)
    assert several >= 3


def test_one_seed_on_a_ball_bumps_and_a_ridge():
    from scipy import ndimage as ndi

    h = np.log(1 / 0.6)
    zz, yy, xx = np.indices((17, 17, 17))
    ball = (zz - 8) ** 2 + (yy - 8) ** 2 + (xx - 8) ** 2 <= 36
    assert split._one_seed(np.log(ndi.distance_transform_edt(ball) + 1), h)
    two = np.zeros((10, 10, 20))
    two[5, 5, 4] = two[5, 5, 15] = 1.0  # two maxima, the valley between them at 0
    assert not split._one_seed(two, h)
    two[5, 5, 5:15] = 1.0 - h / 2  # a ridge joins them above 1 - h: one seed
    assert _maxima(two) == 2 and split._one_seed(two, h)
    two[5, 5, 9] = 1.0 - 2 * h  # a notch in the ridge below 1 - h: two again
    assert not split._one_seed(two, h)
