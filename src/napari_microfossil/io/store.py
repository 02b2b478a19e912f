"""Chunked output volumes: OME-Zarr stores written slab by slab, and resumable.

Every volume the tool makes can go to a ``.zarr`` folder instead of a TIFF: an OME-Zarr
(NGFF 0.5, zarr format 3) image group holding one array ``"0"`` with the voxel size in
its multiscales metadata and this tool's record (class names, extra metadata) in its
attributes, so :func:`~napari_microfossil.io.read_volume` (and napari, Fiji, ome-zarr)
read it back lazily.

A store is written in slabs of whole chunks along z. Each finished slab is recorded in
a small progress file inside the store, replaced atomically; the file goes once the
last slab is written (:meth:`ChunkedOutput.finish`). A store that still has the file is
*incomplete*: a killed or cancelled run leaves the slabs done so far, readers warn, and
``create_output(..., resume=True)`` reopens it with the planes already done, so a run
can continue where it stopped. Slabs are chunk-aligned, so writing one slab never
rewrites a chunk of another: a kill during a write can only spoil planes the progress
file does not yet list.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from .metadata import META_KEY, ours_document, unit_factor
from .volume import fmt_shape, parse_spacing

log = logging.getLogger(__name__)

#: Inside an incomplete store: which planes are written and for what request.
PROGRESS_FILE = ".microfossil-progress.json"
#: The one array of the image group (OME-Zarr level 0).
LEVEL0 = "0"
#: Target bytes of one chunk: large enough for fast writes, small enough for one slab
#: of a 2048² plane to stay a few tens of MiB.
CHUNK_BYTES = 2**21


def default_chunks(shape: Sequence[int], dtype: Any) -> tuple[int, int, int]:
    """Chunk edges for a ``(Z, Y, X)`` volume: up to 256² in-plane, z to ~2 MiB."""
    z, y, x = (int(n) for n in shape)
    itemsize = np.dtype(dtype).itemsize
    cy, cx = min(y, 256), min(x, 256)
    cz = max(1, min(z, CHUNK_BYTES // max(1, cy * cx * itemsize)))
    return (cz, cy, cx)


def _ome_attrs(
    name: str, spacing: tuple[float, float, float], unit: str, ndim: int = 3
) -> dict[str, Any]:
    f = unit_factor(unit) or 1.0
    scale = [s * f for s in spacing]  # stored in micrometres, whatever the input unit
    return {
        "version": "0.5",
        "multiscales": [
            {
                "name": name,
                "axes": [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"[-ndim:]],
                "datasets": [
                    {
                        "path": LEVEL0,
                        "coordinateTransformations": [{"type": "scale", "scale": scale}],
                    }
                ],
            }
        ],
    }


@dataclass(frozen=True)
class Incomplete:
    """What the progress file of an incomplete store says.

    Attributes
    ----------
    done : list of (start, stop)
        z-plane ranges written, sorted and merged.
    total : int
        Planes in the volume.
    request : dict
        What the writer recorded about the job (compared on resume).
    """

    done: list[tuple[int, int]]
    total: int
    request: dict[str, Any] = field(default_factory=dict)

    @property
    def planes_done(self) -> int:
        return sum(b - a for a, b in self.done)


def incomplete(path: str | Path) -> Incomplete | None:
    """The progress of an incomplete store at `path`; None for a complete store (or not
    a store of this tool)."""
    p = Path(path) / PROGRESS_FILE
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{path}: its progress file {PROGRESS_FILE} cannot be read ({exc})"
        ) from exc
    done = [(int(a), int(b)) for a, b in doc.get("done", [])]
    return Incomplete(
        done=_merge(done), total=int(doc.get("total", 0)), request=doc.get("request", {})
    )


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


class ChunkedOutput:
    """A ``(Z, Y, X)`` OME-Zarr volume being written slab by slab (see the module doc).

    Make one with :func:`create_output`. ``array`` is the zarr array (read it lazily
    while writing, e.g. for a three-axis fusion's halo).
    """

    def __init__(self, path: Path, array: Any, progress: Incomplete) -> None:
        self.path = path
        self.array = array
        self._progress = progress

    @property
    def shape(self) -> tuple[int, int, int]:
        z, y, x = (int(n) for n in self.array.shape)
        return (z, y, x)

    @property
    def slab(self) -> int:
        """Planes per slab: the chunks' z edge."""
        return int(self.array.chunks[0])

    @property
    def done(self) -> list[tuple[int, int]]:
        """z-plane ranges already written (by this run or the one it resumes)."""
        return list(self._progress.done)

    @property
    def request(self) -> dict[str, Any]:
        return dict(self._progress.request)

    def todo(self) -> list[tuple[int, int]]:
        """The slabs ``(start, stop)`` still to write, in order."""
        out = []
        for a in range(0, self.shape[0], self.slab):
            b = min(a + self.slab, self.shape[0])
            if not any(s <= a and b <= e for s, e in self._progress.done):
                out.append((a, b))
        return out

    def write(self, start: int, data: np.ndarray) -> None:
        """Write planes ``start .. start + len(data)`` and record them as done.

        Raises
        ------
        ValueError
            If the slab does not start and end on chunk boundaries (or the volume's
            end), or its shape or dtype does not fit.
        """
        stop = start + int(data.shape[0])
        z = self.shape[0]
        if start % self.slab or (stop % self.slab and stop != z) or stop > z:
            raise ValueError(
                f"slab {start}:{stop} is not aligned to the {self.slab}-plane chunks of {self.path}"
            )
        if tuple(data.shape[1:]) != self.shape[1:]:
            raise ValueError(
                f"slab of shape {fmt_shape(data.shape)} does not fit {fmt_shape(self.shape)}"
            )
        self.array[start:stop] = data.astype(self.array.dtype, copy=False)
        self.record(start, stop)

    def record(self, start: int, stop: int) -> None:
        """Record planes ``start:stop`` as written (by :meth:`write`, or by another
        process writing into the same store: a Dask worker) in the progress file."""
        self._progress = Incomplete(
            done=_merge([*self._progress.done, (start, stop)]),
            total=self._progress.total,
            request=self._progress.request,
        )
        self._save_progress()

    def _save_progress(self) -> None:
        doc = {
            "done": [list(r) for r in self._progress.done],
            "total": self._progress.total,
            "request": self._progress.request,
        }
        with atomic_path(self.path / PROGRESS_FILE, overwrite=True) as tmp:
            tmp.write_text(json.dumps(doc))

    def finish(self) -> Path:
        """Mark the store complete; raises ValueError if planes are missing."""
        missing = self.todo()
        if missing:
            a, b = missing[0]
            raise ValueError(f"{self.path}: planes {a}:{b} were never written")
        (self.path / PROGRESS_FILE).unlink(missing_ok=True)
        return self.path


def create_output(
    path: str | Path,
    shape: Sequence[int],
    dtype: Any,
    *,
    spacing: float | tuple[float, float, float] = (1.0, 1.0, 1.0),
    unit: str = "µm",
    class_names: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    chunks: Sequence[int] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    request: Mapping[str, Any] | None = None,
) -> ChunkedOutput:
    """Create (or, with `resume`, reopen) an OME-Zarr volume to write slab by slab.

    Parameters
    ----------
    path : str or Path
        The ``.zarr`` folder.
    shape : (Z, Y, X)
    dtype : numpy dtype
    spacing, unit, class_names, metadata
        As :func:`~napari_microfossil.io.write_tiff`.
    chunks : (cz, cy, cx), optional
        Default :func:`default_chunks`. Slabs are ``cz`` planes.
    overwrite : bool
        Replace an existing store (it is removed first).
    resume : bool
        Reopen an incomplete store at `path` and keep its finished slabs; its shape,
        dtype and recorded `request` must match (else :class:`InputError`). With no
        store at `path`, a new one is made.
    request : dict, optional
        JSON-serialisable description of the job (model, options), recorded in the
        progress file and compared on resume.

    Raises
    ------
    InputError
        If `path` exists and neither `overwrite` nor `resume` is set, or a resumed store
        does not match.
    """
    import zarr

    target = Path(path)
    shp = tuple(int(n) for n in shape)
    if len(shp) != 3 or min(shp) < 1:
        raise ValueError(f"shape: expected a non-empty (Z, Y, X); got {shp}")
    dt = np.dtype(dtype)
    req = dict(request or {})
    json.dumps(req)  # fail now, not after the first slab
    if resume and target.exists():
        return _reopen(target, shp, dt, req)
    if target.exists():
        if not overwrite:
            raise InputError(f"{target}: already exists (use --overwrite to replace it)")
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    sp = parse_spacing(spacing)
    if unit_factor(unit) is None:
        raise InputError(f"unit: expected a length unit such as 'µm' or 'nm'; got {unit!r}")
    ch = tuple(int(c) for c in (chunks or default_chunks(shp, dt)))
    group = zarr.open_group(store=str(target), mode="w", zarr_format=3)
    doc = ours_document(
        spacing=sp, unit=unit, axes="ZYX", class_names=class_names, metadata=metadata
    )
    group.attrs.update({"ome": _ome_attrs(target.stem, sp, unit), **doc})
    array = group.create_array(LEVEL0, shape=shp, dtype=dt, chunks=ch, fill_value=0)
    array.attrs.update(doc)
    out = ChunkedOutput(target, array, Incomplete(done=[], total=shp[0], request=req))
    out._save_progress()
    return out


def _reopen(
    target: Path, shape: tuple[int, ...], dtype: np.dtype, request: dict[str, Any]
) -> ChunkedOutput:
    import zarr

    progress = incomplete(target)
    if progress is None:
        raise InputError(
            f"{target}: is complete, nothing to resume (use --overwrite to make it again)"
        )
    try:
        array: Any = zarr.open_group(store=str(target), mode="r+")[LEVEL0]
    except Exception as exc:
        raise InputError(f"{target}: cannot reopen to resume ({exc})") from exc
    if tuple(array.shape) != shape or np.dtype(array.dtype) != dtype:
        raise InputError(
            f"{target}: holds {fmt_shape(array.shape)} {array.dtype}, expected "
            f"{fmt_shape(shape)} {dtype}: not the same job, cannot resume"
        )
    differs = sorted(
        k for k in set(request) | set(progress.request) if request.get(k) != progress.request.get(k)
    )
    if differs:
        k = differs[0]
        raise InputError(
            f"{target}: was started with {k}={progress.request.get(k)!r}, now {request.get(k)!r}; "
            f"cannot resume a different job (use --overwrite to start again)"
        )
    log.info("%s: resuming, %d of %d planes done", target, progress.planes_done, progress.total)
    return ChunkedOutput(target, array, progress)


def is_own_store(path: str | Path) -> bool:
    """True if `path` is a zarr store that this tool's record marks as its own."""
    p = Path(path) / "zarr.json"
    try:
        return META_KEY in json.loads(p.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
