"""Multiscale pyramids of scans, so a viewer can show a scan of any size quickly.

A pyramid is an OME-Zarr (NGFF 0.5, zarr format 3) multiscale image: level ``k`` is the
scan 2**k times smaller along each axis longer than one voxel, with its own scale
transform, down to a level whose largest side is at most `max_side`. Images are reduced
by the mean of each 2×2×2 block, label volumes (files with class names) by its mode, so
no new label value appears. Level 0 is the scan's own array when the scan is already a
zarr store (nothing copied), else a chunked copy.

A pyramid is cached beside its scan as ``SCAN.pyramid.zarr`` (``scan.tif`` ->
``scan.tif.pyramid.zarr``) or, when that folder is not writable, in the user's cache
folder (the one review sidecars use). It is reused while it is fresh: made from a scan
of the same shape and dtype that has not changed since (:func:`find_pyramid`); else it
is built again. It is built level by level in chunk-aligned slabs, so memory does not
grow with the scan's depth, into a temp folder renamed at the end: a killed build leaves
no half pyramid under the scan's name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import Progress, ProgressGen, drain
from ..atomic import atomic_path
from ..cache import cache_root
from ..errors import InputError
from .lazy import plan_axes
from .metadata import META_KEY, ours_document
from .read import read_volume
from .store import default_chunks
from .volume import Volume, fmt_shape
from .zarr_store import ZarrView

log = logging.getLogger(__name__)

#: Suffix of a pyramid beside its scan: ``scan.tif`` -> ``scan.tif.pyramid.zarr``.
PYRAMID_SUFFIX = ".pyramid.zarr"
#: Key of the pyramid record inside this tool's metadata.
RECORD_KEY = "pyramid"
#: Levels are made until the largest side is at most this many voxels.
MAX_SIDE = 512
#: Version of the record; a pyramid with another version is built again.
_VERSION = 1


def beside_path(scan: str | os.PathLike[str]) -> Path:
    """Where the pyramid of `scan` goes beside it: ``SCAN.pyramid.zarr``."""
    p = Path(scan).expanduser()
    return p.with_name(p.name + PYRAMID_SUFFIX)


def cache_path(scan: str | os.PathLike[str]) -> Path:
    """Where the pyramid of `scan` goes when its folder is not writable."""
    p = Path(scan).expanduser().resolve()
    digest = hashlib.sha256(str(p).encode()).hexdigest()[:16]
    return cache_root() / "pyramids" / f"{digest}-{p.name}{PYRAMID_SUFFIX}"


def level_shapes(shape: Sequence[int], *, max_side: int | None = None) -> list[tuple[int, ...]]:
    """The ``(Z, Y, X)`` shape of every level, finest first.

    Each level halves (rounding up) every axis longer than one voxel, until the largest
    side is at most `max_side`; a scan already that small has one level.
    """
    max_side = MAX_SIDE if max_side is None else max_side
    if max_side < 1:
        raise ValueError(f"max_side: expected a positive number of voxels; got {max_side}")
    shapes = [tuple(int(n) for n in shape)]
    while max(shapes[-1]) > max_side:
        shapes.append(tuple(-(-n // 2) for n in shapes[-1]))
    return shapes


def _factors(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(2 if n > 1 else 1 for n in shape)


def downsample(block: np.ndarray, *, labels: bool = False) -> np.ndarray:
    """A ``(Z, Y, X)`` block made 2× smaller along every axis longer than one voxel.

    Parameters
    ----------
    block : ndarray, shape (Z, Y, X)
    labels : bool
        False: the mean of each 2×2×2 block (rounded for integers). True: its most
        frequent value, ties going to a non-zero value, so thin objects survive.

    Returns
    -------
    ndarray, shape (ceil(Z/2), ceil(Y/2), ceil(X/2)) (axes of length 1 kept), same dtype.
    Odd edges are padded by repeating the last plane, which keeps the mean and mode of
    the voxels that exist.
    """
    f = _factors(block.shape)
    pad = [(0, (-n) % k) for n, k in zip(block.shape, f, strict=True)]
    if any(p for _, p in pad):
        block = np.pad(block, pad, mode="edge")
    (z, y, x), (fz, fy, fx) = block.shape, f
    view = block.reshape(z // fz, fz, y // fy, fy, x // fx, fx)
    if labels:
        return _mode(view.transpose(0, 2, 4, 1, 3, 5).reshape(z // fz, y // fy, x // fx, -1))
    k = fz * fy * fx
    if block.dtype.kind == "f":
        return view.mean(axis=(1, 3, 5)).astype(block.dtype)  # type: ignore[no-any-return]
    s = view.sum(axis=(1, 3, 5), dtype=np.int64)
    return np.floor_divide(s + k // 2, k).astype(block.dtype)  # type: ignore[no-any-return]


def _mode(values: np.ndarray) -> np.ndarray:
    """Most frequent value along the last axis (ties: a non-zero one, then the first)."""
    k = values.shape[-1]
    score = np.empty(values.shape, np.uint8)
    for i in range(k):
        score[..., i] = (values == values[..., i : i + 1]).sum(-1, dtype=np.uint8)
    score = score * 2 + (values != 0)
    pick = np.argmax(score, axis=-1)[..., np.newaxis]
    return np.take_along_axis(values, pick, axis=-1)[..., 0]


def scan_mtime(scan: str | os.PathLike[str]) -> float:
    """When `scan` last changed: a file's mtime; for a folder (slices, zarr store) the
    latest of the folder, its entries and its arrays' ``zarr.json``."""
    p = Path(scan)
    latest = p.stat().st_mtime
    if p.is_dir():
        with os.scandir(p) as it:
            for e in it:
                latest = max(latest, e.stat().st_mtime)
                meta = Path(e.path) / "zarr.json"
                if e.is_dir() and meta.exists():
                    latest = max(latest, meta.stat().st_mtime)
    return latest


@dataclass(frozen=True)
class Pyramid:
    """An opened pyramid: lazy levels, finest first.

    Attributes
    ----------
    path : Path
        The pyramid store.
    scan : Path
        The scan it was made from.
    levels : list of lazy (Z, Y, X) arrays
        Level 0 has the scan's shape; each next one is about 2× smaller per axis.
    scales : list of (z, y, x)
        Voxel size of each level in µm.
    labels : bool
        Whether the levels were reduced as labels (mode).
    """

    path: Path
    scan: Path
    levels: list[Any]
    scales: list[tuple[float, float, float]]
    labels: bool


def _record(path: Path) -> dict[str, Any] | None:
    """The pyramid record of the store at `path`, or None if it is not one of ours."""
    import json

    try:
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return None
    rec = (attrs.get(META_KEY) or {}).get("metadata", {}).get(RECORD_KEY)
    return rec if isinstance(rec, dict) else None


def _is_fresh(rec: dict[str, Any] | None, scan: Path, vol: Volume) -> bool:
    if rec is None or rec.get("version") != _VERSION:
        return False
    same = rec.get("shape") == list(vol.shape) and rec.get("dtype") == vol.dtype.name
    return same and scan_mtime(scan) <= float(rec.get("source_mtime", -1.0))


def find_pyramid(scan: str | os.PathLike[str], *, volume: Volume | None = None) -> Path | None:
    """The fresh pyramid of `scan` (beside it, else in the cache folder), or None.

    Fresh: made from a scan of the same shape and dtype, which has not changed since.
    `volume` is the scan as :func:`read_volume` reads it (read lazily if not given).
    """
    p = Path(scan).expanduser()
    vol = volume if volume is not None else read_volume(p, lazy=True)
    for candidate in (beside_path(p), cache_path(p)):
        if candidate.is_dir() and _is_fresh(_record(candidate), p, vol):
            return candidate
    return None


def open_pyramid(scan: str | os.PathLike[str], *, volume: Volume | None = None) -> Pyramid | None:
    """The fresh pyramid of `scan` opened lazily (see :func:`find_pyramid`), or None."""
    p = Path(scan).expanduser()
    vol = volume if volume is not None else read_volume(p, lazy=True)
    where = find_pyramid(p, volume=vol)
    return None if where is None else open_store(where, volume=vol)


def is_pyramid(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a pyramid store made by this tool."""
    return _record(Path(path)) is not None


def open_store(path: str | os.PathLike[str], *, volume: Volume | None = None) -> Pyramid:
    """Open the pyramid store at `path` lazily, fresh or not.

    Level 0 of a pyramid of a zarr scan is the scan itself: `volume` (the scan read
    lazily), else read from the path the pyramid records.

    Raises
    ------
    InputError
        If `path` is not a pyramid of this tool, or its scan is needed and gone.
    """
    import zarr

    where = Path(path).expanduser()
    rec = _record(where)
    if rec is None:
        raise InputError(f"{where}: not a pyramid made by this tool (microfossil pyramid SCAN)")
    group: Any = zarr.open_group(store=str(where), mode="r")
    levels: list[Any] = []
    for name in rec["levels"]:
        if name == "source":
            vol = volume if volume is not None else read_volume(rec["source"], lazy=True)
            levels.append(vol.data)
            continue
        arr = group[name]
        levels.append(ZarrView(arr, plan_axes(arr.shape, "ZYX", str(where)), str(where)))
    scales = [(float(a), float(b), float(c)) for a, b, c in rec["scales"]]
    return Pyramid(where, Path(rec["source"]), levels, scales, bool(rec.get("labels")))


def _level0_of(vol: Volume) -> Any:
    """The scan's own zarr array if level 0 can be it (a zarr ``(Z, Y, X)`` array read
    as is), else None."""
    base = getattr(vol.data, "base", None)
    plan = getattr(vol.data, "plan", None)
    if isinstance(vol.data, ZarrView) and plan is not None and base is not None:
        if base.ndim == 3 and not plan.rgb and not plan.add_z:
            return base
    return None


def _target(scan: Path) -> Path:
    beside = beside_path(scan)
    parent = beside.parent
    if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return beside
    return cache_path(scan)


def iter_build_pyramid(
    scan: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    max_side: int | None = None,
    overwrite: bool = False,
) -> ProgressGen[Path]:
    """Build the pyramid of `scan`, yielding :class:`Progress`; returns where it went.

    Parameters
    ----------
    scan : str or Path
        Anything :func:`read_volume` reads; read lazily.
    out : str or Path, optional
        The pyramid store; default beside the scan (``SCAN.pyramid.zarr``), or in the
        cache folder when the scan's folder is not writable.
    max_side : int, optional
        Stop once the largest side of a level is at most this many voxels; default
        :data:`MAX_SIDE`.
    overwrite : bool
        Build even if a fresh pyramid exists (which is otherwise returned as is).

    Raises
    ------
    InputError
        If the scan cannot be read, or `out` exists and is not a pyramid of this tool.
    """
    p = Path(scan).expanduser()
    vol = read_volume(p, lazy=True)
    side = MAX_SIDE if max_side is None else max_side
    shapes = level_shapes(vol.shape, max_side=side)
    target = Path(out).expanduser() if out is not None else _target(p)
    if target.exists() and _record(target) is None:
        raise InputError(f"{target}: exists and is not a pyramid made by this tool; remove it")
    rec = _record(target) if target.is_dir() else None
    if not overwrite and _is_fresh(rec, p, vol) and (rec or {}).get("max_side") == side:
        log.info("%s: pyramid is up to date", target)
        return target
    mtime = scan_mtime(p)
    labels = bool(vol.class_names)
    own = _level0_of(vol) if len(shapes) > 1 else None  # a one-level pyramid is a copy
    spacing = tuple(float(s) for s in vol.spacing)
    scales = [spacing]
    for shape in shapes[:-1]:  # each voxel of the next level covers 2 (or 1) per axis
        scales.append(tuple(s * f for s, f in zip(scales[-1], _factors(shape), strict=True)))
    names = ["source" if own is not None else "0", *(str(k) for k in range(1, len(shapes)))]
    record = {
        "version": _VERSION,
        "source": str(p.resolve()),
        "shape": list(vol.shape),
        "dtype": vol.dtype.name,
        "source_mtime": mtime,
        "levels": names,
        "scales": [list(s) for s in scales],
        "labels": labels,
        "max_side": side,
        "built": time.time(),
    }
    start = 0 if own is None else 1
    with atomic_path(target, overwrite=True) as tmp:
        group = _create_group(tmp, names[start:], scales[start:], vol, record)
        arrays: list[Any] = [own if own is not None else vol.data]
        for k in range(1, len(shapes)) if own is not None else range(len(shapes)):
            dest = group.create_array(
                str(k),
                shape=shapes[k],
                dtype=vol.dtype,
                chunks=default_chunks(shapes[k], vol.dtype),
                fill_value=0,
            )
            source = vol.data if k == 0 else arrays[-1]
            for step in _fill(dest, source, copy=k == 0, labels=labels, stage=f"level {k}"):
                os.utime(tmp)  # alive: another build removes only temp folders left alone
                yield step
            arrays.append(dest)
    log.info("%s: pyramid of %d levels, down to %s", target, len(shapes), fmt_shape(shapes[-1]))
    return target


def build_pyramid(scan: str | os.PathLike[str], **kwargs: Any) -> Path:
    """:func:`iter_build_pyramid` without progress; returns the pyramid's path."""
    return drain(iter_build_pyramid(scan, **kwargs))


def _create_group(
    path: Path,
    names: list[str],
    scales: list[tuple[float, ...]],
    vol: Volume,
    record: dict[str, Any],
) -> Any:
    import zarr

    group = zarr.open_group(store=str(path), mode="w", zarr_format=3)
    datasets = [
        {"path": n, "coordinateTransformations": [{"type": "scale", "scale": list(s)}]}
        for n, s in zip(names, scales, strict=True)
    ]
    ome: dict[str, Any] = {
        "version": "0.5",
        "multiscales": [
            {
                "name": Path(record["source"]).name,
                "axes": [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"],
                "datasets": datasets,
            }
        ],
    }
    first = scales[0]
    doc = ours_document(
        spacing=(first[0], first[1], first[2]),
        unit="µm",
        axes="ZYX",
        class_names=vol.class_names,
        metadata={RECORD_KEY: record},
    )
    group.attrs.update({"ome": ome, **doc})
    return group


def _fill(dest: Any, source: Any, *, copy: bool, labels: bool, stage: str) -> ProgressGen[None]:
    """Write `dest` slab by slab (its chunks' z edge): a copy of `source`, or `source`
    reduced 2× (the input slab read at once, reduced a plane at a time: memory stays
    one input slab, ``2 * cz`` planes)."""
    nz = int(dest.shape[0])
    cz = int(dest.chunks[0])
    fz = 1 if copy else _factors(source.shape)[0]
    for z0 in range(0, nz, cz):
        z1 = min(z0 + cz, nz)
        if copy:
            slab = _planes(source, z0, z1)
        else:  # one read per slab: a plane at a time would decode each chunk cz times
            block = np.asarray(source[z0 * fz : z1 * fz])
            slab = np.empty((z1 - z0, *dest.shape[1:]), dest.dtype)
            for z in range(z1 - z0):
                slab[z] = downsample(block[z * fz : z * fz + fz], labels=labels)[0]
            del block
        dest[z0:z1] = slab
        yield Progress(stage, z1, nz)


def _planes(source: Any, z0: int, z1: int) -> np.ndarray:
    """Planes ``z0:z1`` of `source`. A memory-mapped TIFF is read with plain reads: the
    pages of a mapping stay in the process's resident memory once touched, so copying a
    16 GB scan through its mapping would show 16 GB resident."""
    if isinstance(source, np.memmap) and source.flags.c_contiguous and source.filename:
        plane = int(np.prod(source.shape[1:]))
        return np.fromfile(
            source.filename,
            dtype=source.dtype,
            count=(z1 - z0) * plane,
            offset=int(source.offset) + z0 * plane * source.dtype.itemsize,
        ).reshape((z1 - z0, *source.shape[1:]))
    return np.asarray(source[z0:z1])
