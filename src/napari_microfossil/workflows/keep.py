"""Corrections are kept: the slices a user reviewed or painted survive a new segmentation.

A corrected slice is ground truth. When the scan is segmented again (by a fine-tuned
model, with other options), those planes are copied verbatim from the corrected labels
into the new result, so only voxels the user never looked at change. The Segment panel
does it for the layer it replaces; ``microfossil segment --keep CORRECTED --keep-slices
z:20,48,76`` does it on files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..axes import AXES, axis_index, plane_index, take_plane
from ..errors import InputError


def check_kept(
    slices: Mapping[str, Iterable[int]], shape: tuple[int, ...], option: str = "--keep-slices"
) -> dict[str, list[int]]:
    """The slices to keep, sorted and checked against the volume's `shape`.

    Raises
    ------
    InputError
        Naming `option`, for an unknown axis or a slice outside the volume.
    """
    out: dict[str, list[int]] = {}
    for axis, idx in slices.items():
        if axis not in AXES:
            raise InputError(f"{option}: expected axes z, y or x, got {axis!r}")
        n = int(shape[axis_index(axis)])
        chosen = sorted({int(i) for i in idx})
        bad = [i for i in chosen if not 0 <= i < n]
        if bad:
            raise InputError(
                f"{option}: {axis}-slice {bad[0]} is outside the volume's {n} {axis}-slices "
                f"(0..{n - 1})"
            )
        if chosen:
            out[axis] = chosen
    return out


def keep_planes(labels: Any, corrected: Any, slices: Mapping[str, Iterable[int]]) -> int:
    """Copy the planes `slices` of `corrected` into `labels`, verbatim; returns how many.

    Parameters
    ----------
    labels : writable array, shape (Z, Y, X)
        The new segmentation (numpy, or a zarr array).
    corrected : array-like, shape (Z, Y, X)
        The labels the user corrected; read one plane at a time.
    slices : dict
        Axis to slice indices (e.g. the review record's reviewed slices).
    """
    shape = tuple(int(n) for n in labels.shape)
    if tuple(int(n) for n in corrected.shape) != shape:
        raise InputError(
            f"corrected labels: expected the segmentation's shape {shape}, got "
            f"{tuple(corrected.shape)}"
        )
    n = 0
    for axis, idx in check_kept(slices, shape).items():
        for i in idx:
            labels[plane_index(axis, i)] = take_plane(corrected, axis, i)
            n += 1
    return n


def keep_in_slab(
    slab: np.ndarray, z0: int, corrected: Any, slices: Mapping[str, Iterable[int]]
) -> int:
    """:func:`keep_planes` for one z-slab ``slab = labels[z0 : z0 + len(slab)]`` of a
    segmentation written slab by slab; returns how many planes touched the slab.

    z-slices inside the slab are copied whole; y- and x-slices are copied for the
    slab's rows only, so that once every slab is done each kept plane is whole.
    """
    z1 = z0 + int(slab.shape[0])
    n = 0
    for axis, idx in slices.items():
        for i in idx:
            if axis == "z":
                if z0 <= i < z1:
                    slab[i - z0] = np.asarray(corrected[i])
                    n += 1
            else:
                key = (slice(z0, z1), *plane_index(axis, i)[1:])
                slab[(slice(None), *key[1:])] = np.asarray(corrected[key])
                n += 1
    return n
