"""Multi-page TIFF, BigTIFF, ImageJ and OME-TIFF files: in memory, memory-mapped or lazy."""

from __future__ import annotations

import logging
import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from .faults import ReadError, reading
from .lazy import LazyView, apply_plan, plan_axes
from .metadata import ours, tiff_meta
from .volume import Read, check_dtype, one_line

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _our_axes(tif: Any, shape: tuple[int, ...]) -> str | None:
    """The axes this tool recorded in a plain (tifffile "shaped") TIFF it wrote.

    tifffile keeps such a file's shape but guesses its axes, and takes a size-1 axis
    for a sample axis (``(Z, Y, 1)`` reads as ``YXQ``); our record knows them.
    """
    if not tif.is_shaped:
        return None
    page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
    mine = ours(page.description)
    axes = (mine or {}).get("axes")
    if isinstance(axes, str) and len(axes) == len(shape) and set(axes) <= set("ZCYX"):
        return axes
    return None


def read_tiff(path: Path, lazy: bool | None, threshold: int, allowed: Any) -> Read:
    """The first series of a TIFF file: loaded, memory-mapped or read on demand.

    Every page of the file is indexed up front, so a truncated file is refused on open
    (tifffile would otherwise read the pages left and return a shorter volume).
    """
    import tifffile

    p = str(path)
    with reading(p, "cannot read as TIFF"):
        tif = tifffile.TiffFile(path)
    keep_open = False
    try:
        with reading(p, "cannot read as TIFF"):
            n_pages = len(tif.pages)  # reads every page's header: finds a truncated file
            series = tif.series[0]
            shape, axes, dtype = tuple(series.shape), series.axes, np.dtype(series.dtype)
            meta = tiff_meta(tif, p)
            axes = _our_axes(tif, shape) or axes
        fmt = "ome-tiff" if tif.is_ome else "imagej-tiff" if tif.is_imagej else "tiff"
        if len(tif.series) > 1:
            logger.info(
                "%s: %d image series in %d pages; reading the first", p, len(tif.series), n_pages
            )
        plan = plan_axes(shape, axes, p)
        check_dtype(dtype, p, allowed)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        offset = series.dataoffset
        if offset is not None and offset + nbytes > path.stat().st_size:
            raise ReadError(
                f"{p}: file is truncated: expected {nbytes} bytes of pixels from byte "
                f"{offset}, the file has {path.stat().st_size}"
            )
        if lazy is None:
            big = nbytes > threshold
            ram = _physical_memory()
            lazy = big and (offset is not None or (ram is not None and nbytes > ram // 2))
        if lazy and not plan.add_z:
            mm = None
            if offset is not None:
                try:
                    mm = tifffile.memmap(path, series=0, mode="r").reshape(shape)
                except Exception as exc:  # read on demand instead
                    logger.info("%s: cannot memory-map (%s)", p, one_line(exc))
            if mm is not None:
                if plan.rgb:
                    return Read(LazyView(mm, plan, p), True, meta, fmt)
                return Read(mm.reshape(plan.shape), True, meta, fmt)
            import zarr

            with reading(p, "cannot read as TIFF"):
                view = LazyView(zarr.open(store=series.aszarr(level=0), mode="r"), plan, p)
            weakref.finalize(view, tif.close)
            keep_open = True
            return Read(view, True, meta, fmt)
        with reading(p):
            arr = series.asarray()
        arr = apply_plan(arr, plan, (slice(None),) * 3)
        return Read(arr, False, meta, fmt)
    finally:
        if not keep_open:
            tif.close()
