"""Write fossils to disk: a table, an instance volume, a mesh and a cropped TIFF each.

Layout of an export folder::

    OUTDIR/fossils.csv                one row per fossil (measurements + file names)
    OUTDIR/instances.tif              (Z, Y, X) uint16/uint32 fossil ids, voxel size kept
    OUTDIR/meshes/fossil_NNNN.stl     surface in µm, (x, y, z), at the fossil's place
    OUTDIR/crops/fossil_NNNN.tif      (Z, 2, Y, X): scan crop + fossil mask

``NNNN`` is the fossil id zero-padded to 4 digits (more when ids exceed 9999). Every file
is written to a temporary name and renamed into place, so a file is either complete or
absent; the CSV is written last. An export that fails or is cancelled part-way removes
the files it added (and an earlier export's CSV once it replaced files that CSV lists).
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import logging
import math
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import Progress, drain
from ..atomic import atomic_path
from ..errors import InputError
from ..io import write_tiff
from .crops import CachedCrops, is_lazy
from .mesh import mask_to_mesh
from .table import FossilTable

logger = logging.getLogger(__name__)

#: Mesh formats that can be written, by file extension.
MESH_FORMATS: tuple[str, ...] = ("stl", "ply", "obj")

#: Columns added to the fossil table in ``fossils.csv``: paths relative to OUTDIR.
FILE_COLUMNS: tuple[str, ...] = ("mesh_file", "crop_file")


@dataclass(frozen=True)
class ExportResult:
    """Paths written by :func:`iter_export_fossils`.

    Parameters
    ----------
    outdir : Path
        The export folder.
    csv : Path
        The fossil table.
    instances : Path or None
        The instance volume, if written.
    meshes, crops : dict of int to Path
        Mesh and crop file of each exported fossil id (empty when not written).
    """

    outdir: Path
    csv: Path
    instances: Path | None = None
    meshes: Mapping[int, Path] = field(default_factory=dict)
    crops: Mapping[int, Path] = field(default_factory=dict)

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every file written."""
        out = [self.csv]
        if self.instances is not None:
            out.append(self.instances)
        return (*out, *self.meshes.values(), *self.crops.values())


def fossil_stem(fossil_id: int) -> str:
    """File stem of a fossil: ``fossil_0007``; ids above 9999 get more digits."""
    return f"fossil_{int(fossil_id):04d}"


def check_mesh_format(mesh_format: str | None) -> str | None:
    """A mesh format as a lower-case extension of :data:`MESH_FORMATS`, or None for none.

    Raises
    ------
    InputError
        If it is not one of them (suggesting the closest).
    """
    if mesh_format is None:
        return None
    if not isinstance(mesh_format, str):
        raise InputError(
            f"mesh_format: expected one of {[*MESH_FORMATS, 'none']}, got {mesh_format!r}"
        )
    key = mesh_format.strip().lower().lstrip(".")
    if key == "none":
        return None
    if key in MESH_FORMATS:
        return key
    close = difflib.get_close_matches(key, [*MESH_FORMATS, "none"], n=1, cutoff=0.3)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise InputError(
        f"mesh_format: expected one of {[*MESH_FORMATS, 'none']}, got {mesh_format!r}{hint}"
    )


def _format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else format(float(value), ".9g")
    return str(value)


def write_fossils_csv(
    path: str | Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]
) -> Path:
    """Write fossil records as CSV, atomically.

    Parameters
    ----------
    path : path
        The CSV file; replaced if it exists.
    rows : iterable of mapping
        One record per fossil; missing keys are written empty, extra keys are ignored.
    columns : sequence of str
        Column names, in order; the header line.

    Returns
    -------
    Path
        ``path``. Floats are written with 9 significant digits, NaN and None as empty
        cells, booleans as ``true``/``false``.
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(list(columns))
        for row in rows:
            writer.writerow([_format_value(row.get(c)) for c in columns])
    return path


def _mask_value(dtype: np.dtype) -> Any:
    if np.issubdtype(dtype, np.integer):
        return np.iinfo(dtype).max
    return 1.0


def iter_export_fossils(
    table: FossilTable,
    outdir: str | Path,
    *,
    image: Any = None,
    mesh_format: str | None = "stl",
    crops: bool = True,
    margin: int = 4,
    ids: Sequence[int] | None = None,
    overwrite: bool = False,
    write_instances: bool = True,
    smooth: bool = False,
) -> Generator[Progress, None, ExportResult]:
    """Write the fossils of a table to a folder, as a generator yielding progress.

    Parameters
    ----------
    table : FossilTable
        Fossils from :func:`~napari_microfossil.fossils.extract_fossils`.
    outdir : path
        Export folder, created if missing.
    image : (Z, Y, X) array-like, optional
        The scan, same shape as ``table.instances``; the first channel of each crop.
        Only crops are read, so it may be lazy (as may ``table.instances``).
    mesh_format : {"stl", "ply", "obj", None}
        Mesh file format, or None (or ``"none"``) for no meshes.
    crops : bool
        Write ``crops/fossil_NNNN.tif``: ``(Z, 2, Y, X)`` with the scan crop in channel 0
        and the fossil mask (dtype maximum, 1.0 for float scans) in channel 1, in the
        scan's dtype; ``(Z, Y, X)`` uint8 mask (255) alone without an image.
    margin : int
        Voxels of context around each fossil's bounding box in a crop (clipped at the
        edge of the scan).
    ids : sequence of int, optional
        Export only these fossils (and only their rows in the CSV). Default: all.
    overwrite : bool
        Replace existing files; otherwise an existing output file is an error raised
        before anything is written.
    write_instances : bool
        Write ``instances.tif``.
    smooth : bool
        Taubin-smooth the meshes (removes the voxel staircase).

    Yields
    ------
    Progress
        Stage ``"export"``, one per fossil; then ``"write table"``.

    Returns
    -------
    ExportResult
        The paths written.

    Raises
    ------
    InputError
        On a bad ``mesh_format``, ``margin`` or ``ids``, an ``image`` of another shape,
        or existing output files without ``overwrite``.
    """
    fmt = check_mesh_format(mesh_format)
    if isinstance(margin, bool) or not isinstance(margin, (int, np.integer)) or margin < 0:
        raise InputError(f"margin: expected an integer >= 0 (voxels), got {margin!r}")
    instances = table.instances
    # A lazy scan (a zarr view) stays lazy: only each fossil's crop is read.
    lazy = hasattr(image, "shape") and hasattr(image, "dtype")
    img = image if image is None or lazy else np.asarray(image)
    if img is not None and tuple(img.shape) != tuple(instances.shape):
        raise InputError(
            f"image: expected the shape of the instances {tuple(instances.shape)}, "
            f"got {tuple(img.shape)}"
        )

    all_ids = table.ids
    if ids is None:
        selected = list(all_ids)
    else:
        known = set(all_ids)
        selected = [int(i) for i in ids]
        unknown = [i for i in selected if i not in known]
        if unknown:
            raise InputError(
                f"ids: expected fossil ids of the table (1..{max(all_ids, default=0)}), "
                f"got unknown {unknown[:5]}"
            )
        selected = list(dict.fromkeys(selected))
    rows_by_id = {int(r["id"]): r for r in table.rows}

    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise InputError(f"outdir: expected a folder, got the file {str(out)!r}")
    csv_path = out / "fossils.csv"
    inst_path = out / "instances.tif" if write_instances else None
    mesh_paths = {i: out / "meshes" / f"{fossil_stem(i)}.{fmt}" for i in selected} if fmt else {}
    crop_paths = {i: out / "crops" / f"{fossil_stem(i)}.tif" for i in selected} if crops else {}
    planned = [
        csv_path,
        *([inst_path] if inst_path else []),
        *mesh_paths.values(),
        *crop_paths.values(),
    ]
    earlier = {p for p in planned if p.exists()}
    if not overwrite:
        existing = [p for p in planned if p in earlier]
        if existing:
            raise InputError(
                f"outdir: {str(existing[0])!r} already exists"
                f"{f' (and {len(existing) - 1} more)' if len(existing) > 1 else ''}; "
                "choose another folder or pass overwrite=True (--overwrite)"
            )

    made = [d for d in (out, out / "meshes", out / "crops") if not d.exists()]
    written: list[Path] = []
    try:
        yield from _write_files(
            table,
            out,
            img,
            selected,
            rows_by_id,
            inst_path,
            mesh_paths,
            crop_paths,
            csv_path,
            margin=margin,
            overwrite=overwrite,
            smooth=smooth,
            written=written,
        )
    except BaseException:
        _undo_partial(planned, earlier, made, written, csv_path)
        raise
    logger.info("exported %d fossils to %s", len(selected), out)
    return ExportResult(
        outdir=out, csv=csv_path, instances=inst_path, meshes=mesh_paths, crops=crop_paths
    )


def export_fossils(table: FossilTable, outdir: str | Path, **kwargs: Any) -> ExportResult:
    """Write the fossils of a table to a folder; see :func:`iter_export_fossils`."""
    return drain(iter_export_fossils(table, outdir, **kwargs))


def _write_mesh(mesh: Any, path: Path, fmt: str) -> None:
    with atomic_path(path) as tmp:
        mesh.export(file_obj=str(tmp), file_type=fmt)


def _undo_partial(
    planned: list[Path], earlier: set[Path], made: list[Path], written: list[Path], csv: Path
) -> None:
    """After a failure (or a cancel) part-way: remove the files this export added and
    the folders it created; if it already replaced files of an earlier export, remove
    that export's ``fossils.csv`` too, which no longer describes them. What is left is
    the earlier export untouched, or files without a table (an unfinished export)."""
    for p in planned:
        if p not in earlier:
            p.unlink(missing_ok=True)
    if csv not in written and any(p in earlier for p in written):
        csv.unlink(missing_ok=True)
        logger.warning("export to %s failed part-way; its old fossils.csv removed", csv.parent)
    for d in reversed(made):
        with contextlib.suppress(OSError):
            d.rmdir()  # only if empty


def _write_files(
    table: FossilTable,
    out: Path,
    img: Any,
    selected: list[int],
    rows_by_id: Mapping[int, Mapping[str, Any]],
    inst_path: Path | None,
    mesh_paths: Mapping[int, Path],
    crop_paths: Mapping[int, Path],
    csv_path: Path,
    *,
    margin: int,
    overwrite: bool,
    smooth: bool,
    written: list[Path],
) -> Generator[Progress, None, None]:
    """The writing part of :func:`iter_export_fossils`; appends each file to `written`."""
    fmt = next(iter(mesh_paths.values())).suffix[1:] if mesh_paths else None
    instances: Any = table.instances
    out.mkdir(parents=True, exist_ok=True)
    if mesh_paths:
        (out / "meshes").mkdir(exist_ok=True)
    if crop_paths:
        (out / "crops").mkdir(exist_ok=True)

    sp = np.asarray(table.spacing, dtype=float)
    shape = np.asarray(instances.shape)
    total = len(selected)
    order = selected
    if is_lazy(instances) or is_lazy(img):
        # On disk: visit the fossils in raster order of their boxes, through a chunk
        # cache, so that neighbours share the chunks they read.
        instances = CachedCrops(instances) if is_lazy(instances) else instances
        img = CachedCrops(img) if is_lazy(img) else img
        order = sorted(selected, key=lambda i: [rows_by_id[i][f"bbox_{a}0"] for a in "zyx"])
    yield Progress("export", 0, total)
    for done, fid in enumerate(order, start=1):
        row = rows_by_id[fid]
        start = np.array([row["bbox_z0"], row["bbox_y0"], row["bbox_x0"]], dtype=int)
        stop = np.array([row["bbox_z1"], row["bbox_y1"], row["bbox_x1"]], dtype=int)
        if fid in mesh_paths:
            body = instances[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))] == fid
            mesh = mask_to_mesh(body, spacing=table.spacing, origin=start * sp, smooth=smooth)
            _write_mesh(mesh, mesh_paths[fid], fmt or "stl")
            written.append(mesh_paths[fid])
        if fid in crop_paths:
            lo = np.maximum(start - margin, 0)
            hi = np.minimum(stop + margin, shape)
            box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
            body = instances[box] == fid
            meta = {"fossil_id": fid, "crop_start_zyx": [int(v) for v in lo]}
            if img is None:
                write_tiff(
                    crop_paths[fid],
                    body.astype(np.uint8) * np.uint8(255),
                    spacing=table.spacing,
                    overwrite=overwrite,
                    metadata=meta,
                    axes="ZYX",
                )
            else:
                scan = np.asarray(img[box])
                if scan.dtype == bool:
                    scan = scan.astype(np.uint8)
                mask = np.zeros_like(scan)
                mask[body] = _mask_value(scan.dtype)
                write_tiff(
                    crop_paths[fid],
                    np.stack([scan, mask], axis=1),
                    spacing=table.spacing,
                    overwrite=overwrite,
                    metadata=meta,
                    axes="ZCYX",
                )
            written.append(crop_paths[fid])
        yield Progress("export", done, total)

    yield Progress("write table", 0, 1)
    if inst_path is not None:
        write_tiff(
            inst_path, table.instances, spacing=table.spacing, overwrite=overwrite, axes="ZYX"
        )
        written.append(inst_path)
    rows = []
    for fid in selected:
        row = dict(rows_by_id[fid])
        row["mesh_file"] = mesh_paths[fid].relative_to(out).as_posix() if fid in mesh_paths else ""
        row["crop_file"] = crop_paths[fid].relative_to(out).as_posix() if fid in crop_paths else ""
        rows.append(row)
    write_fossils_csv(csv_path, rows, (*table.columns, *FILE_COLUMNS))
    written.append(csv_path)
    yield Progress("write table", 1, 1)
