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


def sure_where_reviewed(
    confidence: np.ndarray, reviewed: Mapping[str, Sequence[int]]
) -> np.ndarray:
    """The confidence with every reviewed slice at 100 %: a copy.

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
    out = np.array(confidence, copy=True)
    for name, planes in reviewed.items():
        axis = "zyx".index(name)
        index = [int(i) for i in planes if 0 <= int(i) < out.shape[axis]]
        if index:
            sl: list[Any] = [slice(None)] * 3
            sl[axis] = index
            out[tuple(sl)] = 100
    return out
