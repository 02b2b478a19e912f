"""Bounding-box crops of a lazy volume, read through a small cache of its chunks.

The per-fossil loops (measuring, meshes, crops) read one bounding box at a time from a
lazy volume (a zarr store). Read straight from the store, every box decodes every chunk
it touches, again for each of its neighbours, and pays the store's per-call cost: for
10⁴ small fossils that was most of the run. Visited in raster order of their boxes,
neighbouring fossils share chunks, so a least-recently-used cache of a few hundred MiB
reads each chunk about once, with memory bounded by the cache, not the volume.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np

#: Default cache size, bytes.
CACHE_BYTES = 512 * 2**20
#: Block edges when the volume does not say its chunks.
DEFAULT_BLOCK = (16, 256, 256)


def is_lazy(data: Any) -> bool:
    """True for an array-like that is not in memory (not a numpy array)."""
    return data is not None and not isinstance(data, np.ndarray)


def _chunks(data: Any) -> tuple[int, int, int]:
    """The chunk edges of a zarr array or a 3D view of one; else :data:`DEFAULT_BLOCK`."""
    for obj in (data, getattr(data, "base", None)):
        chunks = getattr(obj, "chunks", None)
        if chunks is not None and len(chunks) == 3 and getattr(obj, "ndim", 3) == 3:
            if isinstance(chunks[0], int):
                return int(chunks[0]), int(chunks[1]), int(chunks[2])
    return DEFAULT_BLOCK


class CachedCrops:
    """Read-only ``(Z, Y, X)`` regions of `data` through an LRU cache of blocks.

    Parameters
    ----------
    data : (Z, Y, X) array-like
        Supports basic slicing (a zarr array or a lazy view).
    block : (bz, by, bx), optional
        Cached block edges; default the store's chunks, so one block is one decode.
    cache_bytes : int
        Most bytes of blocks kept.
    """

    def __init__(
        self,
        data: Any,
        *,
        block: tuple[int, int, int] | None = None,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self.data = data
        self.shape = tuple(int(n) for n in data.shape)
        self.dtype = np.dtype(data.dtype)
        self.ndim = 3
        self.block = block or _chunks(data)
        self.cache_bytes = int(cache_bytes)
        self._cache: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()
        self._bytes = 0

    def _block(self, key: tuple[int, int, int]) -> np.ndarray:
        got = self._cache.get(key)
        if got is not None:
            self._cache.move_to_end(key)
            return got
        region = tuple(
            slice(k * b, min((k + 1) * b, n))
            for k, b, n in zip(key, self.block, self.shape, strict=True)
        )
        got = np.asarray(self.data[region])
        self._cache[key] = got
        self._bytes += got.nbytes
        while self._bytes > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._bytes -= old.nbytes
        return got

    def __getitem__(self, key: Any) -> np.ndarray:
        if not (
            isinstance(key, tuple)
            and len(key) == 3
            and all(isinstance(k, slice) and k.step in (None, 1) for k in key)
        ):
            return np.asarray(self.data[key])
        bounds = [k.indices(n)[:2] for k, n in zip(key, self.shape, strict=True)]
        lo = [a for a, _ in bounds]
        hi = [max(a, b) for a, b in bounds]
        out = np.empty([b - a for a, b in zip(lo, hi, strict=True)], self.dtype)
        if out.size == 0:
            return out
        ranges = [
            range(a // e, math.ceil(b / e)) for a, b, e in zip(lo, hi, self.block, strict=True)
        ]
        for kz in ranges[0]:
            for ky in ranges[1]:
                for kx in ranges[2]:
                    blk = self._block((kz, ky, kx))
                    src, dst = [], []
                    for k, a, b, e in zip((kz, ky, kx), lo, hi, self.block, strict=True):
                        s0, s1 = max(a, k * e), min(b, (k + 1) * e)
                        src.append(slice(s0 - k * e, s1 - k * e))
                        dst.append(slice(s0 - a, s1 - a))
                    out[tuple(dst)] = blk[tuple(src)]
        return out
