"""Pyramid levels as napari slices them: indexing returns a view, reading waits for
``np.asarray``.

napari slices a multiscale level in two steps: first the on-screen region of the
displayed axes with *every* plane of the others (``level[:, y0:y1, x0:x1]``), then the
plane it shows. With an array that reads on indexing (a zarr array, this tool's lazy
volumes) the first step reads the whole depth of the level: 2 GiB for a 1024³ scan at
full resolution. Dask arrays avoid it by indexing lazily; :class:`DeferredView` does the
same in a few lines, without dask's graphs, and reads only what napari finally asks for.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..io.lazy import normalise_key


class DeferredView:
    """A lazily indexed view of a ``(Z, Y, X)`` array (basic indexing only).

    Parameters
    ----------
    source : array-like
        Anything with ``shape``, ``dtype`` and basic indexing that returns numpy
        (a zarr array, :class:`~napari_microfossil.io.lazy.LazyArray`, a numpy array).
    """

    def __init__(self, source: Any, index: tuple[range | int, ...] | None = None) -> None:
        self.source = source
        self.index = index if index is not None else tuple(range(int(n)) for n in source.shape)
        self.dtype = np.dtype(source.dtype)
        self.shape = tuple(len(r) for r in self.index if isinstance(r, range))
        self.ndim = len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def whole(self) -> bool:
        """Whether the view shows all of its source."""
        return self.shape == tuple(self.source.shape) and all(
            isinstance(r, range) and r.step == 1 for r in self.index
        )

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> Any:
        norm = normalise_key(key, self.shape)
        if norm is None:  # fancy indexing: read, then index
            return np.asarray(self)[key]
        it = iter(norm)
        index = tuple(r[next(it)] if isinstance(r, range) else r for r in self.index)
        return DeferredView(self.source, index)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        key: list[int | slice] = []
        flip = []
        for r in self.index:
            if isinstance(r, int):
                key.append(r)
            elif not r:
                key.append(slice(0, 0))
            elif r.step > 0:
                key.append(slice(r.start, r[-1] + 1, r.step))
            else:  # read forwards, flip after
                key.append(slice(r[-1], r.start + 1, -r.step))
                flip.append(sum(isinstance(k, slice) for k in key) - 1)
        out = np.asarray(self.source[tuple(key)])
        for axis in flip:
            out = np.flip(out, axis)
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"<deferred view {self.shape} of {self.source!r}>"


def full_resolution(level: Any) -> Any:
    """What a level shows: the source of a whole :class:`DeferredView`, else itself."""
    if isinstance(level, DeferredView) and level.whole:
        return level.source
    return level
