"""Fossils as 3D objects: connected components of a class, their measurements, the
edits users make to them, and their export (tables, meshes, crops, a picture gallery).

A segmentation gives each voxel a class id; a *fossil* is one connected body of the
fossil class. :func:`iter_extract_fossils` turns labels into a :class:`FossilTable` (an
instance volume with one id per fossil, and measurements in µm); the table's
:meth:`~FossilTable.delete`, :meth:`~FossilTable.merge` and
:meth:`~FossilTable.iter_remeasure` follow a user's corrections.

Modules: :mod:`.table` (the table and its columns), :mod:`.extract` (components,
cavities, size limits), :mod:`.defaults` (what a run without options does),
:mod:`.evidence` (the per-object confidence limit), :mod:`.blocks` and
:mod:`.blockwise` (the same, block by block, for volumes larger than memory), :mod:`.crops` (cached crops of lazy volumes),
:mod:`.split` (separating touching fossils), :mod:`.measure`,
:mod:`.edit`, :mod:`.mesh`, :mod:`.export`, :mod:`.gallery` (the gallery writer),
:mod:`.picture` (one fossil's picture) and :mod:`.render` (drawing on Pillow).
"""

from .blockwise import extract_fossils_blockwise, iter_extract_fossils_blockwise
from .defaults import (
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_MIN_DIAMETER_VOXELS,
    DEFAULT_MIN_VOXELS,
    DEFAULT_SPLIT,
    DEFAULT_SPLIT_NECK_RATIO,
    size_limit_note,
)
from .edit import delete_fossils, iter_remeasure_fossils, merge_fossils, remeasure_fossils
from .export import (
    FILE_COLUMNS,
    MESH_FORMATS,
    ExportResult,
    export_fossils,
    fossil_stem,
    iter_export_fossils,
    write_fossils_csv,
)
from .extract import extract_fossils, iter_extract_fossils
from .gallery import GALLERY_DIR, GalleryResult, iter_write_gallery, write_gallery
from .measure import iter_measure_fossils, measure_fossils
from .mesh import mask_surface_area, mask_to_mesh
from .picture import render_fossil
from .render import render_histogram, render_mesh
from .table import FOSSIL_COLUMNS, FossilTable

__all__ = [
    "DEFAULT_MIN_CONFIDENCE",
    "DEFAULT_MIN_DIAMETER_VOXELS",
    "DEFAULT_MIN_VOXELS",
    "DEFAULT_SPLIT",
    "DEFAULT_SPLIT_NECK_RATIO",
    "FILE_COLUMNS",
    "FOSSIL_COLUMNS",
    "GALLERY_DIR",
    "MESH_FORMATS",
    "ExportResult",
    "FossilTable",
    "GalleryResult",
    "delete_fossils",
    "export_fossils",
    "extract_fossils",
    "extract_fossils_blockwise",
    "fossil_stem",
    "iter_export_fossils",
    "iter_extract_fossils",
    "iter_extract_fossils_blockwise",
    "iter_measure_fossils",
    "iter_remeasure_fossils",
    "iter_write_gallery",
    "mask_surface_area",
    "mask_to_mesh",
    "measure_fossils",
    "merge_fossils",
    "remeasure_fossils",
    "render_fossil",
    "render_histogram",
    "render_mesh",
    "size_limit_note",
    "write_fossils_csv",
    "write_gallery",
]
