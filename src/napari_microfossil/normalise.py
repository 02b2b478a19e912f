"""Input intensity normalisation, identical in training and inference.

CT scans come as uint8, uint16 or float with arbitrary offsets and ranges. Each volume
is mapped so that its low and high percentiles (estimated on a subsample of slices, so
that a lazily-read volume is not loaded whole) land on -1 and +1.

Noisy scans can first be smoothed in 3D (:func:`iter_smooth`): a slice-wise network
cannot average noise across slices, a light 3D Gaussian can. The smoothing is part of
the normalisation, so a model trained on smoothed input is always given smoothed input.
"""

from __future__ import annotations

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
    from scipy import ndimage

    sigma = check_smooth(sigma)
    nz = int(volume.shape[0])
    out_dtype = smoothed_dtype(getattr(volume, "dtype", np.float32))
    out = np.empty(tuple(int(s) for s in volume.shape), dtype=out_dtype)
    halo = smoothing_margin(sigma)
    for z0 in range(0, nz, slab):
        z1 = min(nz, z0 + slab)
        a0, a1 = max(0, z0 - halo), min(nz, z1 + halo)
        block = np.asarray(volume[a0:a1], dtype=np.float32)
        if sigma > 0:
            block = ndimage.gaussian_filter(block, sigma, mode="mirror", truncate=4.0)
        part = block[z0 - a0 : z0 - a0 + (z1 - z0)]
        if out_dtype.kind in "iu":
            info = np.iinfo(out_dtype)
            part = np.clip(np.rint(part), info.min, info.max)
        out[z0:z1] = part
        yield Progress("smooth", z1, nz)
    return out


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
