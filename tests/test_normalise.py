"""Input normalisation: percentile ranges and the optional 3D smoothing."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_microfossil._progress import drain
from napari_microfossil.errors import InputError
from napari_microfossil.normalise import (
    Normalisation,
    check_smooth,
    intensity_range,
    iter_presmooth,
    iter_smooth,
    smoothed_dtype,
)


class SlabVolume:
    """Readable only in z-slabs; records what was read and refuses to load whole."""

    def __init__(self, data: np.ndarray):
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.reads: list[int] = []

    def __getitem__(self, key):
        part = self._data[key]
        self.reads.append(part.shape[0] if part.ndim == 3 else 1)
        return part

    def __array__(self, *args, **kwargs):
        raise AssertionError("the volume was loaded whole")


@pytest.mark.parametrize("sigma", [0.7, 1.5])
@pytest.mark.parametrize("slab", [3, 8, 100])
def test_slabwise_smoothing_equals_smoothing_the_whole_volume(sigma, slab):
    rng = np.random.default_rng(1)
    vol = rng.random((23, 17, 19), dtype=np.float32) * 1000
    lazy = SlabVolume(vol)
    seen = []
    out = drain(iter_smooth(lazy, sigma, slab=slab), seen.append)
    expected = ndi.gaussian_filter(vol, sigma, mode="mirror")
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-3)
    assert out.dtype == np.float32
    assert [p.done for p in seen][-1] == 23 and all(p.stage == "smooth" for p in seen)
    if slab < 23:  # read a slab and its margin at a time, never everything at once
        assert max(lazy.reads) < 23


def test_smoothing_keeps_16_bit_integers_and_widens_8_bit():
    vol = (np.arange(4 * 8 * 8).reshape(4, 8, 8) * 97 % 65535).astype(np.uint16)
    out = drain(iter_smooth(vol, 1.0))
    assert out.dtype == np.uint16
    ref = ndi.gaussian_filter(vol.astype(np.float32), 1.0, mode="mirror")
    assert np.abs(out.astype(np.float64) - ref).max() <= 0.5 + 1e-3
    assert smoothed_dtype(np.uint8) == np.float32 and smoothed_dtype(np.float64) == np.float32
    assert smoothed_dtype(np.int32) == np.int32


def test_smoothing_lowers_noise():
    rng = np.random.default_rng(0)
    vol = rng.normal(100, 10, (20, 32, 32)).astype(np.float32)
    assert drain(iter_smooth(vol, 1.0)).std() < vol.std() / 4
    np.testing.assert_array_equal(drain(iter_smooth(vol, 0.0)), vol)


def test_presmoothing_smooths_once_and_leaves_the_rest_of_the_normalisation():
    vol = np.random.default_rng(2).random((6, 10, 12), dtype=np.float32)
    plain = Normalisation(low=2, high=98)
    same, norm = drain(iter_presmooth(vol, plain))
    assert same is vol and norm is plain  # nothing to do: as given
    seen = []
    out, rest = drain(iter_presmooth(vol, Normalisation(low=2, high=98, smooth=0.9)), seen.append)
    np.testing.assert_array_equal(out, drain(iter_smooth(vol, 0.9)))
    assert rest == plain and seen and seen[-1].stage == "smooth"


@pytest.mark.parametrize("bad", [-0.1, 6.0, float("nan"), "a", None, True])
def test_bad_smoothing_is_a_one_line_error(bad):
    with pytest.raises(InputError, match=r"^--smooth: expected a Gaussian sigma"):
        check_smooth(bad, "--smooth")
    with pytest.raises(InputError, match="smooth"):
        Normalisation(smooth=bad)  # type: ignore[arg-type]


def test_smoothing_is_part_of_the_saved_normalisation():
    norm = Normalisation(smooth=0.7)
    assert Normalisation.from_dict(norm.to_dict()) == norm
    # Model files written before smoothing existed read as "no smoothing".
    assert Normalisation.from_dict({"method": "percentile", "low": 1, "high": 99}).smooth == 0.0


def test_intensity_range_percentiles():
    vol = np.linspace(0, 1000, 10 * 20 * 20).reshape(10, 20, 20)
    lo, hi = intensity_range(vol, Normalisation(low=10, high=90))
    assert lo == pytest.approx(100, rel=0.05) and hi == pytest.approx(900, rel=0.05)
    assert intensity_range(np.zeros((2, 4, 4))) == (0.0, 1.0)
