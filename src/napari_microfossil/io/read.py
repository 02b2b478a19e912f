"""Read any supported scan: the format dispatch, ``read_volume``, ``read_labels``,
``is_supported`` and ``volume_info``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .faults import check_regular
from .lazy import LazyArray
from .metadata import finish_spacing
from .slices import SliceStack, is_slice_file, read_png, read_slices
from .tiff import TIFF_SUFFIXES, read_tiff
from .volume import IMAGE_DTYPES, Read, Volume, parse_spacing
from .zarr_store import is_zarr, read_zarr

_SUPPORTED = "a .tif/.tiff file, a folder of 2D .tif/.tiff/.png slices, or a .zarr store"
_DEFAULT_LAZY_BYTES = 1 << 30


def _open(
    path: str | os.PathLike[str],
    *,
    lazy: bool | None,
    lazy_threshold_bytes: int,
    allowed: Sequence[np.dtype] | None,
    labels: bool = False,
) -> Read:
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{p}: no such file or folder; expected {_SUPPORTED}")
    check_regular(p)
    if is_zarr(p):
        return read_zarr(p, lazy, allowed, missing_chunks_ok=labels)
    if p.is_dir():
        return read_slices(p, lazy, lazy_threshold_bytes, allowed)
    suffix = p.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return read_tiff(p, lazy, lazy_threshold_bytes, allowed)
    if suffix == ".png":
        return read_png(p, allowed)
    raise InputError(f"{p}: unsupported file type {p.suffix or '(none)'!r}; expected {_SUPPORTED}")


def _volume(
    path: str | os.PathLike[str],
    r: Read,
    data: Any,
    *,
    user: tuple[float, float, float] | None,
    lazy: bool,
) -> Volume:
    """The :class:`Volume` of `data` read from `path`, with the voxel size settled."""
    sp, source = finish_spacing(r.meta, user, str(path))
    return Volume(
        data=data,
        spacing=sp,
        unit="µm",
        spacing_source=source,
        path=str(path),
        class_names=r.meta.class_names,
        lazy=lazy,
        metadata=r.meta.extra,
    )


def read_volume(
    path: str | os.PathLike[str],
    *,
    spacing: float | tuple[float, float, float] | None = None,
    lazy: bool | None = None,
    lazy_threshold_bytes: int = _DEFAULT_LAZY_BYTES,
) -> Volume:
    """Read a 3D scan as a ``(Z, Y, X)`` volume with its voxel size.

    Parameters
    ----------
    path : str or path
        A multi-page TIFF / BigTIFF / ImageJ / OME-TIFF file, a single 2D TIFF or PNG
        (read as one slice), a folder of 2D ``.tif``/``.tiff``/``.png`` slices (natural
        sort order), or a zarr / OME-Zarr store (level 0 of a multiscale image).
    spacing : float or (z, y, x), optional
        Voxel size in µm, overriding the file's metadata.
    lazy : bool, optional
        True: don't load (TIFF: memory-map if uncompressed and contiguous, else read
        pages on demand; folder: :class:`SliceStack`; zarr: the zarr array). False: load
        into memory. None (default): lazy for zarr stores, and for TIFF files and folders
        larger than `lazy_threshold_bytes` (compressed TIFF files only if larger than half
        the machine's memory, since reading them lazily is slow).
    lazy_threshold_bytes : int
        Size above which ``lazy=None`` reads lazily; 1 GiB by default.

    Returns
    -------
    Volume
        Colour images are converted to grey (with a warning), singleton axes squeezed.

    Raises
    ------
    InputError
        If the path is missing, unsupported, corrupt, not 3D, of an unsupported dtype,
        or `spacing` is invalid.
    """
    user = parse_spacing(spacing) if spacing is not None else None
    r = _open(path, lazy=lazy, lazy_threshold_bytes=lazy_threshold_bytes, allowed=IMAGE_DTYPES)
    return _volume(path, r, r.data, user=user, lazy=r.lazy)


def read_labels(
    path: str | os.PathLike[str],
    *,
    spacing: float | tuple[float, float, float] | None = None,
    lazy: bool | None = None,
) -> Volume:
    """Read an integer label volume (0 = background).

    Booleans become uint8 and signed integers the unsigned type of the same size, once
    checked to be non-negative. `class_names` is set for files written by this tool.

    Parameters
    ----------
    path : str or path
        As :func:`read_volume`.
    spacing : float or (z, y, x), optional
        Voxel size in µm, overriding the file's metadata.
    lazy : bool, optional
        True: don't load (as :func:`read_volume`); the conversions and checks then
        happen on each read. False: load into memory. None (default): lazy for zarr
        stores, loaded otherwise.

    Raises
    ------
    InputError
        As :func:`read_volume`, and if the values are not integers or are negative
        (for a lazy volume: when the negative values are read).
    """
    user = parse_spacing(spacing) if spacing is not None else None
    if lazy is None:
        lazy = is_zarr(Path(path).expanduser())
    r = _open(path, lazy=lazy, lazy_threshold_bytes=_DEFAULT_LAZY_BYTES, allowed=None, labels=True)
    kind = np.dtype(r.data.dtype).kind
    if kind == "f":
        raise InputError(
            f"{path}: labels must be integers (class or instance ids); got {r.data.dtype.name}. "
            f"Convert the file to an integer type such as uint8."
        )
    if r.lazy:
        data: Any = r.data if kind == "u" else LabelView(r.data, str(path))
        return _volume(path, r, data, user=user, lazy=True)
    return _volume(path, r, as_labels(np.asarray(r.data), str(path)), user=user, lazy=False)


def as_labels(data: np.ndarray, path: str) -> np.ndarray:
    """`data` as unsigned native-order labels (see :func:`read_labels`)."""
    kind = data.dtype.kind
    if kind == "b":
        data = data.astype(np.uint8)
    elif kind == "i":
        low = int(data.min()) if data.size else 0
        if low < 0:
            raise InputError(f"{path}: labels must be non-negative (0 = background); found {low}")
        data = data.astype(f"u{data.dtype.itemsize}")
    return data.astype(data.dtype.newbyteorder("="), copy=False)


class LabelView(LazyArray):
    """A lazy label volume of booleans or signed integers read as unsigned labels: each
    read is converted, and checked for negative values, by :func:`as_labels`."""

    def __init__(self, base: Any, path: str) -> None:
        self.base = base
        self.path = path
        self.shape = tuple(int(n) for n in base.shape)  # type: ignore[assignment]
        dt = np.dtype(base.dtype)
        self.dtype = np.dtype(np.uint8) if dt.kind == "b" else np.dtype(f"u{dt.itemsize}")

    def _read_key(self, key: tuple[int | slice, ...]) -> np.ndarray:
        return as_labels(np.asarray(self.base[key]), self.path)


def is_supported(path: Any) -> bool:
    """Cheap check that `path` looks readable by :func:`read_volume`; never raises.

    True for an existing ``.tif``/``.tiff``/``.png`` file, a zarr store, or a folder
    holding at least one 2D slice file. A list of paths is supported if all are.
    """
    try:
        if isinstance(path, (list, tuple)):
            return bool(path) and all(is_supported(p) for p in path)
        p = Path(os.fspath(path))
        if p.suffix.lower() == ".zarr":
            return p.exists()
        if p.is_file():
            return p.suffix.lower() in (*TIFF_SUFFIXES, ".png")
        if p.is_dir():
            if is_zarr(p):
                return True
            with os.scandir(p) as it:
                return any(is_slice_file(e) for e in it)
        return False
    except Exception:
        return False


def volume_info(
    path: str | os.PathLike[str], *, sample_slices: int = 16, max_exact_mb: float = 256.0
) -> dict[str, Any]:
    """Summary of a scan without loading it all: for ``microfossil info SCAN``.

    Returns
    -------
    dict
        ``path, format, shape, dtype, spacing, unit, spacing_source, extent_um, min, max,
        range_exact, size_mb, lazy, class_names`` (and ``n_files`` for a folder). The value
        range is exact for volumes up to `max_exact_mb` MB, else taken from
        `sample_slices` evenly spaced z-slices.
    """
    r = _open(path, lazy=True, lazy_threshold_bytes=0, allowed=None)
    sp, source = finish_spacing(r.meta, None, str(path))
    data = r.data
    shape = tuple(int(n) for n in data.shape)
    dtype = np.dtype(data.dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    exact = nbytes <= max_exact_mb * 1e6 or shape[0] <= sample_slices
    if exact:
        sample = np.asarray(data[...])
    else:
        zs = np.unique(np.linspace(0, shape[0] - 1, sample_slices).round().astype(int))
        sample = np.stack([np.asarray(data[int(z)]) for z in zs])
    lo = sample.min().item() if sample.size else None
    hi = sample.max().item() if sample.size else None
    info: dict[str, Any] = {
        "path": str(path),
        "format": r.format,
        "shape": shape,
        "dtype": dtype.name,
        "spacing": sp,
        "unit": "µm",
        "spacing_source": source,
        "extent_um": tuple(n * s for n, s in zip(shape, sp, strict=True)),
        "min": lo,
        "max": hi,
        "range_exact": exact,
        "size_mb": nbytes / 1e6,
        "lazy": r.lazy,
        "class_names": r.meta.class_names,
    }
    if isinstance(data, SliceStack):
        info["n_files"] = len(data.files)
    return info
