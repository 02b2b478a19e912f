"""A small least-recently-used cache of decompressed store chunks, bounded in bytes.

Why: ``segment`` writes labels in chunks of 32 × 256 × 256 voxels, so one z-plane
read from the store decompresses 32 planes' worth of every chunk it crosses, and
scrolling through z decompresses each chunk 32 times. :class:`ChunkCache` keeps the
last chunks read (whole, decompressed), so the next 31 planes of a slab are copies
from memory. zarr 3 has no decompressed-chunk cache of its own (its ``LRUStoreCache``
of zarr 2 kept *compressed* bytes, which does not save the decompression).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

__all__ = ["DEFAULT_CACHE_BYTES", "ChunkCache"]

#: Default bound of a :class:`ChunkCache`: the chunks of two 2048² slabs of 2 MiB chunks.
DEFAULT_CACHE_BYTES = 256 * 2**20


class ChunkCache:
    """Chunks by number, dropping the least recently used beyond `max_bytes`.

    Thread-safe. The arrays are kept as given (callers hand in arrays nobody writes)
    and returned as they are: treat them as read-only.

    Parameters
    ----------
    max_bytes : int
        Most bytes of chunk data kept; 0 keeps nothing.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes: expected >= 0; got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[int, np.ndarray] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        #: Reads answered from memory / from the store (for benchmarks and tests).
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, flat: object) -> bool:
        return flat in self._items

    @property
    def nbytes(self) -> int:
        """Bytes of chunk data held now."""
        return self._nbytes

    def get(self, flat: int) -> np.ndarray | None:
        """Chunk `flat` if held (it becomes the most recent), else None."""
        with self._lock:
            data = self._items.get(flat)
            if data is None:
                self.misses += 1
                return None
            self._items.move_to_end(flat)
            self.hits += 1
            return data

    def put(self, flat: int, data: np.ndarray) -> None:
        """Keep `data` as chunk `flat`; older chunks go until the bound holds again."""
        if data.nbytes > self.max_bytes:
            return
        data.flags.writeable = False  # a reader's copy must never change the cache
        with self._lock:
            self._drop(flat)
            self._items[flat] = data
            self._nbytes += data.nbytes
            while self._nbytes > self.max_bytes:
                self._drop(next(iter(self._items)))

    def pop(self, flat: int) -> None:
        """Forget chunk `flat` (it changed in the store, or it is being edited)."""
        with self._lock:
            self._drop(flat)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._nbytes = 0

    def _drop(self, flat: int) -> None:
        old = self._items.pop(flat, None)
        if old is not None:
            self._nbytes -= old.nbytes
