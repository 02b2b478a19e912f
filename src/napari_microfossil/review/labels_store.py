"""Labels kept in a zarr store and edited there: no copy of the volume in memory.

:class:`StoreLabels` is a numpy-like ``(Z, Y, X)`` array over the labels array of an
OME-Zarr store (``segment -o labels.zarr``). Reads go to the store (only what they
select); writes (a napari brush, an undo) go to an in-memory *overlay* of whole store
chunks, so the GUI never waits for the disk. The autosave takes the overlay's changed
chunks and writes them into the store.

Crash safety. zarr writes each chunk file atomically (temp file + rename), but a save
touching several chunks is not: a kill between two chunk writes would leave half a
brush stroke, and the review record (which slices were edited) would not match. So a
save goes through the review sidecar as a journal (:func:`save_into_store`):

1. the changed chunks are written to the sidecar as content-addressed chunk files
   (:mod:`.chunks`), flushed to disk;
2. a marker file in the store names the sidecar's ``review.json``;
3. ``review.json`` (version 3), naming those chunk files and the review state, replaces
   the old one in one atomic rename: this is the save's commit;
4. the chunks are written into the store (each file flushed) and the marker removed.

A store with a marker may hold part of a save; :func:`recover` (run by
:func:`open_store_labels` and by restoring the review) writes the chunks the named
record lists into it again, which ends the save the record describes. A kill before 3
leaves the last complete save (its chunks were all in the store before this save's
marker was written; rewriting them changes nothing); a kill after 3 leaves the new one.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..atomic import atomic_path
from ..io.lazy import LazyArray, normalise_key
from ..io.zarr_store import JOURNAL_MARKER
from .chunk_cache import DEFAULT_CACHE_BYTES, ChunkCache
from .chunks import CHUNK_DIR, CODEC, HASH, ChunkGrid, read_chunk, sweep_chunks, write_chunks
from .record import STATE_FILE, STORE_VERSION, fsync_path

if TYPE_CHECKING:
    from .autosave import ChunkUpdate

log = logging.getLogger(__name__)

__all__ = [
    "JOURNAL_MARKER",
    "STORE_VERSION",
    "StoreLabels",
    "open_store_labels",
    "recover",
    "save_into_store",
]


class StoreLabels(LazyArray):
    """Editable ``(Z, Y, X)`` labels in a zarr array (see the module doc).

    Parameters
    ----------
    array : zarr.Array
        The labels, opened for writing (``mode="r+"``).
    path : Path
        The store's folder (where :data:`JOURNAL_MARKER` goes).
    cache_bytes : int
        Bound of :attr:`cache`, the decompressed chunks kept for reading (256 MiB).

    Attributes
    ----------
    grid : ChunkGrid
        The store's chunks: the overlay and the autosave work in whole chunks of it.

    Notes
    -----
    Basic indexing (ints, slices) reads only the chunks it crosses, through :attr:`cache`
    (whole decompressed chunks, so scrolling through the planes of a chunk reads it
    once); a selection larger than the cache is one zarr read. An index array per axis
    (napari's ``data[indices]``) reads only the chunks holding those voxels;
    ``np.asarray`` reads everything.
    """

    def __init__(
        self, array: Any, path: str | os.PathLike[str], *, cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        if len(array.shape) != 3:
            raise ValueError(f"array: expected (Z, Y, X); got shape {tuple(array.shape)}")
        self.array = array
        self.path = Path(os.path.abspath(path))
        z, y, x = (int(n) for n in array.shape)
        self.shape = (z, y, x)
        self.dtype = np.dtype(array.dtype)
        self.chunks = tuple(int(c) for c in array.chunks)
        self.grid = ChunkGrid(self.shape, self.chunks)
        self._lock = threading.RLock()
        self._overlay: dict[int, np.ndarray] = {}  # chunk -> its edited voxels
        self._gen: dict[int, int] = {}  # chunk -> writes so far
        self._stored: dict[int, int] = {}  # chunk -> the write the store holds
        self._chunk_bytes = int(np.prod(self.chunks)) * self.dtype.itemsize
        #: Decompressed store chunks last read (a plane read decompresses whole chunks;
        #: the next planes of those chunks then come from memory). Never holds a chunk
        #: of the overlay.
        self.cache = ChunkCache(cache_bytes)
        #: Saves the edits into the store the proper way (the review's autosave sets it).
        self.flush_hook: Callable[[], None] | None = None
        self._exit_hooked = False  # the first edit makes the exit save what is unsaved

    def __repr__(self) -> str:
        return f"StoreLabels({self.path}, shape={self.shape}, {self.dtype.name})"

    # ---------------------------------------------------------------- reading

    def __getitem__(self, key: Any) -> np.ndarray:
        points = None if normalise_key(key, self.shape) is not None else _points(key)
        return super().__getitem__(key) if points is None else self._read_points(points)

    def _read_key(self, key: tuple[int | slice, ...]) -> np.ndarray:
        full = tuple(slice(k, k + 1) if isinstance(k, int) else k for k in key)
        drop = tuple(0 if isinstance(k, int) else slice(None) for k in key)
        idx = [np.arange(n)[k] for k, n in zip(full, self.shape, strict=True)]
        if not all(i.size for i in idx):
            return np.asarray(self.array[full])[drop]
        which = self.grid.of_box([slice(int(i.min()), int(i.max()) + 1) for i in idx])
        if len(which) * self._chunk_bytes > self.cache.max_bytes:
            return self._read_direct(full, idx)[drop]  # too big to keep: one zarr read
        out = np.empty(tuple(i.size for i in idx), dtype=self.dtype)
        for flat in which:
            box = self.grid.box(flat)
            sel = [
                np.flatnonzero((i >= b.start) & (i < b.stop)) for i, b in zip(idx, box, strict=True)
            ]
            if all(s.size for s in sel):
                src = _key([i[s] - b.start for i, s, b in zip(idx, sel, box, strict=True)])
                out[_key(sel)] = self._read_chunk(flat)[src]
        return out[drop]

    def _read_chunk(self, flat: int) -> np.ndarray:
        """Chunk `flat` as the labels hold it: the overlay's, else the cache's, else read
        from the store (and cached unless it was edited meanwhile)."""
        with self._lock:
            data = self._overlay.get(flat)
            gen = self._gen.get(flat)
        if data is not None:
            return data
        if (data := self.cache.get(flat)) is not None:
            return data
        data = np.asarray(self.array[self.grid.box(flat)])
        with self._lock:
            if self._gen.get(flat) == gen and flat not in self._overlay:
                self.cache.put(flat, data)
        return data

    def _read_direct(self, full: tuple[slice, ...], idx: list[np.ndarray]) -> np.ndarray:
        # The overlay first: a chunk leaves it only once the store holds it.
        overlay = list(self._overlay.items())
        out = np.asarray(self.array[full])
        if overlay:
            out = out if out.flags.writeable else out.copy()
            for flat, data in overlay:
                box = self.grid.box(flat)
                sel = [
                    np.flatnonzero((i >= b.start) & (i < b.stop))
                    for i, b in zip(idx, box, strict=True)
                ]
                if all(s.size for s in sel):
                    src = np.ix_(*(i[s] - b.start for i, s, b in zip(idx, sel, box, strict=True)))
                    out[np.ix_(*sel)] = data[src]
        return out

    def _chunk_of(self, points: tuple[np.ndarray, ...]) -> np.ndarray:
        cols = tuple(p // c for p, c in zip(points, self.chunks, strict=True))
        return np.ravel_multi_index(cols, self.grid.grid)

    def _read_points(self, points: tuple[np.ndarray, ...]) -> np.ndarray:
        shape = points[0].shape
        flat_pts = tuple(p.ravel() for p in points)
        out = np.empty(flat_pts[0].size, dtype=self.dtype)
        if out.size == 0:
            return out.reshape(shape)
        owner = self._chunk_of(flat_pts)
        in_store = np.ones(out.size, dtype=bool)
        for flat, data in list(self._overlay.items()):
            here = owner == flat
            if here.any():
                starts = [b.start for b in self.grid.box(flat)]
                out[here] = data[tuple(p[here] - s for p, s in zip(flat_pts, starts, strict=True))]
                in_store &= ~here
        if in_store.any():
            out[in_store] = self.array.vindex[tuple(p[in_store] for p in flat_pts)]
        return out.reshape(shape)

    # ---------------------------------------------------------------- writing

    def _chunk(self, flat: int) -> np.ndarray:
        """The overlay's copy of chunk `flat`, read from the store first if needed."""
        data = self._overlay.get(flat)
        if data is None:
            kept = self.cache.get(flat)
            src = self.array[self.grid.box(flat)] if kept is None else kept
            data = np.array(src, dtype=self.dtype, copy=True)
            self._overlay[flat] = data
            self.cache.pop(flat)  # the overlay's copy is the chunk now
            if not self._exit_hooked:
                from .store_flush import save_at_exit

                save_at_exit(self)
                self._exit_hooked = True
        self._gen[flat] = self._gen.get(flat, 0) + 1
        return data

    def __setitem__(self, key: Any, value: Any) -> None:
        norm = normalise_key(key, self.shape)
        with self._lock:
            if norm is not None:
                self._write_box(norm, value)
                return
            points = _points(key)
            if points is None:
                raise TypeError(
                    f"labels: cannot write with an index of type {type(key).__name__}; "
                    f"use ints, slices or one index array per axis"
                )
            self._write_points(points, value)

    def _write_box(self, key: tuple[int | slice, ...], value: Any) -> None:
        full = tuple(slice(k, k + 1) if isinstance(k, int) else k for k in key)
        idx = [np.arange(n)[k] for k, n in zip(full, self.shape, strict=True)]
        shape = tuple(i.size for i in idx)
        if not all(shape):
            return
        drop = tuple(0 if isinstance(k, int) else slice(None) for k in key)
        vals = np.empty(shape, dtype=self.dtype)
        vals[drop] = value  # broadcast as numpy would into the selection
        lo = [int(i.min()) for i in idx]
        hi = [int(i.max()) + 1 for i in idx]
        for flat in sorted(self.grid.of_box([slice(a, b) for a, b in zip(lo, hi, strict=True)])):
            box = self.grid.box(flat)
            sel = [
                np.flatnonzero((i >= b.start) & (i < b.stop)) for i, b in zip(idx, box, strict=True)
            ]
            if all(s.size for s in sel):
                dst = np.ix_(*(i[s] - b.start for i, s, b in zip(idx, sel, box, strict=True)))
                self._chunk(flat)[dst] = vals[np.ix_(*sel)]

    def _write_points(self, points: tuple[np.ndarray, ...], value: Any) -> None:
        flat_pts = tuple(p.ravel() for p in points)
        n = flat_pts[0].size
        if n == 0:
            return
        for p, size in zip(flat_pts, self.shape, strict=True):
            if p.min() < -size or p.max() >= size:
                raise IndexError(f"index out of bounds for an axis of size {size}")
        flat_pts = tuple(p % size for p, size in zip(flat_pts, self.shape, strict=True))
        vals = np.broadcast_to(np.asarray(value, dtype=self.dtype), points[0].shape).ravel()
        owner = self._chunk_of(flat_pts)
        for flat in np.unique(owner):
            here = owner == flat
            starts = [b.start for b in self.grid.box(int(flat))]
            local = tuple(p[here] - s for p, s in zip(flat_pts, starts, strict=True))
            self._chunk(int(flat))[local] = vals[here]

    # ---------------------------------------------------------------- saving

    def unsaved(self) -> tuple[dict[int, np.ndarray], dict[int, int]]:
        """Copies of the chunks edited since the store last got them, and which write of
        each the copy holds (for :meth:`stored`). Take them on the thread that edits."""
        with self._lock:
            todo = [i for i, g in self._gen.items() if self._stored.get(i) != g]
            return (
                {i: self._overlay[i].copy() for i in todo},
                {i: self._gen[i] for i in todo},
            )

    @property
    def dirty(self) -> bool:
        """Whether edits are not in the store yet."""
        return any(self._stored.get(i) != g for i, g in self._gen.items())

    def write_to_store(self, chunks: Mapping[int, np.ndarray]) -> None:
        """Write whole chunks into the store (any thread), each flushed to disk.

        Chunks being written stay in the overlay (until :meth:`stored`), so no reader of
        this array reads their files meanwhile.
        """
        for flat, data in sorted(chunks.items()):
            self.cache.pop(flat)
            self.array[self.grid.box(flat)] = data
            if (file := self._chunk_file(flat)) is not None:
                fsync_path(file)  # zarr renames it into place; this survives a power cut

    def _chunk_file(self, flat: int) -> Path | None:
        from ..io.zarr_store import _chunk_key

        coords = tuple(int(i) for i in np.unravel_index(flat, self.grid.grid))
        key = _chunk_key(self.array, coords)
        return None if key is None else self.path / key

    def stored(self, gens: Mapping[int, int]) -> None:
        """The store holds write `gens[i]` of chunk `i`: chunks not written since leave
        the overlay (reads go to the store again), so memory holds only recent edits."""
        with self._lock:
            for flat, g in gens.items():
                self._stored[flat] = g
                if self._gen.get(flat) == g:
                    self._overlay.pop(flat, None)

    def discard(self) -> None:
        """Forget unsaved edits (after a restore: the store is what counts)."""
        with self._lock:
            self._overlay.clear()
            self._gen.clear()
            self._stored.clear()
            self.cache.clear()


def _key(parts: list[np.ndarray]) -> Any:
    """An index selecting the outer product of `parts` (sorted index arrays, one per
    axis): slices where each is evenly spaced (a view, fast), else ``np.ix_``."""
    spans = []
    for a in parts:
        step = int(a[1] - a[0]) if a.size > 1 else 1
        if step < 1 or (a.size > 2 and not np.all(np.diff(a) == step)):
            return np.ix_(*parts)
        spans.append(slice(int(a[0]), int(a[-1]) + 1, step))
    return tuple(spans)


def _points(key: Any) -> tuple[np.ndarray, ...] | None:
    """One integer index array per axis (napari's ``data[indices]``), else None."""
    if not isinstance(key, tuple) or len(key) != 3:
        return None
    arrays = [np.asarray(k) for k in key]
    if not all(a.dtype.kind in "iu" for a in arrays):
        return None
    try:
        return tuple(np.broadcast_arrays(*arrays))
    except ValueError:
        return None


# -------------------------------------------------------------------- opening


def open_store_labels(path: str | os.PathLike[str]) -> StoreLabels:
    """The labels of the zarr store at `path`, editable (after :func:`recover`).

    `path` is an OME-Zarr image group (its level 0) or a zarr array.

    Raises
    ------
    InputError
        If `path` is not a writable zarr store of one 3D integer array.
    """
    import zarr

    from ..errors import InputError
    from ..io.store import LEVEL0

    p = Path(path)
    if not os.access(p, os.W_OK):
        raise InputError(f"{p}: not writable; labels can be edited only in a writable store")
    recover(p)
    try:
        node: Any = zarr.open(store=str(p), mode="r+")
        arr: Any = node[LEVEL0] if isinstance(node, zarr.Group) else node
    except Exception as exc:
        raise InputError(f"{p}: cannot open as zarr labels ({exc})") from exc
    if len(arr.shape) != 3 or np.dtype(arr.dtype).kind not in "iu":
        raise InputError(
            f"{p}: expected (Z, Y, X) integer labels; got {arr.dtype} {tuple(arr.shape)}"
        )
    return StoreLabels(arr, p)


def recover(path: str | os.PathLike[str]) -> int:
    """Finish a save that stopped while writing into the store at `path`.

    If the store has a :data:`JOURNAL_MARKER`, the chunks listed by the ``review.json``
    it names are written into the store again (each checked against its hash) and the
    marker goes. Returns how many chunks were written (0 with no marker).
    """
    import zarr

    from ..io.store import LEVEL0

    store = Path(path)
    marker = store / JOURNAL_MARKER
    try:
        record_path = Path(json.loads(marker.read_text())["record"])
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: unreadable journal marker (%s); removed", marker, exc)
        marker.unlink(missing_ok=True)
        return 0
    pending = _pending_for(store, record_path)
    if pending is None:
        log.warning(
            "%s: a save into this store stopped and its record %s is gone; the store may "
            "hold part of that save",
            store,
            record_path,
        )
        marker.unlink(missing_ok=True)
        return 0
    chunks, names = pending
    node: Any = zarr.open(store=str(store), mode="r+")
    arr: Any = node[LEVEL0] if isinstance(node, zarr.Group) else node
    labels = StoreLabels(arr, store)
    root = record_path.parent / CHUNK_DIR
    data = {
        i: read_chunk(root, name, labels.grid.chunk_shape(i), labels.dtype)
        for i, name in names.items()
    }
    if tuple(labels.chunks) != chunks:
        raise ValueError(f"{record_path}: its chunks {chunks} are not those of {store}")
    labels.write_to_store(data)
    marker.unlink(missing_ok=True)
    log.info("%s: finished an interrupted save (%d chunks from %s)", store, len(data), record_path)
    return len(data)


def _pending_for(store: Path, record_path: Path) -> tuple[tuple[int, ...], dict[int, str]] | None:
    try:
        rec = json.loads(record_path.read_text())
        lab = rec["labels"]
        if rec.get("version") != STORE_VERSION or Path(lab["store"]) != store.absolute():
            return None
        return tuple(int(c) for c in lab["chunks"]), {
            int(i): str(n) for i, n in lab["pending"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


# -------------------------------------------------------------------- saving


def labels_record(labels: StoreLabels, names: Mapping[int, str]) -> dict[str, Any]:
    """``review.json``'s ``labels`` entry for labels in a store, `names` pending."""
    return {
        "layout": "store",
        "store": str(labels.path.absolute()),
        "folder": CHUNK_DIR,
        "chunks": list(labels.chunks),
        "codec": CODEC,
        "hash": HASH,
        "pending": {str(i): n for i, n in sorted(names.items())},
    }


def save_into_store(
    folder: Path,
    update: ChunkUpdate,
    record: dict[str, Any],
    write: Any,
) -> Path:
    """Save `update` (of :class:`StoreLabels`) through the journal in `folder`.

    `record` is ``review.json`` without its labels entry; ``write(folder, record)``
    replaces it atomically. See the module doc for the order of the steps.
    """
    labels = update.labels
    assert isinstance(labels, StoreLabels)
    root = folder / CHUNK_DIR
    names = write_chunks(root, labels, labels.grid, sorted(update.copies), copies=update.copies)
    marker = labels.path / JOURNAL_MARKER
    with atomic_path(marker, overwrite=True) as tmp:
        tmp.write_text(json.dumps({"record": str((folder / STATE_FILE).absolute())}))
    record["labels"] = labels_record(labels, names)
    target = Path(write(folder, record))
    labels.write_to_store(update.copies)
    marker.unlink(missing_ok=True)
    labels.stored(update.gens)
    sweep_chunks(root, names.values())  # the journal of earlier saves: in the store now
    return target


def load_store_record(rec: Mapping[str, Any]) -> StoreLabels:
    """The labels a version-3 ``review.json`` names (finishing its save if needed).

    Raises
    ------
    InputError
        If the store is gone or cannot be opened for editing.
    """
    return open_store_labels(rec["labels"]["store"])
