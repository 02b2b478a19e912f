"""The volume every reader returns, and the checks all formats share.

:class:`Volume` is a ``(Z, Y, X)`` array with its voxel size in µm; :func:`parse_spacing`
validates a voxel size given by a user; the rest are small helpers of the readers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from .metadata import Meta

IMAGE_DTYPES = tuple(
    np.dtype(d) for d in ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
)


@dataclass(frozen=True)
class Volume:
    """A ``(Z, Y, X)`` volume and its voxel size.

    Parameters
    ----------
    data : array-like, shape (Z, Y, X)
        ``numpy.ndarray``, ``numpy.memmap``, zarr array or :class:`SliceStack`, or a
        lazy view; all support ``.shape``, ``.dtype``, ``.ndim`` and basic indexing
        (ints and slices), which returns a numpy array.
    spacing : tuple of 3 float
        Voxel size ``(z, y, x)`` in `unit`.
    unit : str
        ``"µm"``.
    spacing_source : {"metadata", "user", "default"}
        Where `spacing` came from; ``"default"`` means none was found and 1 µm was assumed.
    path : str
        The file or folder read.
    class_names : tuple of str, optional
        Names of the label values, for label volumes written by this tool.
    lazy : bool
        True when `data` is not held in memory (memory-mapped or read on demand).
    metadata : dict
        Extra metadata this tool wrote beside the volume (``write_tiff(metadata=...)``).
    """

    data: Any
    spacing: tuple[float, float, float]
    unit: str
    spacing_source: str
    path: str
    class_names: tuple[str, ...] | None = None
    lazy: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    def load(self) -> np.ndarray:
        """The whole volume as an in-memory ``numpy.ndarray`` (no copy if it already is one)."""
        data = self.data
        if type(data) is np.ndarray:
            return data
        if isinstance(data, np.ndarray):  # memmap: copy into memory
            return np.array(data)
        return np.asarray(data[...])


@dataclass
class Read:
    """What a format reader found: the ``(Z, Y, X)`` data, whether it is lazy, the
    metadata and the format's name (``"tiff"``, ``"slices"``, ``"ome-zarr"``...)."""

    data: Any
    lazy: bool
    meta: Meta
    format: str


def one_line(exc: BaseException) -> str:
    """An exception as one short line, for the end of an error message."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def fmt_shape(shape: Sequence[int]) -> str:
    """A shape as ``(4, 6, 5)``, whatever the integer types."""
    return "(" + ", ".join(str(int(n)) for n in shape) + ")"


def parse_spacing(spacing: Any) -> tuple[float, float, float]:
    """Validate a voxel size given as one number (isotropic) or ``(z, y, x)``.

    Raises
    ------
    InputError
        If it is not one or three finite numbers > 0.
    """
    if isinstance(spacing, (bool, np.bool_, str, bytes)):
        values: list[Any] = [spacing]
    elif isinstance(spacing, (int, float, np.integer, np.floating)):
        values = [spacing] * 3
    else:
        try:
            values = list(spacing)
        except TypeError:
            values = [spacing]
    ok = len(values) == 3
    out: list[float] = []
    if ok:
        for v in values:
            if isinstance(v, (bool, np.bool_)) or not isinstance(
                v, (int, float, np.integer, np.floating)
            ):
                ok = False
                break
            f = float(v)
            if not (math.isfinite(f) and f > 0):
                ok = False
                break
            out.append(f)
    if not ok:
        raise InputError(
            f"spacing: expected one number or three numbers (z, y, x) in µm, all > 0 and "
            f"finite; got {spacing!r}"
        )
    return (out[0], out[1], out[2])


def positive(value: Any) -> float | None:
    """`value` as a finite float > 0, or None if it is not one."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def check_dtype(dtype: np.dtype, path: str, allowed: Sequence[np.dtype] | None) -> None:
    """Raise InputError unless `dtype` is in `allowed` (None: any bool, int or real float)."""
    native = dtype.newbyteorder("=")
    if allowed is None:
        if native.kind in "biuf":
            return
        expected = "a boolean, integer or real floating-point type"
    else:
        if native in allowed:
            return
        expected = "one of " + ", ".join(d.name for d in allowed)
    raise InputError(f"{path}: unsupported data type {dtype.name}; expected {expected}")
