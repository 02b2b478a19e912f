"""Lazy ``(Z, Y, X)`` arrays: the shared array protocol, and views of stored N-D arrays.

A stored array becomes ``(Z, Y, X)`` through a :class:`Plan` (squeeze singleton axes,
convert colour samples to grey, give a 2D image a Z axis); :class:`LazyView` applies a
plan on each read, so only the requested part is read from disk.
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from .faults import reading
from .volume import fmt_shape


def rgb_to_grey(a: np.ndarray) -> np.ndarray:
    """Luminance of colour samples on the last axis, in the input dtype."""
    if a.shape[-1] == 2:  # grey + alpha
        return np.ascontiguousarray(a[..., 0])
    rgb = a[..., :3]
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return np.ascontiguousarray(rgb[..., 0])
    grey = rgb @ np.array([0.2125, 0.7154, 0.0721])
    if a.dtype.kind in "ui":
        info = np.iinfo(a.dtype)
        grey = np.clip(np.rint(grey), info.min, info.max)
    return grey.astype(a.dtype)


def warn_rgb(path: str, shape: Sequence[int]) -> None:
    warnings.warn(
        f"{path}: colour image with shape {fmt_shape(shape)}; converted to grey (luminance)",
        UserWarning,
        stacklevel=2,
    )


def normalise_key(key: Any, shape: Sequence[int]) -> tuple[int | slice, ...] | None:
    """``key`` as one int or slice per axis, or None if it holds anything else."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        if any(k is Ellipsis for k in key[i + 1 :]):
            raise IndexError("an index can only have a single ellipsis ('...')")
        key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[i + 1 :]
    if len(key) > len(shape):
        raise IndexError(f"too many indices: {len(key)} for a {len(shape)}-D volume")
    key = key + (slice(None),) * (len(shape) - len(key))
    out: list[int | slice] = []
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, slice):
            out.append(k)
        elif isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
            i = int(k)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for an axis of size {n}")
            out.append(i % n)
        else:
            return None
    return tuple(out)


@dataclass(frozen=True)
class Plan:
    """How a stored N-D array becomes ``(Z, Y, X)``.

    ``index`` has one entry per stored axis: None keeps it, an int fixes it (a squeezed
    singleton axis). ``rgb``: the last stored axis holds colour samples, converted to grey.
    ``add_z``: a 2D image, given a Z axis of length 1.
    """

    index: tuple[int | None, ...]
    rgb: bool
    add_z: bool
    shape: tuple[int, int, int]


def plan_axes(shape: Sequence[int], axes: str, path: str) -> Plan:
    """Plan from a stored shape and its axis letters (tifffile's: Z, Y, X, S = samples...)."""
    shape = tuple(int(n) for n in shape)
    axes = axes.upper()
    if len(axes) != len(shape) or "Y" not in axes or "X" not in axes:
        axes = "Q" * (len(shape) - 2) + "YX" if len(shape) >= 2 else axes
    bad = InputError(
        f"{path}: expected a 3D (Z, Y, X) volume or a 2D image; found shape "
        f"{fmt_shape(shape)} with axes {axes!r}. Save a single channel and time point."
    )
    if len(shape) < 2:
        raise bad
    index: list[int | None] = [0] * len(shape)
    rgb = False
    if axes[-1] == "S":
        if shape[-1] in (2, 3, 4):
            rgb = True
            index[-1] = None
        elif shape[-1] != 1:
            raise bad
    others = [i for i, a in enumerate(axes) if a not in "YXS"]
    if "Z" in axes:
        z: int | None = axes.index("Z")
    else:
        big = [i for i in others if shape[i] > 1]
        z = big[0] if len(big) == 1 else (others[-1] if not big and others else None)
    if any(shape[i] > 1 for i in others if i != z):
        raise bad
    y, x = axes.index("Y"), axes.index("X")
    if not ((z is None or z < y) and y < x):
        raise InputError(
            f"{path}: axes {axes!r} are not in Z, Y, X order; this order is not supported"
        )
    for i in (y, x) if z is None else (z, y, x):
        index[i] = None
    zyx = (1 if z is None else shape[z], shape[y], shape[x])
    if rgb:
        warn_rgb(path, shape)
    return Plan(tuple(index), rgb, z is None, zyx)


def stored_key(plan: Plan, key: tuple[int | slice, ...]) -> tuple[int | slice, ...]:
    """The key into the stored array for ``key`` (one int/slice per output axis)."""
    k = list(key)
    if plan.add_z:
        k.pop(0)
    it = iter(k)
    return tuple(
        (slice(None) if (plan.rgb and j == len(plan.index) - 1) else next(it)) if i is None else i
        for j, i in enumerate(plan.index)
    )


def apply_plan(base: Any, plan: Plan, key: tuple[int | slice, ...]) -> np.ndarray:
    """Read ``key`` (one int/slice per output axis) from ``base`` following ``plan``."""
    kz = key[0] if plan.add_z else None
    out = np.asarray(base[stored_key(plan, key)])
    if plan.rgb:
        out = rgb_to_grey(out)
    if plan.add_z and isinstance(kz, slice):
        out = out[np.newaxis][kz]
    return out


class LazyArray(abc.ABC):
    """Array protocol shared by the lazy ``(Z, Y, X)`` volumes.

    numpy-like ``shape``, ``dtype``, ``ndim``, ``size`` and ``nbytes``; basic indexing
    (ints, slices, ``...``) reads only what it selects and returns a numpy array; any
    other key (fancy indexing) is applied to the whole volume, which is correct but
    reads everything; ``np.asarray`` reads it all. Subclasses set ``shape`` and
    ``dtype`` and implement :meth:`_read_key`.
    """

    ndim = 3
    shape: tuple[int, int, int]
    dtype: np.dtype

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        norm = normalise_key(key, self.shape)
        if norm is None:
            return np.asarray(self)[key]
        return self._read_key(norm)

    @abc.abstractmethod
    def _read_key(self, key: tuple[int | slice, ...]) -> np.ndarray:
        """Read ``key``: one int (in range, non-negative) or slice per axis."""

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)


class LazyView(LazyArray):
    """Read-only lazy ``(Z, Y, X)`` view of a stored array (squeezed axes, RGB → grey).

    Every read happens inside :func:`~napari_microfossil.io.faults.reading`: bytes that
    cannot be decoded, however late they are read, raise a ``ReadError`` naming `path`.
    """

    def __init__(self, base: Any, plan: Plan, path: str) -> None:
        self.base = base
        self.plan = plan
        self.path = path
        self.shape = plan.shape
        self.dtype = np.dtype(base.dtype)

    def _read_key(self, key: tuple[int | slice, ...]) -> np.ndarray:
        with reading(self.path):
            return apply_plan(self.base, self.plan, key)

    def __repr__(self) -> str:
        return f"<lazy volume {fmt_shape(self.shape)} {self.dtype.name} of {type(self.base)}>"
