"""Argument checks the fossil modules share: labels, voxel size, scan."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError


def check_labels(labels: Any, name: str) -> np.ndarray:
    """`labels` as a 3D integer (or bool) array; `name` is the parameter named in errors."""
    arr = np.asarray(labels)
    if arr.ndim != 3 or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise InputError(
            f"{name}: expected a 3D (Z, Y, X) array of integer class ids, "
            f"got shape {arr.shape} dtype {arr.dtype}"
        )
    return arr


def check_spacing(spacing: Any) -> tuple[float, float, float]:
    """A voxel size ``(z, y, x)`` in µm as 3 positive floats."""
    try:
        sp = np.asarray(spacing, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(
            f"spacing: expected 3 positive numbers (z, y, x) in µm, got {spacing!r}"
        ) from None
    if sp.shape != (3,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise InputError(f"spacing: expected 3 positive numbers (z, y, x) in µm, got {spacing!r}")
    return float(sp[0]), float(sp[1]), float(sp[2])


def check_image(image: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """The scan as an array of the labels' `shape`, or None."""
    if image is None:
        return None
    img = np.asarray(image)
    if img.shape != shape:
        raise InputError(f"image: expected the same shape as the labels {shape}, got {img.shape}")
    return img
