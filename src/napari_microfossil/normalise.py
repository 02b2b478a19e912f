"""Input intensity normalisation, identical in training and inference.

CT scans come as uint8, uint16 or float with arbitrary offsets and ranges. Each volume
is mapped so that its low and high percentiles (estimated on a subsample of slices, so
that a lazily-read volume is not loaded whole) land on -1 and +1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

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
    """

    method: str = "percentile"
    low: float = 0.5
    high: float = 99.5
    clip: float = 3.0

    def __post_init__(self) -> None:
        if self.method != "percentile":
            raise InputError(f"normalisation method: expected 'percentile', got {self.method!r}")
        if not 0.0 <= self.low < self.high <= 100.0:
            raise InputError(
                f"normalisation percentiles: expected 0 <= low < high <= 100, got {self.low}, {self.high}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalisation:
        return cls(**{k: d[k] for k in ("method", "low", "high", "clip") if k in d})


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
