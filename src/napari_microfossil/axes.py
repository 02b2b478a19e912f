"""The three axes of a ``(Z, Y, X)`` volume, and the planes cut along them.

One definition for every module that works slice by slice (segmentation, training,
review): the axis names, an axis given by name or number, and the plane index.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Axis names in array order: volumes are ``(Z, Y, X)``.
AXES = "zyx"


def axis_index(axis: str | int) -> int:
    """``"z"``/``0`` -> 0, ``"y"``/``1`` -> 1, ``"x"``/``2`` -> 2.

    Raises
    ------
    ValueError
        If `axis` is none of these.
    """
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) and 0 <= axis < 3:
        return int(axis)
    if isinstance(axis, str) and len(axis) == 1 and axis.lower() in AXES:
        return AXES.index(axis.lower())
    raise ValueError(f"axis: expected 'z', 'y' or 'x' (or 0, 1, 2); got {axis!r}")


def axis_name(axis: str | int) -> str:
    """The name (``"z"``, ``"y"``, ``"x"``) of an axis given by name or number."""
    return AXES[axis_index(axis)]


def plane_index(axis: str | int, i: int) -> tuple[Any, ...]:
    """The index of plane `i` along `axis`: ``volume[plane_index("y", 3)]``."""
    return (slice(None),) * axis_index(axis) + (i,)


def take_plane(volume: Any, axis: str | int, i: int) -> np.ndarray:
    """Plane `i` of a ``(Z, Y, X)`` array-like along `axis`, as an ndarray.

    A z-plane is asked for as ``volume[i]``: lazy readers serve that from one page.
    """
    ax = axis_index(axis)
    return np.asarray(volume[i] if ax == 0 else volume[plane_index(ax, i)])
