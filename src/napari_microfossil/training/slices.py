"""Training planes: :class:`SliceSet`, the slice syntax, cutting planes out of a
volume, and the random train/validation split."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .._progress import Progress, ProgressGen, drain
from ..axes import AXES, take_plane
from ..errors import InputError
from ..normalise import (
    Normalisation,
    apply_normalisation,
    intensity_range,
    iter_presmooth,
    iter_smoothed_planes,
)


@dataclass
class SliceSet:
    """2D training or validation slices.

    ``images`` are normalised float32 planes, ``labels`` uint8 planes of the same shape
    (255 = unlabelled, ignored), ``sources`` say where each came from ("scan.tif z=10").
    """

    images: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def extend(self, other: SliceSet) -> None:
        self.images.extend(other.images)
        self.labels.extend(other.labels)
        self.sources.extend(other.sources)


def parse_slices(text: str, option: str = "--slices") -> dict[str, list[int]]:
    """Parse ``"z:10,40,70;y:5"`` into ``{"z": [10, 40, 70], "y": [5]}``.

    Raises
    ------
    InputError
        On a malformed spec, naming ``option``.
    """
    out: dict[str, list[int]] = {}
    for part in str(text).replace(" ", "").split(";"):
        if not part:
            continue
        axis, sep, nums = part.partition(":")
        if not sep or axis not in AXES or not nums:
            raise InputError(f"{option}: expected e.g. 'z:10,40,70' or 'z:10;y:5', got {text!r}")
        try:
            idx = [int(n) for n in nums.split(",") if n]
        except ValueError:
            raise InputError(f"{option}: slice numbers must be integers, got {text!r}") from None
        out.setdefault(axis, []).extend(idx)
    if not out:
        raise InputError(f"{option}: no slices in {text!r}")
    return out


def slices_from_volume(
    image: Any,
    labels: Any,
    slices: Mapping[str, Sequence[int]],
    *,
    normalisation: Normalisation | None = None,
    value_range: tuple[float, float] | None = None,
    name: str = "volume",
) -> SliceSet:
    """Cut labelled training planes out of a volume.

    Parameters
    ----------
    image, labels : array-like, shape (Z, Y, X)
    slices : dict
        Axis (``"z"``, ``"y"``, ``"x"``) to slice indices.
    normalisation, value_range
        How to normalise; ``value_range`` defaults to the (smoothed) volume's
        percentiles. With ``normalisation.smooth > 0`` the whole volume is smoothed
        first, exactly as inference will smooth it.
    """
    if tuple(image.shape) != tuple(labels.shape):
        raise InputError(
            f"labels: expected the image's shape {tuple(image.shape)}, got {tuple(labels.shape)}"
        )
    norm = normalisation or Normalisation()
    image, norm = drain(iter_presmooth(image, norm))
    lo, hi = value_range if value_range is not None else intensity_range(image, norm)
    out = SliceSet()
    for axis, indices in slices.items():
        if axis not in AXES:
            raise InputError(f"slices: expected axes among 'z', 'y', 'x', got {axis!r}")
        n = image.shape[AXES.index(axis)]
        for i in indices:
            if not 0 <= int(i) < n:
                raise InputError(f"slices: {axis}={i} is outside the volume (0..{n - 1})")
            out.images.append(apply_normalisation(take_plane(image, axis, int(i)), lo, hi, norm))
            out.labels.append(take_plane(labels, axis, int(i)).astype(np.uint8))
            out.sources.append(f"{name} {axis}={int(i)}")
    return out


def iter_slices_from_planes(
    image: Any,
    labels: Any,
    slices: Mapping[str, Sequence[int]],
    *,
    normalisation: Normalisation | None = None,
    value_range: tuple[float, float] | None = None,
    name: str = "volume",
) -> ProgressGen[SliceSet]:
    """:func:`slices_from_volume` reading only the planes it cuts; yields progress.

    The same planes, bit for bit, for any array-like: each labels plane is read once,
    each image plane once, or with smoothing from a block of the planes its Gaussian
    reaches (:func:`~napari_microfossil.normalise.iter_smoothed_planes`), never the
    whole volume. ``value_range`` defaults to
    :func:`~napari_microfossil.segmentation.estimate_intensity_range`: the percentiles
    of the (smoothed) volume's sampled z-planes, the estimate
    :func:`slices_from_volume` and streaming segmentation make.

    Parameters
    ----------
    image, labels : array-like, shape (Z, Y, X)
        Read with basic slicing only (numpy, zarr, the lazy volumes of :mod:`.io`).
    slices, normalisation, value_range, name
        As :func:`slices_from_volume`.

    Yields
    ------
    Progress
        With smoothing, ``"smooth"`` after each distinct plane (done/total in planes).

    Returns
    -------
    SliceSet
    """
    from ..segmentation import estimate_intensity_range

    if tuple(image.shape) != tuple(labels.shape):
        raise InputError(
            f"labels: expected the image's shape {tuple(image.shape)}, got {tuple(labels.shape)}"
        )
    wanted = _checked(slices, tuple(int(n) for n in image.shape))
    norm = normalisation or Normalisation()
    lo, hi = (
        value_range
        if value_range is not None
        else estimate_intensity_range(image, norm, smooth=norm.smooth)
    )
    cut = replace(norm, smooth=0.0)
    planes: dict[tuple[str, int], np.ndarray] = {}
    total = sum(len(set(idx)) for idx in wanted.values())
    for axis, indices in wanted.items():
        for i, plane in iter_smoothed_planes(image, AXES.index(axis), indices, norm.smooth):
            planes[axis, i] = apply_normalisation(plane, lo, hi, cut)
            if norm.smooth > 0:
                yield Progress("smooth", len(planes), total)
    out = SliceSet()
    for axis, indices in wanted.items():
        for i in indices:
            out.images.append(planes[axis, i].copy())
            out.labels.append(take_plane(labels, axis, i).astype(np.uint8))
            out.sources.append(f"{name} {axis}={i}")
    return out


def _checked(slices: Mapping[str, Sequence[int]], shape: tuple[int, ...]) -> dict[str, list[int]]:
    """`slices` with int indices; an InputError (as :func:`slices_from_volume`'s) for an
    unknown axis or a plane outside the volume."""
    out: dict[str, list[int]] = {}
    for axis, indices in slices.items():
        if axis not in AXES:
            raise InputError(f"slices: expected axes among 'z', 'y', 'x', got {axis!r}")
        n = shape[AXES.index(axis)]
        for i in indices:
            if not 0 <= int(i) < n:
                raise InputError(f"slices: {axis}={i} is outside the volume (0..{n - 1})")
        out.setdefault(axis, []).extend(int(i) for i in indices)
    return out


def split_slices(
    items: Iterable[str],
    *,
    val_fraction: float,
    rng: np.random.Generator,
    min_items: int = 2,
) -> tuple[list[int], list[int]]:
    """Indices of a random train/validation split.

    With fewer than ``min_items`` items (never fewer than 2) all of them train and the
    validation is empty; otherwise at least one item is held out, never all.
    """
    items = list(items)
    n = len(items)
    if n < max(int(min_items), 2):
        return list(range(n)), []
    order = rng.permutation(n)
    n_val = min(n - 1, max(1, round(n * val_fraction))) if n >= 2 else 0
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())
