"""How sure the segmentation was of each object: the per-object confidence filter.

``microfossil segment --confidence`` (and the Segment panel) write the model's
per-voxel confidence (the winning class's probability, in percent, uint8). An object
the model labelled fossil but was unsure of over its whole body is, on held-out
phantoms, most often not a fossil: a bright grain or an ooid-like look-alike of the
size of the smallest fossils, which no size limit separates (docs/fossils_defaults.md).
The extraction (in memory and block by block) drops an object whose mean confidence
is below a limit, when the confidence is given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.lazy import LazyArray


def check_min_confidence(value: Any) -> float:
    """A confidence limit as a float in ``[0, 100]`` (percent).

    Raises
    ------
    InputError
        For anything else (a bool, a non-number, NaN, out of range).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(float(value))
        or not 0.0 <= float(value) <= 100.0
    ):
        raise InputError(f"min_confidence: expected a percentage 0..100, got {value!r}")
    return float(value)


def check_confidence(confidence: Any, shape: tuple[int, ...]) -> Any:
    """The confidence volume (array-like, may be lazy) if it has the labels' `shape`.

    Raises
    ------
    InputError
        For another shape or a non-numeric dtype.
    """
    if confidence is None:
        return None
    got = tuple(int(n) for n in getattr(confidence, "shape", np.shape(confidence)))
    if got != tuple(shape):
        raise InputError(f"confidence: expected the labels' shape {tuple(shape)}, got {got}")
    dtype = np.dtype(getattr(confidence, "dtype", np.asarray(confidence).dtype))
    if dtype.kind not in "uif":
        raise InputError(f"confidence: expected numbers (percent), got dtype {dtype}")
    return confidence


def mean_confidence(confidence: Any, box: tuple[slice, ...], mask: np.ndarray) -> float:
    """Mean confidence (percent) of an object's voxels.

    Parameters
    ----------
    confidence : (Z, Y, X) array-like
        Per-voxel confidence in percent; only `box` is read.
    box : 3 slices
        The object's bounding box in the volume.
    mask : (z, y, x) bool array
        The object within `box` (filled cavities included).

    Returns
    -------
    float
        In percent; NaN for an empty mask.
    """
    values = np.asarray(confidence[box])[mask]
    return float(values.mean(dtype=np.float64)) if values.size else math.nan


def is_sure(confidence: Any, box: tuple[slice, ...], mask: np.ndarray, limit: float) -> bool:
    """Whether an object passes the confidence limit (always, with no confidence or a
    limit of 0)."""
    if confidence is None or limit <= 0:
        return True
    return mean_confidence(confidence, box, mask) >= limit


def sure_where_reviewed(confidence: Any, reviewed: Mapping[str, Sequence[int]]) -> Any:
    """The confidence with every reviewed slice at 100 %: a copy, or for a confidence
    not in memory (a store) a lazy view that sets them as it reads
    (:class:`SureWhereReviewed`).

    A slice the user reviewed (looked at and accepted, or painted) holds labels the
    user is sure of, whatever the model was; the confidence limit and the object check
    should see them so, not as the model's doubt or as missing.

    Parameters
    ----------
    confidence : (Z, Y, X) array
        Per-voxel confidence in percent.
    reviewed : mapping
        Reviewed slice indices per axis name (``"z"``, ``"y"``, ``"x"``).
    """
    view = SureWhereReviewed(confidence, reviewed)
    return view[...] if isinstance(confidence, np.ndarray) else view


class SureWhereReviewed(LazyArray):
    """A lazy confidence volume read with every reviewed slice at 100 %
    (:func:`sure_where_reviewed` for a volume that does not fit in memory)."""

    def __init__(self, base: Any, reviewed: Mapping[str, Sequence[int]]) -> None:
        self.base = base
        self.shape = tuple(int(n) for n in base.shape)  # type: ignore[assignment]
        self.dtype = np.dtype(base.dtype)
        self.planes = {
            "zyx".index(name): np.asarray(sorted({int(i) for i in planes}), dtype=np.int64)
            for name, planes in reviewed.items()
        }

    def _read_key(self, key: tuple[int | slice, ...]) -> np.ndarray:
        out = np.array(self.base[key], copy=True)
        for axis, planes in self.planes.items():
            k = key[axis]
            if isinstance(k, int):
                if np.isin(k, planes):
                    out[...] = 100
                continue
            hit = np.nonzero(np.isin(np.arange(*k.indices(self.shape[axis])), planes))[0]
            if len(hit):
                at: list[Any] = [slice(None)] * out.ndim
                at[sum(isinstance(j, slice) for j in key[:axis])] = hit
                out[tuple(at)] = 100
        return out
