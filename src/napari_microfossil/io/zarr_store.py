"""zarr and OME-Zarr stores: a single array, or level 0 of an OME-NGFF multiscale image."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .lazy import LazyView, plan_axes
from .metadata import META_KEY, Meta, meta_from_ours, unit_factor
from .volume import Read, check_dtype, fmt_shape, one_line

logger = logging.getLogger(__name__)

_ZARR_MARKERS = (".zarray", ".zgroup", "zarr.json")


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


def read_zarr(path: Path, lazy: bool | None, allowed: Any) -> Read:
    """A zarr array, a group holding one array, or level 0 of an OME-Zarr image."""
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
    view = LazyView(arr, plan)
    if lazy is None or lazy:
        if not plan.add_z and not plan.rgb and arr.ndim == 3:
            return Read(arr, True, meta, fmt)
        return Read(view, True, meta, fmt)
    return Read(view[...], False, meta, fmt)
