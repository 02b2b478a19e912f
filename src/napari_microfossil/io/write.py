"""Write volumes as TIFF, atomically, with their voxel size and class names."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from .metadata import ours_document, unit_factor
from .volume import fmt_shape, parse_spacing

_IMAGEJ_DTYPES = (np.dtype("uint8"), np.dtype("uint16"), np.dtype("float32"))
# tifffile switches to BigTIFF itself only when asked; stay well below the 4 GiB limit.
_BIGTIFF_BYTES = 2**32 - 2**25


def _imagej_unit(unit: str) -> str:
    if unit_factor(unit) == 1.0:
        return "micron"
    return "".join(c if ord(c) < 128 else f"\\u{ord(c):04X}" for c in unit)


def _checked_spacing(
    spacing: float | tuple[float, float, float], unit: str
) -> tuple[float, float, float]:
    """`spacing` as ``(z, y, x)``; InputError for a bad spacing or an unknown `unit`."""
    sp = parse_spacing(spacing)
    if unit_factor(unit) is None:
        raise InputError(f"unit: expected a length unit such as 'µm' or 'nm'; got {unit!r}")
    return sp


def _tiff_kwargs(
    dtype: np.dtype,
    shape: tuple[int, ...],
    sp: tuple[float, float, float],
    unit: str,
    axes: str,
    *,
    class_names: Sequence[str] | None,
    metadata: Mapping[str, Any] | None,
    compression: str | None,
) -> dict[str, Any]:
    """tifffile keywords: an ImageJ hyperstack when ImageJ can hold the volume, else a
    plain TIFF (BigTIFF from 4 GiB) with resolution tags; this tool's JSON record of
    the voxel size, class names and `metadata` either way (TypeError if `metadata` is
    not JSON-serialisable), and the compression (``"none"`` for None).

    An ImageJ hyperstack cannot hold a plane one pixel high or wide (tifffile writes it
    as one page of another shape); a plain TIFF keeps the shape and our axes.
    """
    doc = ours_document(
        spacing=sp, unit=unit, axes=axes, class_names=class_names, metadata=metadata
    )
    try:
        info = json.dumps(doc)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata: expected JSON-serialisable values ({exc})") from exc
    if compression is not None and compression.lower() == "none":
        compression = None
    f = unit_factor(unit) or 1.0
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if (
        dtype.newbyteorder("=") in _IMAGEJ_DTYPES
        and nbytes < _BIGTIFF_BYTES
        and min(shape[-2:]) > 1
    ):
        return {
            "compression": compression,
            "imagej": True,
            "resolution": (1.0 / sp[2], 1.0 / sp[1]),
            "metadata": {
                "axes": axes,
                "spacing": sp[0],
                "unit": _imagej_unit(unit),
                "Info": info,
            },
        }
    return {
        "compression": compression,
        "bigtiff": nbytes >= _BIGTIFF_BYTES,
        # plain TIFF readers know inch and cm only
        "resolution": (1e4 / (sp[2] * f), 1e4 / (sp[1] * f)),
        "resolutionunit": "CENTIMETER",
        "metadata": doc,
    }


def write_tiff(
    path: str | os.PathLike[str],
    data: Any,
    *,
    spacing: float | tuple[float, float, float] = (1.0, 1.0, 1.0),
    unit: str = "µm",
    class_names: Sequence[str] | None = None,
    overwrite: bool = False,
    compression: str | None = "zlib",
    metadata: Mapping[str, Any] | None = None,
    axes: str = "ZYX",
) -> Path:
    """Write a volume as TIFF, atomically, keeping voxel size and class names.

    uint8, uint16 and float32 (and bool, stored as uint8) are written as an ImageJ
    hyperstack, so Fiji and napari see the voxel size; other dtypes (e.g. uint32
    instance ids) as a plain TIFF (BigTIFF above 4 GB) with resolution tags. Either way
    a JSON record of `spacing`, `unit`, `class_names` and `metadata` is stored (ImageJ
    'Info' property or the image description) and read back by :func:`read_volume`.

    Parameters
    ----------
    path : str or path
        Target file.
    data : array-like, shape (Z, Y, X) or (Z, C, Y, X)
        The volume; ``(Z, C, Y, X)`` with ``axes="ZCYX"`` for multi-channel crops.
    spacing : float or (z, y, x)
        Voxel size in `unit`.
    unit : str
        Length unit of `spacing`.
    class_names : sequence of str, optional
        Names of the label values, for label volumes.
    overwrite : bool
        Replace an existing file.
    compression : str or None
        tifffile compression (``"zlib"``, ``"lzw"``, ``"zstd"``...); None or ``"none"``
        for uncompressed (which can be memory-mapped).
    metadata : dict, optional
        Extra JSON-serialisable values, returned as ``Volume.metadata``.
    axes : {"ZYX", "ZCYX"}
        Axis order of `data`.

    Returns
    -------
    Path
        `path`.

    Raises
    ------
    InputError
        If the file exists and `overwrite` is False, or `spacing`/`unit` is invalid.
    ValueError, TypeError
        If `data` does not match `axes` or has an unsupported dtype, or `metadata` is
        not JSON-serialisable.
    """
    import tifffile

    target = Path(path)
    if axes not in ("ZYX", "ZCYX"):
        raise ValueError(f"axes: expected 'ZYX' or 'ZCYX'; got {axes!r}")
    sp = _checked_spacing(spacing, unit)
    arr = np.asarray(data)
    if arr.ndim != len(axes):
        raise ValueError(
            f"data: expected {len(axes)} dimensions ({axes}); got shape {fmt_shape(arr.shape)}"
        )
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"data: expected a boolean, integer or float dtype; got {arr.dtype}")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    kwargs = _tiff_kwargs(
        arr.dtype,
        arr.shape,
        sp,
        unit,
        axes,
        class_names=class_names,
        metadata=metadata,
        compression=compression,
    )
    with atomic_path(target, overwrite=overwrite) as tmp:
        tifffile.imwrite(tmp, arr, photometric="minisblack", **kwargs)
    return target


class _Abort(Exception):
    """Raised inside the writer thread's page source to stop a TIFF being written."""


_DONE = object()


class TiffSlabWriter:
    """Write a ``(Z, Y, X)`` volume as TIFF slab by slab, atomically.

    A thread runs :func:`tifffile.imwrite` on the pages as :meth:`write` hands them
    over (two slabs at most wait in between), so the whole volume is never in memory
    and compression runs beside the caller's work. The file is written as
    :func:`write_tiff` writes it (ImageJ hyperstack, or a plain BigTIFF from 4 GiB),
    to a temp path renamed over `path` by :meth:`finish`; :meth:`abort` -- also on
    leaving a ``with`` block early or by an exception -- leaves nothing.

    Parameters
    ----------
    path : str or path
        Target file.
    shape : (Z, Y, X)
    dtype : uint8, uint16 or float32 (ImageJ) or any integer/float dtype
    spacing, unit, class_names, overwrite, compression, metadata
        As :func:`write_tiff`.

    Raises
    ------
    InputError
        If the file exists and `overwrite` is False, or `spacing`/`unit` is invalid.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        shape: Sequence[int],
        dtype: Any,
        *,
        spacing: float | tuple[float, float, float] = (1.0, 1.0, 1.0),
        unit: str = "µm",
        class_names: Sequence[str] | None = None,
        overwrite: bool = False,
        compression: str | None = "zlib",
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        import queue
        import threading

        self.path = Path(path)
        self.shape = tuple(int(n) for n in shape)
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"shape: expected a non-empty (Z, Y, X); got {self.shape}")
        self.dtype = np.dtype(dtype)
        if self.dtype.kind not in "iuf":
            raise TypeError(f"dtype: expected an integer or float dtype; got {self.dtype}")
        if not overwrite and self.path.exists():
            raise InputError(
                f"{self.path}: already exists; pass --overwrite (overwrite=True) to replace it"
            )
        sp = _checked_spacing(spacing, unit)
        self._kwargs = _tiff_kwargs(
            self.dtype,
            self.shape,
            sp,
            unit,
            "ZYX",
            class_names=class_names,
            metadata=metadata,
            compression=compression,
        )
        self._overwrite = overwrite
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._written = 0
        self._closed = False
        self._commit = False
        self._decided = threading.Event()
        self._flushed = threading.Event()  # every page is in the temp file (or it failed)
        self._thread = threading.Thread(target=self._work, name="tiff-writer", daemon=True)
        self._thread.start()

    def _pages(self) -> Any:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, _Abort):
                raise item
            yield from item

    def _work(self) -> None:
        import tifffile

        try:
            with atomic_path(self.path, overwrite=self._overwrite) as tmp:
                tifffile.imwrite(
                    tmp,
                    self._pages(),
                    shape=self.shape,
                    dtype=self.dtype,
                    photometric="minisblack",
                    **self._kwargs,
                )
                # All pages are in the temp file; it replaces `path` only on finish().
                self._flushed.set()
                self._decided.wait()
                if not self._commit:
                    raise _Abort()
        except BaseException as exc:
            self._error = exc
        finally:
            self._flushed.set()

    def _put(self, item: Any) -> None:
        import queue

        while True:
            if not self._thread.is_alive():
                raise self._error or RuntimeError(f"{self.path}: the TIFF writer stopped")
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def todo(self) -> list[tuple[int, int]]:
        """The planes still to write (a TIFF is written in order, never resumed)."""
        return [(self._written, self.shape[0])] if self._written < self.shape[0] else []

    def write(self, start: int, data: Any) -> None:
        """Write planes ``start .. start + len(data)``, shape ``(n, Y, X)``; `start`
        must be the first plane not yet written (slabs come in order)."""
        data = np.asarray(data)
        if start != self._written:
            raise ValueError(f"{self.path}: slab at plane {start}, expected {self._written}")
        if data.ndim != 3 or tuple(data.shape[1:]) != self.shape[1:]:
            raise ValueError(
                f"slab of shape {fmt_shape(data.shape)} does not fit {fmt_shape(self.shape)}"
            )
        if self._written + data.shape[0] > self.shape[0]:
            raise ValueError(f"{self.path}: more than {self.shape[0]} planes written")
        self._put(data.astype(self.dtype, copy=False))
        self._written += int(data.shape[0])

    def flush(self) -> None:
        """Wait until every page is in the temp file, without renaming it into place:
        with several outputs, all are flushed before any is renamed, so a full disk
        leaves none of them (then :meth:`finish` each, or :meth:`abort`).

        Raises
        ------
        ValueError
            If planes are missing; whatever the writer raised.
        """
        import queue

        if self._written != self.shape[0]:
            raise ValueError(f"{self.path}: {self._written} of {self.shape[0]} planes written")
        if self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_DONE)
        self._flushed.wait()
        if self._error is not None:
            raise self._error

    def finish(self) -> Path:
        """Wait for the last page and rename the file into place.

        Raises
        ------
        ValueError
            If planes are missing; whatever the writer raised.
        """
        import queue

        if self._written != self.shape[0]:
            self.abort()
            raise ValueError(f"{self.path}: {self._written} of {self.shape[0]} planes written")
        self._closed = True
        self._commit = True
        self._decided.set()
        if self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.path

    def abort(self) -> None:
        """Stop writing and remove the temp file; `path` is left as it was."""
        if self._closed:
            return
        self._closed = True
        self._decided.set()
        if self._thread.is_alive():
            with contextlib.suppress(BaseException):  # the writer may have stopped on its own
                self._put(_Abort())
            self._thread.join()

    def __enter__(self) -> TiffSlabWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()
