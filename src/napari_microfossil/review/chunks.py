"""Labels stored as chunk files, so that an autosave writes only what an edit touched.

A :class:`ChunkGrid` cuts a (Z, Y, X) volume into chunks and says which chunks an edit
touched (a box, a napari paint event's atoms). Chunk files are *content-addressed*: a
file's name is the hash of the chunk's bytes, so

- a save never overwrites a file that the last complete save still names (copy on
  write: only ``review.json``, replaced in one atomic rename, says which files are the
  labels), and a kill at any moment leaves the last complete save readable;
- identical chunks (the background of a big scan) are one file;
- reading a chunk checks it: a damaged file no longer matches its name.

Why not a zarr store: zarr writes a changed chunk in place under its grid key, so a save
killed half way leaves a mix of two saves and nothing says which chunks are whose.

A chunk file is the chunk's C-order bytes, zstd-compressed
(``chunks/<first two hex digits>/<sha256[:32]>.zst``; the two-digit folders keep
folders small). ``review.json`` holds the grid, dtype and the name of every chunk.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path, remove_stale

#: Folder of the chunk files inside a sidecar folder.
CHUNK_DIR = "chunks"
#: How chunk files are compressed and named (kept in ``review.json``).
CODEC, HASH = "zstd", "sha256-128"
_SUFFIX = ".zst"


def default_chunks(shape: Sequence[int], dtype: Any) -> tuple[int, int, int]:
    """Chunk shape for labels of `shape` and `dtype`: 128³ for 1- and 2-byte labels,
    64³ for wider ones (2–4 MiB a chunk), no larger than the volume."""
    edge = 128 if np.dtype(dtype).itemsize <= 2 else 64
    z, y, x = (max(1, min(edge, int(n))) for n in shape)
    return z, y, x


class ChunkGrid:
    """A (Z, Y, X) volume cut into chunks; chunks are numbered in C order.

    Parameters
    ----------
    shape : (Z, Y, X)
        Shape of the volume, in voxels.
    chunks : (z, y, x), optional
        Shape of a chunk in voxels (the last ones along an axis may be smaller);
        :func:`default_chunks` by default (which needs `dtype`).
    dtype : dtype, optional
        The labels' dtype, for the default chunk shape.

    Raises
    ------
    ValueError
        If `shape` or `chunks` is not three positive ints.
    """

    def __init__(
        self, shape: Sequence[int], chunks: Sequence[int] | None = None, *, dtype: Any = np.uint8
    ) -> None:
        self.shape = tuple(int(n) for n in shape)
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"shape: expected (Z, Y, X) > 0; got {tuple(shape)}")
        got = default_chunks(self.shape, dtype) if chunks is None else chunks
        self.chunks = tuple(int(c) for c in got)
        if len(self.chunks) != 3 or min(self.chunks) < 1:
            raise ValueError(f"chunks: expected three sizes > 0; got {tuple(got)}")
        self.grid = tuple(math.ceil(n / c) for n, c in zip(self.shape, self.chunks, strict=True))

    def __repr__(self) -> str:
        return f"ChunkGrid(shape={self.shape}, chunks={self.chunks})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ChunkGrid)
            and other.shape == self.shape
            and other.chunks == self.chunks
        )

    def __hash__(self) -> int:
        return hash((self.shape, self.chunks))

    @property
    def count(self) -> int:
        """Number of chunks."""
        return math.prod(self.grid)

    def box(self, flat: int) -> tuple[slice, slice, slice]:
        """The voxels of chunk `flat`."""
        idx = np.unravel_index(int(flat), self.grid)
        z, y, x = (
            slice(int(i) * c, min((int(i) + 1) * c, n))
            for i, c, n in zip(idx, self.chunks, self.shape, strict=True)
        )
        return z, y, x

    def chunk_shape(self, flat: int) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.box(flat))

    def of_box(self, box: Sequence[slice]) -> set[int]:
        """Chunks that the box of voxels `box` (slices with steps of 1) overlaps."""
        ranges = []
        for s, c, n in zip(box, self.chunks, self.shape, strict=True):
            start, stop, _ = s.indices(n)
            if stop <= start:
                return set()
            ranges.append(range(start // c, (stop - 1) // c + 1))
        return {int(np.ravel_multi_index(i, self.grid)) for i in itertools.product(*ranges)}

    def of_points(self, indices: Sequence[Any]) -> set[int]:
        """Chunks holding the voxels of a numpy multi-index ``(z, y, x)`` (arrays or ints)."""
        cols = [
            np.asarray(i, dtype=np.int64).ravel() // c
            for i, c in zip(indices, self.chunks, strict=True)
        ]
        cols = list(np.broadcast_arrays(*cols))
        if cols[0].size == 0:
            return set()
        flat = np.ravel_multi_index(tuple(cols), self.grid, mode="clip")
        return {int(i) for i in np.flatnonzero(np.bincount(flat, minlength=self.count))}

    def of_mask(self, box: Sequence[slice], mask: np.ndarray) -> set[int]:
        """Chunks where `mask` (bool, the shape of the box `box`) has a True voxel."""
        starts = [s.indices(n)[0] for s, n in zip(box, self.shape, strict=True)]
        out = set()
        for flat in self.of_box(box):
            sub = tuple(
                slice(max(c.start - a, 0), c.stop - a)
                for c, a in zip(self.box(flat), starts, strict=True)
            )
            if mask[sub].any():
                out.add(flat)
        return out

    def of_atoms(self, atoms: Iterable[Any] | None) -> set[int] | None:
        """Chunks changed by the atoms of a napari Labels ``paint`` event (or by an item
        of its undo history), read by shape as :func:`~.edits.slices_touched` does:
        masked atoms with a ``slice_key`` box, or ``(indices, old, new)`` tuples.

        Returns None (all chunks may have changed) for `atoms` None or of another form.
        """
        if atoms is None:
            return None
        out: set[int] = set()
        for atom in atoms:
            key = getattr(atom, "slice_key", None)
            if key is not None:
                if len(key) != 3 or not all(isinstance(s, slice) for s in key):
                    return None
                mask = getattr(atom, "mask", None)
                if mask is not None and getattr(mask, "ndim", 0) == 3:
                    out |= self.of_mask(key, np.asarray(mask))
                else:
                    out |= self.of_box(key)
            elif isinstance(atom, (tuple, list)) and len(atom) == 3:
                indices = atom[0]
                if not isinstance(indices, (tuple, list)) or len(indices) != 3:
                    return None
                try:
                    out |= self.of_points(indices)
                except (TypeError, ValueError):
                    return None
            else:
                return None
        return out


# ---------------------------------------------------------------------- chunk files


def chunk_digest(data: np.ndarray) -> str:
    """The name of a chunk's file: the first 128 bits of the SHA-256 of its bytes."""
    return hashlib.sha256(np.ascontiguousarray(data).view(np.uint8).data).hexdigest()[:32]


def chunk_path(root: Path, name: str) -> Path:
    return root / name[:2] / f"{name}{_SUFFIX}"


def write_chunk(root: Path, data: np.ndarray) -> str:
    """Write one chunk unless a file of the same content is there; returns its name."""
    import imagecodecs

    data = np.ascontiguousarray(data)
    name = chunk_digest(data)
    path = chunk_path(root, name)
    if path.is_file():
        return name  # content-addressed: a file of that name holds these bytes
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(imagecodecs.zstd_encode(data.view(np.uint8).data, level=1))  # type: ignore[arg-type]
        f.flush()
        os.fsync(f.fileno())
    return name


def read_chunk(root: Path, name: str, shape: Sequence[int], dtype: Any) -> np.ndarray:
    """Read one chunk and check its bytes against its name.

    Raises
    ------
    ValueError
        If the file is damaged (it does not decode to bytes of that name and size).
    OSError
        If it cannot be read.
    """
    import imagecodecs

    path = chunk_path(root, name)
    raw = path.read_bytes()
    try:
        data = np.frombuffer(imagecodecs.zstd_decode(raw), dtype=dtype)
    except Exception as exc:  # the codec's own error type
        raise ValueError(f"{path}: not a zstd chunk ({exc})") from None
    if data.size != math.prod(shape) or chunk_digest(data) != name:
        raise ValueError(f"{path}: its content does not match its name")
    return data.reshape(tuple(shape))


def io_threads() -> int:
    """Threads that read or write chunk files: the cores, at most 4 (a GUI stays live)."""
    return max(1, min(4, os.cpu_count() or 1))


def _as_unsigned(data: np.ndarray) -> np.ndarray:
    # The bits of signed labels, as today's snapshot stores them (no copy).
    return data.view(f"u{data.dtype.itemsize}") if data.dtype.kind == "i" else data


def write_chunks(
    root: Path,
    labels: Any,
    grid: ChunkGrid,
    which: Iterable[int],
    *,
    copies: Mapping[int, np.ndarray] | None = None,
    threads: int | None = None,
) -> dict[int, str]:
    """Write the chunks `which` of `labels`; returns their names by chunk number.

    A chunk in `copies` is written from there, any other is read from `labels` (any
    array-like with numpy indexing) on this thread's pool. Hashing and compressing
    release the GIL, so `threads` overlap (:func:`io_threads` by default).
    """
    copies = copies or {}
    threads = io_threads() if threads is None else threads

    def one(flat: int) -> tuple[int, str]:
        got = copies.get(flat)
        data = np.asarray(labels[grid.box(flat)]) if got is None else got
        return flat, write_chunk(root, _as_unsigned(np.ascontiguousarray(data)))

    todo = list(which)
    if threads <= 1 or len(todo) < 4:
        return dict(one(i) for i in todo)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return dict(pool.map(one, todo))


def read_chunks(
    root: Path, names: Sequence[str], grid: ChunkGrid, dtype: Any, *, threads: int | None = None
) -> np.ndarray:
    """The whole volume from its chunk files (each checked against its name).

    Raises
    ------
    ValueError
        If a chunk file is damaged or `names` does not fit the grid.
    OSError
        If a chunk file is missing or unreadable.
    """
    if len(names) != grid.count:
        raise ValueError(f"names: expected {grid.count} chunk names; got {len(names)}")
    out = np.empty(grid.shape, dtype=dtype)

    def one(flat: int) -> None:
        box = grid.box(flat)
        out[box] = read_chunk(root, names[flat], grid.chunk_shape(flat), out.dtype)

    with ThreadPoolExecutor(max_workers=io_threads() if threads is None else threads) as pool:
        for _ in pool.map(one, range(grid.count)):
            pass
    return out


def remove_chunks(root: Path, names: Iterable[str]) -> None:
    """Delete the chunk files `names` (those the last save no longer names)."""
    for name in names:
        with contextlib.suppress(OSError):
            chunk_path(root, name).unlink()


def sweep_chunks(root: Path, keep: Iterable[str]) -> list[Path]:
    """Delete every chunk file under `root` not in `keep`, and stale temp files; returns
    what was removed. For a save that knows no earlier save's names (the first of a
    process), so that what killed saves left does not pile up."""
    keep_set = set(keep)
    removed: list[Path] = []
    for sub in _subfolders(root):
        removed += remove_stale(sub)
        for p in sub.glob(f"*{_SUFFIX}"):
            if p.name[: -len(_SUFFIX)] not in keep_set:
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p)
    return removed


def _subfolders(root: Path) -> Iterator[Path]:
    with contextlib.suppress(OSError):
        yield from (p for p in root.iterdir() if p.is_dir() and len(p.name) == 2)
