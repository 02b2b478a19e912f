"""Input intensity normalisation, identical in training and inference.

CT scans come as uint8, uint16 or float with arbitrary offsets and ranges. Each volume
is mapped so that its low and high percentiles (estimated on a subsample of slices, so
that a lazily-read volume is not loaded whole) land on -1 and +1.

Noisy scans can first be smoothed in 3D (:func:`iter_smooth`): a slice-wise network
cannot average noise across slices, a light 3D Gaussian can. The smoothing is part of
the normalisation, so a model trained on smoothed input is always given smoothed input.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from ._progress import Progress, ProgressGen
from .errors import InputError


@dataclass(frozen=True)
class Normalisation:
    """How raw intensities become network input.

    Parameters
    ----------
    method : {"percentile"}
        Map the ``low`` and ``high`` percentiles of the volume to -1 and +1.
    low, high : float
        Percentiles, 0 <= low < high <= 100.
    clip : float
        Normalised values are clipped to ``[-clip, clip]`` so that outliers (metal,
        air) do not dominate.
    smooth : float
        Sigma in voxels of a 3D Gaussian applied to the volume before anything else
        (0 = none); see :func:`iter_smooth`.
    """

    method: str = "percentile"
    low: float = 0.5
    high: float = 99.5
    clip: float = 3.0
    smooth: float = 0.0

    def __post_init__(self) -> None:
        if self.method != "percentile":
            raise InputError(f"normalisation method: expected 'percentile', got {self.method!r}")
        if not 0.0 <= self.low < self.high <= 100.0:
            raise InputError(
                f"normalisation percentiles: expected 0 <= low < high <= 100, got {self.low}, {self.high}"
            )
        check_smooth(self.smooth)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalisation:
        return cls(**{k: d[k] for k in ("method", "low", "high", "clip", "smooth") if k in d})


def intensity_range(
    volume: Any,
    norm: Normalisation | None = None,
    *,
    max_slices: int = 24,
    max_voxels: int = 4_000_000,
) -> tuple[float, float]:
    """Estimate the intensity range ``(lo, hi)`` of a volume from a subsample.

    Parameters
    ----------
    volume : array-like, shape (Z, Y, X)
        Any array supporting ``shape`` and integer indexing along axis 0 (numpy,
        memmap, zarr, the lazy slice stacks of :mod:`napari_microfossil.io`).
    norm : Normalisation, optional
        Percentiles to use; the default :class:`Normalisation` if omitted.
    max_slices : int
        At most this many evenly spaced z-slices are read.
    max_voxels : int
        At most this many voxels enter the percentile computation.

    Returns
    -------
    lo, hi : float
        ``hi > lo`` always (a constant volume gets ``hi = lo + 1``).
    """
    norm = norm or Normalisation()
    nz = int(volume.shape[0])
    idx = np.unique(np.linspace(0, nz - 1, num=min(nz, max_slices)).round().astype(int))
    step = max(1, int(np.ceil(np.sqrt(len(idx) * np.prod(volume.shape[1:]) / max_voxels))))
    parts = [np.asarray(volume[int(i)])[::step, ::step].ravel() for i in idx]
    sample = np.concatenate(parts).astype(np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(sample, [norm.low, norm.high])
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def apply_normalisation(
    data: np.ndarray, lo: float, hi: float, norm: Normalisation | None = None
) -> np.ndarray:
    """Map raw intensities to network input (float32) with a known range.

    ``lo`` maps to -1, ``hi`` to +1; the result is clipped to ``[-clip, clip]``.
    """
    norm = norm or Normalisation()
    out = np.asarray(data, dtype=np.float32)
    out = (out - np.float32(lo)) * np.float32(2.0 / (hi - lo)) - np.float32(1.0)
    np.clip(out, -norm.clip, norm.clip, out=out)
    return out


MAX_SMOOTH = 5.0


def check_smooth(sigma: Any, name: str = "smooth") -> float:
    """``sigma`` as a float in ``[0, MAX_SMOOTH]`` voxels, or an :class:`InputError`."""
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(sigma, bool) or not 0.0 <= value <= MAX_SMOOTH:
        raise InputError(
            f"{name}: expected a Gaussian sigma in voxels from 0 to {MAX_SMOOTH:g}, got {sigma!r}"
        )
    return value


def smoothed_dtype(dtype: Any) -> np.dtype:
    """Smoothed volumes keep 16- and 32-bit integer types; all others become float32."""
    dt = np.dtype(dtype)
    if dt.kind in "iu" and dt.itemsize >= 2:
        return dt
    return np.dtype(np.float32)


def smoothing_margin(sigma: float) -> int:
    """Planes on each side of a plane that its 3D Gaussian of ``sigma`` reaches (the
    filter is truncated at 4 sigma), plus one: smoothing a slab of ``z - margin`` to
    ``z + margin`` gives plane ``z`` exactly as smoothing the whole volume would."""
    return int(4.0 * sigma + 0.5) + 1 if sigma > 0 else 0


def iter_smooth(volume: Any, sigma: float, *, slab: int = 32) -> ProgressGen[np.ndarray]:
    """Smooth a volume with a 3D Gaussian, a z-slab at a time; yields progress.

    Each slab is read with a margin of ``4 sigma`` slices on both sides, so the result
    equals :func:`scipy.ndimage.gaussian_filter` on the whole volume (mirrored edges)
    while a lazily-read volume is never loaded whole.

    Parameters
    ----------
    volume : array-like, shape (Z, Y, X)
    sigma : float
        Gaussian sigma in voxels, the same along every axis; 0 returns a copy.
    slab : int
        z-slices filtered per step.

    Yields
    ------
    Progress
        ``stage="smooth"``, ``done``/``total`` in z-slices.

    Returns
    -------
    numpy.ndarray
        The smoothed volume, in :func:`smoothed_dtype` of the input (integers rounded
        and clipped to their range).
    """
    sigma = check_smooth(sigma)
    nz = int(volume.shape[0])
    out_dtype = smoothed_dtype(getattr(volume, "dtype", np.float32))
    out = np.empty(tuple(int(s) for s in volume.shape), dtype=out_dtype)
    halo = smoothing_margin(sigma)
    for z0 in range(0, nz, slab):
        z1 = min(nz, z0 + slab)
        a0, a1 = max(0, z0 - halo), min(nz, z1 + halo)
        block = _gaussian(volume[a0:a1], sigma)
        out[z0:z1] = _rounded(block[z0 - a0 : z0 - a0 + (z1 - z0)], out_dtype)
        yield Progress("smooth", z1, nz)
    return out


def _gaussian(block: Any, sigma: float) -> np.ndarray:
    """`block` as float32, filtered by the 3D Gaussian of :func:`iter_smooth`."""
    from scipy import ndimage

    data = np.asarray(block, dtype=np.float32)
    if sigma > 0:
        data = ndimage.gaussian_filter(data, sigma, mode="mirror", truncate=4.0)
    return data


def _rounded(part: np.ndarray, out_dtype: np.dtype) -> np.ndarray:
    """Smoothed values as :func:`iter_smooth` stores them in `out_dtype`."""
    if out_dtype.kind in "iu":
        info = np.iinfo(out_dtype)
        part = np.clip(np.rint(part), info.min, info.max)
    return part


def iter_smoothed_planes(
    volume: Any, axis: int, indices: Iterable[int], sigma: float, *, group: int = 8
) -> Iterator[tuple[int, np.ndarray]]:
    """Planes of `volume` along `axis` smoothed as :func:`iter_smooth` smooths the whole
    volume, reading only blocks around them.

    Nearby planes share a block (at most `group` planes apart, and no further apart
    than the blocks' margins reach); a block spans its planes plus
    :func:`smoothing_margin` planes on each side, clamped to the volume, so every
    plane equals the same plane of ``iter_smooth(volume, sigma)`` exactly: the
    Gaussian never reaches past the margin, and at the volume's faces the block's
    face is the volume's, mirrored alike. A block holds ``(group + 2 * margin)``
    planes of float32 (twice, while filtered).

    Parameters
    ----------
    volume : array-like, shape (Z, Y, X)
        Read with basic slicing only (numpy, zarr, the lazy volumes of :mod:`.io`).
    axis : {0, 1, 2}
        The planes' axis (z, y, x).
    indices : iterable of int
        Planes to give, each in ``0 .. volume.shape[axis] - 1``.
    sigma : float
        Gaussian sigma in voxels; 0 gives the planes as stored, one read each.
    group : int
        Most planes one block is made for.

    Yields
    ------
    (int, numpy.ndarray)
        Each distinct index once, ascending, with its plane: 2D, the volume's other
        two axes, in :func:`smoothed_dtype` of the volume (with ``sigma = 0``: as
        stored).
    """
    sigma = check_smooth(sigma)
    wanted = sorted({int(i) for i in indices})
    n = int(volume.shape[axis])
    if wanted and not 0 <= wanted[0] <= wanted[-1] < n:
        raise IndexError(f"indices: expected planes 0..{n - 1} along axis {axis}, got {wanted}")
    lead = (slice(None),) * axis
    if sigma <= 0:
        for i in wanted:
            yield i, np.asarray(volume[i] if axis == 0 else volume[(*lead, i)])
        return
    out_dtype = smoothed_dtype(getattr(volume, "dtype", np.float32))
    margin = smoothing_margin(sigma)
    blocks: list[list[int]] = []
    for i in wanted:
        if blocks and i - blocks[-1][0] < group and i - blocks[-1][-1] <= 2 * margin + 1:
            blocks[-1].append(i)
        else:
            blocks.append([i])
    for block in blocks:
        c0, c1 = max(0, block[0] - margin), min(n, block[-1] + margin + 1)
        data = _gaussian(volume[(*lead, slice(c0, c1))], sigma)
        for i in block:
            plane = np.take(data, i - c0, axis=axis)
            yield i, _rounded(plane, out_dtype).astype(out_dtype, copy=False)


def iter_presmooth(volume: Any, norm: Normalisation) -> ProgressGen[tuple[Any, Normalisation]]:
    """Do the smoothing step of ``norm`` on a volume; yields :func:`iter_smooth`'s progress.

    For code that cuts several sets of planes from one volume: smooth once, then
    normalise each set with the returned ``norm``, whose ``smooth`` is 0.

    Returns
    -------
    volume, norm
        The smoothed volume and ``norm`` without smoothing; without smoothing in
        ``norm``, both as given.
    """
    if norm.smooth <= 0:
        return volume, norm
    smoothed = yield from iter_smooth(volume, norm.smooth)
    return smoothed, replace(norm, smooth=0.0)
