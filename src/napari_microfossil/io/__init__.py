"""Read and write volumes: multi-page TIFF, folders of 2D slices, zarr / OME-Zarr.

Every reader returns a :class:`Volume`: a ``(Z, Y, X)`` array (in memory, memory-mapped
or lazy) with its voxel size in µm and where that voxel size came from. Writers are
atomic: a temp file in the target folder is renamed over the target only once complete.

Modules, one concept each:

- ``volume``: :class:`Volume`, :func:`parse_spacing` and the checks all formats share;
- ``faults``: :class:`ReadError`, for a file that exists but cannot be read (corrupt,
  truncated, a named pipe), however late a lazy volume reads it;
- ``lazy``: the lazy array protocol and views of stored N-D arrays (axis plans);
- ``metadata``: units, this tool's JSON record, ImageJ / OME / resolution-tag spacing;
- ``tiff``, ``slices`` (folders of slices, PNG), ``zarr_store``: one reader each;
- ``read``: the format dispatch, :func:`read_volume`, :func:`read_labels`,
  :func:`is_supported`, :func:`volume_info`;
- ``write``: :func:`write_tiff`;
- ``store``: :func:`create_output`, chunked OME-Zarr volumes written slab by slab,
  resumable;
- ``pyramid``: multiscale OME-Zarr pyramids of scans, for napari.

This package is imported by napari's reader: it must not import torch, napari or Qt.
"""

from ..atomic import atomic_path
from .faults import ReadError
from .metadata import META_KEY
from .read import is_supported, read_labels, read_volume, volume_info
from .slices import SliceStack
from .store import ChunkedOutput, create_output, incomplete
from .volume import Volume, parse_spacing
from .write import write_tiff

__all__ = [
    "META_KEY",
    "ChunkedOutput",
    "ReadError",
    "SliceStack",
    "Volume",
    "atomic_path",
    "create_output",
    "incomplete",
    "is_supported",
    "parse_spacing",
    "read_labels",
    "read_volume",
    "volume_info",
    "write_tiff",
]
