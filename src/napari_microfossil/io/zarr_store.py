"""zarr and OME-Zarr stores: a single array, or level 0 of an OME-NGFF multiscale image."""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .faults import ReadError
from .lazy import LazyView, plan_axes, stored_key
from .metadata import META_KEY, Meta, meta_from_ours, unit_factor
from .volume import Read, check_dtype, fmt_shape, one_line

logger = logging.getLogger(__name__)

_ZARR_MARKERS = (".zarray", ".zgroup", "zarr.json")
#: In a labels store being written by a review autosave: names the record whose chunks
#: it gets (:mod:`napari_microfossil.review.labels_store`); gone when the save is done.
JOURNAL_MARKER = ".microfossil-journal.json"


def is_zarr(path: Path) -> bool:
    """True for a ``.zarr`` path or a folder holding zarr metadata files."""
    if path.suffix.lower() == ".zarr":
        return True
    return path.is_dir() and any((path / m).exists() for m in _ZARR_MARKERS)


def _ome_axes(ms: Mapping[str, Any], ndim: int) -> tuple[str, list[str | None]]:
    """Axis letters (tifffile style) and units from OME-NGFF multiscales metadata."""
    raw = ms.get("axes")
    if raw is None:  # OME-NGFF <= 0.2: always 5D tczyx
        raw = list("tczyx")[-ndim:]
    letters, units = [], []
    for a in raw:
        name = a.get("name", "") if isinstance(a, dict) else str(a)
        unit = a.get("unit") if isinstance(a, dict) else None
        letters.append({"z": "Z", "y": "Y", "x": "X", "c": "C", "t": "T"}.get(name.lower(), "Q"))
        units.append(unit)
    return "".join(letters), units


def _scale(transforms: Any, ndim: int) -> list[float]:
    out = [1.0] * ndim
    for t in transforms or []:
        if isinstance(t, dict) and t.get("type") == "scale" and len(t.get("scale", [])) == ndim:
            out = [a * float(b) for a, b in zip(out, t["scale"], strict=True)]
    return out


def read_zarr(
    path: Path, lazy: bool | None, allowed: Any, *, missing_chunks_ok: bool = False
) -> Read:
    """A zarr array, a group holding one array, or level 0 of an OME-Zarr image.

    Chunks missing from the store are read as the fill value, with a warning unless
    `missing_chunks_ok` (labels: zarr leaves out chunks of background).
    """
    import zarr

    p = str(path)
    if not path.exists():
        raise InputError(f"{p}: no such file or folder")
    node: Any
    arr: Any
    try:
        node = zarr.open(store=p, mode="r")
    except Exception as exc:
        raise InputError(f"{p}: cannot open as zarr ({one_line(exc)})") from exc
    attrs: dict[str, Any] = dict(node.attrs)
    meta = Meta()
    axes = ""
    fmt = "zarr"
    if isinstance(node, zarr.Group):
        ome: Any = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else attrs
        multiscales = ome.get("multiscales")
        if multiscales:
            try:
                ms = multiscales[0]
                ds = ms["datasets"][0]
                arr = node[ds["path"]]
            except Exception as exc:
                raise InputError(
                    f"{p}: OME-Zarr multiscales metadata does not point to an array "
                    f"({one_line(exc)})"
                ) from exc
            fmt = "ome-zarr"
            axes, units = _ome_axes(ms, arr.ndim)
            if len(axes) != arr.ndim:
                raise InputError(
                    f"{p}: OME-Zarr lists {len(axes)} axes for an array of shape "
                    f"{fmt_shape(arr.shape)}"
                )
            scale = _scale(ds.get("coordinateTransformations"), arr.ndim)
            glob = _scale(ms.get("coordinateTransformations"), arr.ndim)
            sp: list[float | None] = []
            for letter in "ZYX":
                if letter not in axes:
                    sp.append(None)
                    continue
                i = axes.index(letter)
                f = unit_factor(units[i]) if units[i] is not None else None
                if units[i] is None:
                    logger.warning("%s: axis %s has no unit; assuming µm", p, letter.lower())
                    f = 1.0
                sp.append(scale[i] * glob[i] * f if f is not None else None)
            meta.spacing = (sp[0], sp[1], sp[2])
        else:
            arrays = list(node.arrays())
            if len(arrays) != 1:
                names = ", ".join(name for name, _ in arrays) or "none"
                raise InputError(
                    f"{p}: zarr group without OME multiscales metadata; expected exactly one "
                    f"array, found {len(arrays)} ({names})"
                )
            arr = arrays[0][1]
    else:
        arr = node
    mine = attrs.get(META_KEY) or dict(arr.attrs).get(META_KEY)
    if isinstance(mine, dict):
        ours = meta_from_ours(mine)
        meta.class_names = ours.class_names
        meta.extra = ours.extra
        if ours.found:
            meta.spacing = ours.spacing
    shape = tuple(int(n) for n in arr.shape)
    if not axes:
        rgb = len(shape) == 4 and shape[-1] in (3, 4)
        axes = "Q" * (len(shape) - (3 if rgb else 2)) + ("YXS" if rgb else "YX")
    plan = plan_axes(shape, axes, p)
    check_dtype(np.dtype(arr.dtype), p, allowed)
    from .store import incomplete

    unfinished = incomplete(path)
    if unfinished is not None:
        warnings.warn(
            f"{p}: incomplete, {unfinished.planes_done} of {unfinished.total} planes written "
            f"(the run that wrote it stopped; `--resume` continues it); the rest reads as 0",
            UserWarning,
            stacklevel=2,
        )
    elif not missing_chunks_ok:
        warn_missing_chunks(arr, p)
    if (path / JOURNAL_MARKER).exists():
        warnings.warn(
            f"{p}: a review autosave into it stopped half way; open it in napari (or "
            f"napari_microfossil.review.labels_store.recover) to finish that save",
            UserWarning,
            stacklevel=2,
        )
    view = ZarrView(arr, plan, p)
    if lazy is None or lazy:
        return Read(view, True, meta, fmt)
    return Read(view[...], False, meta, fmt)


def _chunk_grid(arr: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The edge of each stored object (a shard, else a chunk) and how many per axis."""
    edge = tuple(int(n) for n in (getattr(arr, "shards", None) or arr.chunks))
    grid = tuple(-(-int(n) // e) for n, e in zip(arr.shape, edge, strict=True))
    return edge, grid


def _chunk_key(arr: Any, coords: tuple[int, ...]) -> str | None:
    """A stored object's key from the store's root (``c/0/1/0``); None on zarr 2."""
    try:
        key = str(arr.metadata.encode_chunk_key(coords))
    except Exception:  # zarr 2: no metadata object
        return None
    return f"{arr.path}/{key}" if arr.path else key


def _first_missing(arr: Any, store: str) -> str | None:
    """The key of the first chunk not stored, for a store that is a local folder."""
    root = Path(store)
    if not root.is_dir():
        return None
    _, grid = _chunk_grid(arr)
    for coords in np.ndindex(*grid):
        key = _chunk_key(arr, tuple(int(c) for c in coords))
        if key is None:
            return None
        if not (root / key).exists():
            return key
    return None


def warn_missing_chunks(arr: Any, store: str) -> None:
    """Warn, naming the store and the first one, if chunks of `arr` are not stored.

    zarr reads a missing chunk as the fill value without a word. It is not an error:
    zarr leaves out every chunk holding only the fill value (``write_empty_chunks`` is
    off by default), so a valid scan with empty regions lacks those chunks. But a store
    copied in part lacks them too, and its holes would be segmented as empty scan;
    the warning lets the user tell which.
    """
    try:
        total, stored = int(arr.nchunks), int(arr.nchunks_initialized)
    except Exception as exc:  # a store that cannot list its keys
        logger.info("%s: cannot count the stored chunks (%s)", store, one_line(exc))
        return
    if stored >= total:
        return
    first = _first_missing(arr, store)
    warnings.warn(
        f"{store}: {total - stored} of {total} chunks are missing"
        + (f" (the first: {first})" if first else "")
        + f" and read as the fill value {arr.fill_value}; fine where the scan is empty "
        f"(zarr leaves out chunks of only the fill value), else the store is incomplete",
        UserWarning,
        stacklevel=2,
    )


class ZarrView(LazyView):
    """Lazy ``(Z, Y, X)`` view of a zarr array; a chunk that cannot be decoded raises a
    :class:`ReadError` naming the store and the chunk."""

    def _read_key(self, key: tuple[int | slice, ...]) -> np.ndarray:
        try:
            return super()._read_key(key)
        except ReadError as exc:
            if exc.__cause__ is None:
                raise
            bad = self._bad_chunk(stored_key(self.plan, key))
            if bad is None:
                raise
            raise ReadError(
                f"{self.path}: chunk {bad} cannot be decoded ({one_line(exc.__cause__)}); "
                f"the store is corrupt"
            ) from exc.__cause__

    def _bad_chunk(self, key: tuple[int | slice, ...]) -> str | None:
        """The first chunk in the stored region `key` that fails to read, if any."""
        edge, _ = _chunk_grid(self.base)
        ranges = []
        for k, e, n in zip(key, edge, self.base.shape, strict=True):
            r = range(k, k + 1) if isinstance(k, int) else range(*k.indices(n))
            if not r:
                return None
            ranges.append(range(min(r[0], r[-1]) // e, max(r[0], r[-1]) // e + 1))
        for coords in itertools.product(*ranges):
            region = tuple(
                slice(c * e, min((c + 1) * e, n))
                for c, e, n in zip(coords, edge, self.base.shape, strict=True)
            )
            try:
                self.base[region]
            except Exception:
                return _chunk_key(self.base, coords) or f"at grid index {coords}"
        return None
