"""The one-maximum shortcut of ``split_body`` gives what the full h-dome check gives."""

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
    bodies = list(_bodies(40, 3))
    fast = [split.split_body(b, spacing, None, 0.6) for b in bodies]
    monkeypatch.setattr(split, "_count_maxima", lambda f, inside: 2)  # always reconstruct
    slow = [split.split_body(b, spacing, None, 0.6) for b in bodies]
    assert sum(len(p) > 1 for p in slow) >= 5  # the cases include real splits
    for a, b in zip(fast, slow, strict=True):
        assert len(a) == len(b)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_one_ball_has_one_maximum_and_two_bumps_two():
    from scipy import ndimage as ndi

    zz, yy, xx = np.indices((17, 17, 17))
    ball = (zz - 8) ** 2 + (yy - 8) ** 2 + (xx - 8) ** 2 <= 36
    assert split._count_maxima(np.log(ndi.distance_transform_edt(ball) + 1), ball) == 1
    two = np.zeros((10, 10, 20))
    two[5, 5, 4] = two[5, 5, 15] = 1.0
    assert split._count_maxima(two, two >= 0) == 2
