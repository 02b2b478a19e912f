"""napari writers: a Labels layer as TIFF, a Surface layer as STL/PLY/OBJ.

napari (npe2) calls ``writer(path, data, meta)`` with the layer's data and its state
(``scale``, ``translate``, ``units``, ``metadata``, ...) and expects the list of paths
written. Both writers keep the voxel size: the TIFF stores it (and the class names) as
:func:`~napari_microfossil.io.write_tiff` does; the mesh is written in µm, (x, y, z), the
convention of :mod:`napari_microfossil.fossils.mesh`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path, write_tiff
from ..io.metadata import unit_factor
from .layers import CLASS_NAMES

log = logging.getLogger(__name__)

MESH_EXTENSIONS = (".stl", ".ply", ".obj")


def _um_per_unit(meta: Mapping[str, Any], ndim: int) -> np.ndarray:
    """µm per world unit of each of the last ``ndim`` axes (1 for pixels or unknown units)."""
    units = meta.get("units")
    if units is None or isinstance(units, str):
        units = [units] * ndim
    units = list(units)[-ndim:]
    factors = []
    for u in units:
        f = unit_factor(str(u)) if u is not None else None
        factors.append(1.0 if f is None else f)
    factors = [1.0] * (ndim - len(factors)) + factors
    return np.asarray(factors, dtype=float)


def _last(values: Any, n: int, default: float) -> np.ndarray:
    arr = np.asarray(values if values is not None else [], dtype=float).reshape(-1)
    if arr.size >= n:
        return arr[-n:]
    return np.concatenate([np.full(n - arr.size, default), arr])


def _smallest_uint(data: np.ndarray) -> np.ndarray:
    if data.dtype == bool or data.dtype in (np.uint8, np.uint16, np.uint32):
        return data
    if data.size == 0:
        return data.astype(np.uint8)
    lo, hi = int(data.min()), int(data.max())
    if lo < 0:
        raise ValueError(
            f"labels: expected non-negative label values to write a TIFF, got minimum {lo}"
        )
    for dtype in (np.uint8, np.uint16, np.uint32):
        if hi <= np.iinfo(dtype).max:
            return data.astype(dtype)
    raise ValueError(f"labels: values up to {hi} do not fit uint32")


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Labels layer as a TIFF with its voxel size and class names.

    Parameters
    ----------
    path : str
        Target ``.tif``/``.tiff`` file.
    data : array-like, shape (Z, Y, X) or (Y, X)
        Label ids (non-negative integers); a 2D layer is written as one slice;
        multiscale data is written at full resolution.
    meta : dict
        Layer state: ``scale`` (voxel size, in the layer's ``units``; µm when they are
        pixels or unknown) and the class names (``layers.CLASS_NAMES``) are kept.

    Returns
    -------
    list of str
        ``[path]``.
    """
    if meta.get("multiscale") and isinstance(data, Sequence):
        data = data[0]
    spacing = _last(meta.get("scale"), 3, 1.0) * _um_per_unit(meta, 3)
    spacing = np.where(spacing > 0, spacing, 1.0)
    metadata = meta.get("metadata") or {}
    names = metadata.get(CLASS_NAMES)
    options: dict[str, Any] = {
        "spacing": (float(spacing[0]), float(spacing[1]), float(spacing[2])),
        "class_names": [str(n) for n in names] if names else None,
        "overwrite": True,
    }
    if _streamable(data):
        _write_slabs(path, data, options)  # labels on disk (a store): never whole in memory
        return [str(path)]
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"labels: expected a 2D or 3D layer to write a TIFF, got {arr.ndim}D")
    write_tiff(path, _smallest_uint(arr), **options)
    return [str(path)]


def _streamable(data: Any) -> bool:
    """Lazy 3D labels of an unsigned dtype a TIFF holds as is: written slab by slab."""
    dtype = np.dtype(getattr(data, "dtype", np.float64))
    is_lazy = not isinstance(data, np.ndarray) and len(getattr(data, "shape", ())) == 3
    return is_lazy and dtype in (np.uint8, np.uint16, np.uint32)


def _write_slabs(path: str, data: Any, options: dict[str, Any]) -> None:
    from ..io.write import TiffSlabWriter

    step = int((getattr(data, "chunks", None) or (16,))[0])  # whole chunks along z
    with TiffSlabWriter(path, data.shape, data.dtype, **options) as out:
        for z in range(0, data.shape[0], step):
            out.write(z, np.asarray(data[z : z + step]))
        out.finish()


def surface_to_trimesh(data: Sequence[Any], meta: Mapping[str, Any]) -> Any:
    """A trimesh of a napari Surface layer's data, in world µm, vertices (x, y, z).

    napari surfaces are ``(vertices (V, D) in (..., z, y, x) data coordinates, faces
    (F, 3)[, values])``; vertices are scaled and translated to world coordinates (in µm
    when the layer's units say so) and reordered to (x, y, z). A 2D surface gets z = 0.
    A closed surface whose winding came out inside-out is turned outward.
    """
    import trimesh

    if not isinstance(data, Sequence) or len(data) < 2:
        raise ValueError("surface: expected (vertices, faces[, values]) layer data")
    verts = np.asarray(data[0], dtype=np.float64)
    faces = np.asarray(data[1], dtype=np.int64)
    if verts.ndim != 2 or verts.shape[1] < 2 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(
            f"surface: expected vertices (V, 2 or 3) and faces (F, 3), got {verts.shape} "
            f"and {faces.shape}"
        )
    verts = verts[:, -3:]
    n = verts.shape[1]
    scale = _last(meta.get("scale"), n, 1.0)
    translate = _last(meta.get("translate"), n, 0.0)
    world = (verts * scale + translate) * _um_per_unit(meta, n)
    if n == 2:
        world = np.concatenate([np.zeros((len(world), 1)), world], axis=1)
    mesh = trimesh.Trimesh(vertices=world[:, ::-1], faces=faces, process=False)
    if mesh.is_watertight and mesh.volume < 0:
        mesh.invert()
    return mesh


def write_surface(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Surface layer as STL, PLY or OBJ (by the file's extension), in µm.

    Parameters
    ----------
    path : str
        Target file ending in ``.stl``, ``.ply`` or ``.obj``.
    data : tuple
        ``(vertices, faces[, values])`` as napari holds them (z, y, x order).
    meta : dict
        Layer state; ``scale``, ``translate`` and ``units`` place the vertices.

    Returns
    -------
    list of str
        ``[path]``.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in MESH_EXTENSIONS:
        raise ValueError(
            f"path: expected a file ending in {', '.join(MESH_EXTENSIONS)}, got {path!r}"
        )
    mesh = surface_to_trimesh(data, meta)
    with atomic_path(path) as tmp:
        mesh.export(file_obj=str(tmp), file_type=suffix[1:])
    return [str(path)]
