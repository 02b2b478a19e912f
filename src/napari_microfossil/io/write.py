"""Write volumes as TIFF, atomically, with their voxel size and class names."""

from __future__ import annotations

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
    sp = parse_spacing(spacing)
    if unit_factor(unit) is None:
        raise InputError(f"unit: expected a length unit such as 'µm' or 'nm'; got {unit!r}")
    arr = np.asarray(data)
    if arr.ndim != len(axes):
        raise ValueError(
            f"data: expected {len(axes)} dimensions ({axes}); got shape {fmt_shape(arr.shape)}"
        )
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"data: expected a boolean, integer or float dtype; got {arr.dtype}")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
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
    # An ImageJ hyperstack cannot hold a plane one pixel high or wide (tifffile writes
    # it as one page of another shape); a plain TIFF keeps the shape and our axes.
    imagej = (
        arr.dtype.newbyteorder("=") in _IMAGEJ_DTYPES
        and arr.nbytes < _BIGTIFF_BYTES
        and min(arr.shape[-2:]) > 1
    )
    if imagej:
        kwargs: dict[str, Any] = {
            "imagej": True,
            "resolution": (1.0 / sp[2], 1.0 / sp[1]),
            "metadata": {
                "axes": axes,
                "spacing": sp[0],
                "unit": _imagej_unit(unit),
                "Info": info,
            },
        }
    else:
        kwargs = {
            "bigtiff": arr.nbytes >= _BIGTIFF_BYTES,
            # plain TIFF readers know inch and cm only
            "resolution": (1e4 / (sp[2] * f), 1e4 / (sp[1] * f)),
            "resolutionunit": "CENTIMETER",
            "metadata": doc,
        }
    with atomic_path(target, overwrite=overwrite) as tmp:
        tifffile.imwrite(tmp, arr, photometric="minisblack", compression=compression, **kwargs)
    return target
