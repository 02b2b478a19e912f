"""Training from the planes it trains on: a scan or labels larger than memory (a zarr
store, a lazy view, the review's :class:`~napari_microfossil.review.StoreLabels`) is
read a plane, or a smoothing block, at a time, never whole.

:func:`iter_cut_planes` cuts the training and validation slices as the whole-volume
path (smooth the volume, estimate its range, cut) would, bit for bit: the same planes
(:func:`~napari_microfossil.training.slices.iter_slices_from_planes`), the same
intensity range (sampled z-planes, smoothed alike, the rule streaming segmentation
uses), and label ids above 254 read as 255 ("not labelled") as
:func:`~.request.unlabelled_ids` makes them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._progress import ProgressGen
from ...io.lazy import LazyArray
from ...metrics import IGNORE_INDEX
from ...normalise import Normalisation
from ...training import SliceSet
from .request import Slices, labelled_z_slices

#: Most bytes of labels one read of the labelled-plane search holds.
SCAN_BYTES = 64 << 20


def in_memory(*arrays: Any) -> bool:
    """Whether every array is a numpy array (the whole-volume path is cheap then)."""
    return all(isinstance(a, np.ndarray) for a in arrays)


class CappedLabels(LazyArray):
    """`labels` read with ids above 254 as 255 ("not labelled"), as
    :func:`~.request.unlabelled_ids` does to a whole volume, counting them.

    Attributes
    ----------
    dropped : int
        Voxels read so far whose id was above 254 (a voxel read twice counts twice).
    """

    def __init__(self, labels: Any) -> None:
        self.base = labels
        z, y, x = (int(n) for n in labels.shape)
        self.shape = (z, y, x)
        self.dtype = np.dtype(labels.dtype)
        self.dropped = 0

    def _read_key(self, key: tuple[int | slice, ...]) -> np.ndarray:
        out = np.asarray(self.base[key])
        if self.dtype.itemsize == 1:
            return out
        bad = out > IGNORE_INDEX
        n = int(np.count_nonzero(bad))
        if n:
            out = out.copy()
            out[bad] = IGNORE_INDEX
            self.dropped += n
        return out


def labelled_planes(labels: Any, *, skip: Slices | None = None) -> list[int]:
    """:func:`~.request.labelled_z_slices` of a lazy volume, read in z-slabs of at most
    :data:`SCAN_BYTES` (whole chunks where the store's chunk depth fits)."""
    nz = int(labels.shape[0])
    plane = int(np.prod(labels.shape[1:])) * np.dtype(labels.dtype).itemsize
    step = max(1, SCAN_BYTES // max(1, plane))
    depth = _chunk_depth(labels)
    if depth is not None and depth <= step:
        step -= step % depth
    skipped = set((skip or {}).get("z", []))
    found: list[int] = []
    for z0 in range(0, nz, step):
        block = np.asarray(labels[z0 : min(nz, z0 + step)])
        found.extend(z0 + j for j in labelled_z_slices(block) if z0 + j not in skipped)
    return found


def _chunk_depth(labels: Any) -> int | None:
    """The z-depth of the chunks behind `labels` (a zarr array, the review's store, a
    lazy view of either), None when not known."""
    for obj in (labels, getattr(labels, "array", None), getattr(labels, "base", None)):
        chunks = getattr(obj, "chunks", None)
        shape = getattr(obj, "shape", None)
        if (
            isinstance(chunks, tuple)
            and len(chunks) == 3
            and all(isinstance(c, (int, np.integer)) for c in chunks)
            and shape is not None
            and tuple(shape) == tuple(labels.shape)
        ):
            return int(chunks[0])
    return None


def iter_cut_planes(
    image: Any,
    labels: CappedLabels,
    train_sl: Slices,
    val_sl: Slices,
    norm: Normalisation,
    *,
    name: str,
) -> ProgressGen[tuple[SliceSet, SliceSet | None]]:
    """The training and validation slices, normalised alike (one intensity range for
    both, from the image's sampled z-planes smoothed by ``norm.smooth``); yields the
    ``"smooth"`` progress of each set."""
    from ...segmentation import estimate_intensity_range
    from ...training.slices import iter_slices_from_planes

    kw: dict[str, Any] = {
        "normalisation": norm,
        "value_range": estimate_intensity_range(image, norm, smooth=norm.smooth),
        "name": name,
    }
    train = yield from iter_slices_from_planes(image, labels, train_sl, **kw)
    val = (yield from iter_slices_from_planes(image, labels, val_sl, **kw)) if val_sl else None
    return train, val
