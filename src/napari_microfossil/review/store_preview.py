"""A small read-only copy of labels kept in a zarr store, for a 3D view.

A 3D view draws the whole volume: a 2048³ store-backed layer would be read whole
(8 GiB) into one texture. :func:`iter_preview` makes a copy that is 2, 4, 8… times
smaller along every axis, down to a largest side of at most `max_side` voxels (512:
128 MiB of uint8), by the most frequent label of each 2×2×2 block, repeated (the
pyramid's rule, :func:`~napari_microfossil.io.pyramid.downsample`: no new label
appears and thin fossils survive). It reads the labels a slab of whole chunks at a
time (edits not saved yet included), so memory is one slab plus the preview.

A preview remembers which write of each chunk it shows (:attr:`Preview.gens`): given
the previous preview, :func:`iter_preview` redoes only the blocks of the chunks
edited since, so going back to 3D after a few strokes costs what the strokes touched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._progress import Progress, ProgressGen
from ..io.pyramid import MAX_SIDE, downsample

__all__ = ["Preview", "iter_preview", "preview_factor"]


@dataclass
class Preview:
    """A downsampled copy of labels.

    Attributes
    ----------
    data : ndarray, shape (ceil(Z/f), ceil(Y/f), ceil(X/f))
        The preview; voxel ``i`` stands for the voxels ``f*i … f*i+f-1`` of the labels.
    factor : int
        ``f``, a power of two (1: the labels themselves, copied).
    shape : (Z, Y, X)
        Shape of the labels it was made from.
    gens : dict
        Chunk number -> the write of that chunk the preview shows (``StoreLabels``'
        edit counter; chunks never edited are absent).
    """

    data: np.ndarray
    factor: int
    shape: tuple[int, int, int]
    gens: dict[int, int] = field(default_factory=dict)

    @property
    def scale(self) -> tuple[float, float, float]:
        """Voxel size of the preview, in voxels of the labels."""
        return (float(self.factor),) * 3

    @property
    def translate(self) -> tuple[float, float, float]:
        """Where the centre of preview voxel 0 lies, in voxels of the labels."""
        return ((self.factor - 1) / 2,) * 3


def preview_factor(shape: Iterable[int], max_side: int = MAX_SIDE) -> int:
    """The smallest power of two ``f`` with every side of `shape` / f at most `max_side`."""
    if max_side < 1:
        raise ValueError(f"max_side: expected a positive number of voxels; got {max_side}")
    biggest = max(int(n) for n in shape)
    return 1 if biggest <= max_side else 2 ** math.ceil(math.log2(biggest / max_side))


def _reduce(block: np.ndarray, factor: int) -> np.ndarray:
    while factor > 1:
        block = downsample(block, labels=True)
        factor //= 2
    return block


def iter_preview(
    labels: Any, *, max_side: int = MAX_SIDE, previous: Preview | None = None
) -> ProgressGen[Preview]:
    """Make the 3D preview of `labels`, a slab of chunks at a time.

    Parameters
    ----------
    labels : StoreLabels or array-like, shape (Z, Y, X)
        Read with numpy indexing. With a ``grid`` (a :class:`~.chunks.ChunkGrid`) and
        ``_gen`` (its edit counter), as :class:`~.labels_store.StoreLabels` has, only
        the chunks edited since `previous` are read again.
    max_side : int
        Largest side of the preview, in voxels.
    previous : Preview, optional
        The last preview of these labels: kept, and only what changed since redone.

    Yields
    ------
    Progress
        Stage ``"3D preview"``, in slabs (or chunks, for an update).

    Returns
    -------
    Preview
    """
    shape = tuple(int(n) for n in labels.shape)
    f = preview_factor(shape, max_side)
    gens = dict(getattr(labels, "_gen", {}))
    grid = getattr(labels, "grid", None)
    if previous is not None and previous.shape == shape and previous.factor == f and grid:
        changed = sorted(
            i for i in set(gens) | set(previous.gens) if gens.get(i) != previous.gens.get(i)
        )
        out = previous.data
        for k, flat in enumerate(changed):
            _redo(labels, out, f, grid.box(flat))
            yield Progress("3D preview", k + 1, len(changed))
        return Preview(out, f, shape, gens)  # type: ignore[arg-type]
    out = np.empty(tuple(-(-n // f) for n in shape), dtype=np.dtype(labels.dtype))
    edge = int(grid.chunks[0]) if grid is not None else 32
    slab = max(f, edge - edge % f) if edge >= f else f
    starts = range(0, shape[0], slab)
    for k, z0 in enumerate(starts):
        _redo(labels, out, f, (slice(z0, min(z0 + slab, shape[0])), slice(None), slice(None)))
        yield Progress("3D preview", k + 1, len(starts))
    return Preview(out, f, shape, gens)  # type: ignore[arg-type]


def _redo(labels: Any, out: np.ndarray, f: int, box: tuple[slice, ...]) -> None:
    """Recompute the preview voxels covering `box` of the labels, grown to multiples of
    `f` (so each preview voxel comes from all of its block, as in a whole-volume pass)."""
    shape = [int(n) for n in labels.shape]
    span = [s.indices(n)[:2] for s, n in zip(box, shape, strict=True)]
    lo = [a // f * f for a, _ in span]
    hi = [min(-(-b // f) * f, n) for (_, b), n in zip(span, shape, strict=True)]
    block = np.asarray(labels[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))])
    small = _reduce(block, f)
    out[tuple(slice(a // f, a // f + m) for a, m in zip(lo, small.shape, strict=True))] = small
