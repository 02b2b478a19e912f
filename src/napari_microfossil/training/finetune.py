"""Fine-tune a model on the slices a user reviewed and corrected.

The reviewed slices of a volume split into training and held-out validation slices
(the rule every training run follows, see :mod:`napari_microfossil.workflows.train`),
the training planes cut from the volume with the model's normalisation, a default
output path beside the scan, and releasing a dropped network's memory.
"""

from __future__ import annotations

import datetime
import gc
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import drain
from ..axes import AXES
from ..errors import InputError
from ..metrics import IGNORE_INDEX
from ..model import ModelSpec
from .slices import SliceSet, slices_from_volume, split_slices

log = logging.getLogger(__name__)

#: Below this many reviewed slices, all of them train and none is held out (the
#: command line's rule too: three corrected slices all train).
MIN_SLICES_FOR_VALIDATION = 4
#: Share of the reviewed slices held out for validation.
VAL_FRACTION = 0.25


def count_slices(slices: Mapping[str, Sequence[int]]) -> int:
    """Number of slices in a ``{"z": [...], "y": [...]}`` mapping."""
    return sum(len(v) for v in slices.values())


def describe_slices(slices: Mapping[str, Sequence[int]]) -> str:
    """``"5 reviewed slices (z: 3, y: 2)"``; ``"no reviewed slices"`` when empty."""
    n = count_slices(slices)
    if n == 0:
        return "no reviewed slices"
    per_axis = ", ".join(f"{a}: {len(slices[a])}" for a in AXES if slices.get(a))
    return f"{n} reviewed slice{'s' if n != 1 else ''} ({per_axis})"


def describe_split(slices: Mapping[str, Sequence[int]], *, seed: int = 0) -> str:
    """:func:`describe_slices` and what the split does with them, e.g. ``"4 reviewed
    slices (z: 4); 1 held out for validation"``."""
    text = describe_slices(slices)
    if count_slices(slices) == 0:
        return text
    n_val = count_slices(split_reviewed(slices, seed=seed)[1])
    if n_val:
        return f"{text}; {n_val} held out for validation"
    return f"{text}; too few to hold any out: trains on all, no validation"


def split_reviewed(
    slices: Mapping[str, Sequence[int]],
    *,
    val_fraction: float = VAL_FRACTION,
    min_slices_for_validation: int = MIN_SLICES_FOR_VALIDATION,
    seed: int = 0,
) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Split reviewed slices into training and held-out validation slices.

    Parameters
    ----------
    slices : dict
        Axis (``"z"``, ``"y"``, ``"x"``) to slice indices.
    val_fraction : float
        Share held out (at least one slice, never all).
    min_slices_for_validation : int
        With fewer slices than this, all of them train and the validation is empty.
    seed : int
        Seeds the random choice of the held-out slices.

    Returns
    -------
    train, val : dict
        The same form as `slices`; `val` is empty when nothing is held out.

    Raises
    ------
    InputError
        If an axis is not ``"z"``, ``"y"`` or ``"x"``.
    """
    items: list[tuple[str, int]] = []
    for axis, indices in slices.items():
        if axis not in AXES:
            raise InputError(f"slices: expected axes among 'z', 'y', 'x', got {axis!r}")
        items.extend((axis, int(i)) for i in sorted(set(indices)))
    tr_idx, va_idx = split_slices(
        [f"{a}={i}" for a, i in items],
        val_fraction=val_fraction,
        rng=np.random.default_rng(seed),
        min_items=min_slices_for_validation,
    )

    def gather(idx: list[int]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for k in idx:
            axis, i = items[k]
            out.setdefault(axis, []).append(i)
        return {a: sorted(out[a]) for a in AXES if a in out}

    return gather(tr_idx), gather(va_idx)


def prepare_slices(
    image: Any,
    labels: Any,
    train_slices: Mapping[str, Sequence[int]],
    val_slices: Mapping[str, Sequence[int]] | None,
    spec: ModelSpec,
    *,
    name: str = "volume",
) -> tuple[SliceSet, SliceSet | None]:
    """Cut the training and validation planes out of a volume, normalised for `spec`.

    Both sets share one intensity range (that of the whole volume, as inference uses);
    with ``spec.normalisation.smooth > 0`` the volume is smoothed first, also as
    inference does.

    Parameters
    ----------
    image, labels : array-like, shape (Z, Y, X)
    train_slices, val_slices : dict
        Axis to slice indices, e.g. from :func:`split_reviewed`.
    spec : ModelSpec
        The model to train; its normalisation is applied and its classes bound the
        label values.

    Returns
    -------
    train : SliceSet
    val : SliceSet or None
        None when `val_slices` is empty.

    Raises
    ------
    InputError
        If the shapes differ, a slice is outside the volume, there is no training slice,
        or a label value has no class in `spec`.
    """
    from ..normalise import intensity_range, iter_presmooth

    if count_slices(train_slices) == 0:
        raise InputError("slices: expected at least one reviewed slice to train on, got none")
    if tuple(image.shape) != tuple(labels.shape):
        raise InputError(
            f"labels: expected the image's shape {tuple(image.shape)}, got {tuple(labels.shape)}"
        )
    # Smooth once for both sets, as inference will.
    image, norm = drain(iter_presmooth(image, spec.normalisation))
    value_range = intensity_range(image, norm)
    kw: dict[str, Any] = {"normalisation": norm, "value_range": value_range}
    train = slices_from_volume(image, labels, train_slices, name=name, **kw)
    val = (
        slices_from_volume(image, labels, val_slices, name=name, **kw)
        if val_slices and count_slices(val_slices)
        else None
    )
    n = spec.num_classes
    for data in (train, val):
        if data is None:
            continue
        for lab, source in zip(data.labels, data.sources, strict=True):
            top = int(lab[lab != IGNORE_INDEX].max(initial=0))
            if top >= n:
                raise InputError(
                    f"labels: {source} has class id {top}, but the model has only the classes "
                    f"{list(spec.class_names)} (ids 0..{n - 1})"
                )
    return train, val


def default_output_path(
    scan_path: str | os.PathLike[str] | None,
    *,
    name: str = "model",
    today: datetime.date | None = None,
    fallback_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """A new model path beside the scan: ``<scan>_finetuned_<YYYYMMDD>.safetensors``.

    An existing file is never proposed: ``_2``, ``_3``, … are appended instead.

    Parameters
    ----------
    scan_path : path or None
        The scan (file or folder of slices); None when unknown.
    name : str
        Stem used when `scan_path` is None (e.g. the image layer's name).
    today : date, optional
        The date in the name; today if omitted.
    fallback_dir : path, optional
        Where to write when the scan is unknown or its folder is not writable; the
        home folder if omitted.
    """
    date = (today or datetime.date.today()).strftime("%Y%m%d")
    folder: Path | None = None
    stem = re.sub(r"[^\w.-]+", "_", name).strip("._") or "model"
    if scan_path:
        scan = Path(scan_path)
        folder = scan.parent
        stem = scan.name
        for suffix in (".tiff", ".tif", ".zarr", ".ome"):
            if stem.lower().endswith(suffix) and len(stem) > len(suffix):
                stem = stem[: -len(suffix)]
    if folder is None or not os.access(folder, os.W_OK | os.X_OK):
        folder = Path(fallback_dir) if fallback_dir is not None else Path.home()
    path = folder / f"{stem}_finetuned_{date}.safetensors"
    k = 2
    while path.exists():
        path = folder / f"{stem}_finetuned_{date}_{k}.safetensors"
        k += 1
    return path


def release_memory() -> None:
    """Collect dropped networks and give cached CUDA memory back to the driver."""
    gc.collect()
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
