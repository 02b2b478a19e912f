"""Extract fossils from a segmentation, and export them: the rules both front ends share.

- :class:`ExtractRequest` / :func:`iter_extract`: fossils of one class of an in-memory
  (or lazy) label volume -- the Fossils panel's Extract, and the first half of
  :func:`iter_fossils`. The class is given by name or id and checked against the
  labels' class names; the background is never a fossil class.
- :class:`ExportRequest` / :func:`iter_export`: a table's meshes, crops, ``fossils.csv``
  and ``instances.tif``, then optionally the picture gallery.
- :class:`FossilsRequest` / :func:`iter_fossils`: ``microfossil fossils`` -- read a
  labels file (and the scan), extract, export. A ``.zarr`` labels input is read lazily
  and processed block by block (:mod:`.fossils_store`), writing ``instances.zarr``.

Edits of a table (delete, merge, re-measure) are methods of
:class:`~napari_microfossil.fossils.FossilTable`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import ProgressGen
from ..errors import InputError
from ..fossils import (
    ExportResult,
    FossilTable,
    GalleryResult,
    iter_export_fossils,
    iter_extract_fossils,
    iter_write_gallery,
)
from ..fossils.defaults import DEFAULT_MIN_CONFIDENCE, DEFAULT_SPLIT_NECK_RATIO
from ..fossils.evidence import check_confidence, check_min_confidence
from ..fossils.export import check_mesh_format
from ..fossils.objectcheck import bundled_object_check
from ..io import parse_spacing, read_labels, read_volume
from ..io.zarr_store import is_zarr
from .fossils_checks import (
    check_folder,
    check_min_volume,
    check_neck_ratio,
    flag,
    fossil_class,
    whole,
)
from .fossils_store import INSTANCES_ZARR, check_class_labels, iter_fossils_lazy
from .outputs import check_disk_space, check_not_input, check_output_folder, expected_bytes

#: Files whose presence in a folder means it already holds an export (or a gallery).
EXPORT_MARKERS = ("fossils.csv", "index.html")


def earlier_export(outdir: str | Path) -> Path | None:
    """The first file of an earlier export in `outdir` (:data:`EXPORT_MARKERS`), or None."""
    found = [Path(outdir) / name for name in EXPORT_MARKERS if (Path(outdir) / name).exists()]
    return found[0] if found else None


# ---------------------------------------------------------------- extract


@dataclass(frozen=True, eq=False)
class ExtractRequest:
    """Find the fossils of one class in a label volume.

    Parameters
    ----------
    labels : (Z, Y, X) array-like of int
        Class id per voxel; may be lazy (it is read when the use case runs).
    class_names : sequence of str
        The labels' class names (index = id), or empty.
    which : str or int
        The fossil class, by name or id (see :func:`fossil_class`).
    spacing : 3 floats
        Voxel size ``(z, y, x)`` in µm.
    image : (Z, Y, X) array-like, optional
        The scan, same shape as `labels`, for ``mean_intensity``.
    min_voxels, min_volume_um3, split, fill_cavities
        As :func:`~napari_microfossil.fossils.iter_extract_fossils`.
    split_neck_ratio : float
        As there; default
        :data:`~napari_microfossil.fossils.defaults.DEFAULT_SPLIT_NECK_RATIO`.
    confidence : (Z, Y, X) array-like, optional
        The segmentation's confidence (percent), same shape as `labels`.
    min_confidence : float
        With `confidence`: objects of a lower mean confidence are dropped (percent;
        0 keeps all); default
        :data:`~napari_microfossil.fossils.defaults.DEFAULT_MIN_CONFIDENCE`.
    object_check : bool
        Drop the objects the bundled object check judges look-alikes
        (:mod:`~napari_microfossil.fossils.objectcheck`); needs `image` and `confidence`.

    Raises
    ------
    InputError
        On construction: a labels volume that is not 3D, an unknown or background
        class, a bad voxel size, size or confidence limit, a scan or confidence of
        another shape, or the object check without both.
    """

    labels: Any
    class_names: tuple[str, ...] = ()
    which: str | int = "fossil"
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    image: Any = None
    min_voxels: int = 0
    min_volume_um3: float | None = None
    split: bool = False
    fill_cavities: bool = True
    split_neck_ratio: float = DEFAULT_SPLIT_NECK_RATIO
    confidence: Any = None
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    object_check: bool = False
    class_id: int = field(init=False)
    class_label: str = field(init=False)

    def __post_init__(self) -> None:
        shape = tuple(getattr(self.labels, "shape", ()))
        if len(shape) != 3:
            raise InputError(f"labels: expected a 3D (Z, Y, X) volume, got shape {shape}")
        names = tuple(str(n) for n in (self.class_names or ()))
        object.__setattr__(self, "class_names", names)
        cid, label = fossil_class(names, self.which)
        object.__setattr__(self, "class_id", cid)
        object.__setattr__(self, "class_label", label)
        object.__setattr__(self, "spacing", parse_spacing(self.spacing))
        if self.image is not None and tuple(getattr(self.image, "shape", ())) != shape:
            raise InputError(
                f"image: expected the labels' shape {shape}, "
                f"got {tuple(getattr(self.image, 'shape', ()))}"
            )
        whole(self.min_voxels, "min_voxels")
        check_min_volume(self.min_volume_um3)
        flag(self.split, "split")
        flag(self.fill_cavities, "fill_cavities")
        check_neck_ratio(self.split_neck_ratio)
        check_confidence(self.confidence, shape)
        object.__setattr__(self, "min_confidence", check_min_confidence(self.min_confidence))
        flag(self.object_check, "object_check")
        if self.object_check and (self.image is None or self.confidence is None):
            missing = "scan" if self.image is None else "confidence"
            raise InputError(f"object_check: needs the scan and the confidence, got no {missing}")


def iter_extract(request: ExtractRequest) -> ProgressGen[FossilTable]:
    """Extract the fossils of a checked request; yields the engine's progress.

    Returns
    -------
    FossilTable
        See :func:`~napari_microfossil.fossils.iter_extract_fossils`.
    """
    image = None if request.image is None else np.asarray(request.image)
    return (
        yield from iter_extract_fossils(
            np.asarray(request.labels),
            class_id=request.class_id,
            spacing=request.spacing,
            min_voxels=request.min_voxels,
            min_volume_um3=request.min_volume_um3,
            split=request.split,
            split_neck_ratio=request.split_neck_ratio,
            fill_cavities=request.fill_cavities,
            image=image,
            confidence=request.confidence,
            min_confidence=request.min_confidence,
            object_check=bundled_object_check() if request.object_check else None,
        )
    )


# ---------------------------------------------------------------- export


@dataclass(frozen=True, eq=False)
class ExportRequest:
    """Write a table's fossils to a folder (see :mod:`napari_microfossil.fossils.export`).

    Parameters
    ----------
    table : FossilTable
    outdir : path
        The export folder (created if missing; must not be a file).
    image : (Z, Y, X) array-like, optional
        The scan, for the crops and the gallery's slices.
    ids : sequence of int, optional
        Only these fossils (at least one); default all.
    mesh_format : {"stl", "ply", "obj", "none", None}
    crops, gallery, overwrite : bool
        Write cropped TIFFs; write the picture gallery; replace existing files.

    Raises
    ------
    InputError
        On construction: a bad mesh format, an outdir that is a file, or ids that are
        empty or not in the table.
    """

    table: FossilTable
    outdir: Path
    image: Any = None
    ids: tuple[int, ...] | None = None
    mesh_format: str | None = "stl"
    crops: bool = True
    gallery: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "outdir", Path(self.outdir))
        object.__setattr__(self, "mesh_format", check_mesh_format(self.mesh_format))
        check_folder(self.outdir)
        check_output_folder(self.outdir, "outdir")
        if self.ids is not None:
            try:
                ids = tuple(dict.fromkeys(int(i) for i in self.ids))
            except (TypeError, ValueError):
                raise InputError(f"ids: expected fossil ids (integers), got {self.ids!r}") from None
            if not ids:
                raise InputError("ids: expected at least one fossil id, got none")
            known = set(self.table.ids)
            unknown = [i for i in ids if i not in known]
            if unknown:
                raise InputError(
                    f"ids: expected fossil ids of the table, got unknown {unknown[:5]}"
                )
            object.__setattr__(self, "ids", ids)
        for name in ("crops", "gallery", "overwrite"):
            flag(getattr(self, name), name)

    @property
    def count(self) -> int:
        """How many fossils are exported."""
        return len(self.table) if self.ids is None else len(self.ids)


@dataclass(frozen=True)
class ExportDone:
    """What :func:`iter_export` wrote: the export, and the gallery if one was asked for."""

    export: ExportResult
    gallery: GalleryResult | None = None


def iter_export(request: ExportRequest) -> ProgressGen[ExportDone]:
    """Export a checked request's fossils, then the gallery; yields the engine's progress."""
    r = request
    written = yield from iter_export_fossils(
        r.table,
        r.outdir,
        image=r.image,
        mesh_format=r.mesh_format,
        crops=r.crops,
        ids=r.ids,
        overwrite=r.overwrite,
    )
    pictures = None
    if r.gallery:
        pictures = yield from iter_write_gallery(
            r.table, r.outdir, image=r.image, ids=r.ids, overwrite=r.overwrite
        )
    return ExportDone(export=written, gallery=pictures)


# ---------------------------------------------------------------- files in, files out


@dataclass(frozen=True)
class FossilsRequest:
    """Extract the fossils of a labels file and export them (``microfossil fossils``).

    Parameters
    ----------
    labels : path
        The label volume (a segmentation). A zarr store is read lazily and its fossils
        found block by block; the instances then go to ``instances.zarr``
        (``instances.tif`` otherwise).
    outdir : path
        The export folder (created if missing; must not be a file).
    image : path, optional
        The scan, for the crops and ``mean_intensity``; same shape as the labels.
    which : str or int
        The fossil class, by name or id.
    min_voxels, min_volume_um3, split, fill_cavities
        As :func:`~napari_microfossil.fossils.iter_extract_fossils`.
    split_neck_ratio : float
        As there; default
        :data:`~napari_microfossil.fossils.defaults.DEFAULT_SPLIT_NECK_RATIO`.
    mesh_format : {"stl", "ply", "obj", "none", None}
    crops : bool
        Write a cropped TIFF (scan + mask) per fossil.
    voxel_size : float or (z, y, x), optional
        Voxel size in µm, overriding the files' metadata.
    overwrite : bool
        Replace the files of an earlier export.
    confidence : path, optional
        The segmentation's confidence (``microfossil segment --confidence``), same
        shape as the labels: objects the model was unsure of are dropped.
    min_confidence : float
        The limit for `confidence`, percent (0 keeps all); default
        :data:`~napari_microfossil.fossils.defaults.DEFAULT_MIN_CONFIDENCE`.
    object_check : bool
        Drop the objects the bundled object check judges look-alikes; needs `image`
        and `confidence`, and labels in a file (not yet for ``.zarr`` stores).

    Raises
    ------
    InputError
        On construction, before anything is read: a missing input, an outdir that is
        a file, is not writable, would overwrite an input (the instances, ``fossils.csv``)
        or already holds an export (without `overwrite`), a bad mesh format,
        voxel size or size limit. The class is checked against the labels' names
        and the scan's shape against the labels' when the use case starts, before
        any work.
    """

    labels: Path
    outdir: Path
    image: Path | None = None
    which: str | int = "fossil"
    min_voxels: int = 0
    min_volume_um3: float | None = None
    split: bool = False
    fill_cavities: bool = True
    mesh_format: str | None = "stl"
    crops: bool = False
    voxel_size: tuple[float, float, float] | None = None
    overwrite: bool = False
    split_neck_ratio: float = DEFAULT_SPLIT_NECK_RATIO
    confidence: Path | None = None
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    object_check: bool = False

    def __post_init__(self) -> None:
        for name in ("labels", "outdir", "image", "confidence"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        for name in ("labels", "image", "confidence"):
            path = getattr(self, name)
            if path is not None and not path.exists():
                raise InputError(f"{name}: {path}: no such file or folder")
        check_folder(self.outdir)
        inputs = (self.labels, self.image, self.confidence)
        check_output_folder(self.outdir, "outdir", inputs=inputs)
        for name in (self.instances_name, "fossils.csv"):
            check_not_input(self.outdir / name, inputs, "outdir")
        object.__setattr__(self, "mesh_format", check_mesh_format(self.mesh_format))
        if self.voxel_size is not None:
            object.__setattr__(self, "voxel_size", parse_spacing(self.voxel_size))
        if not str(self.which).strip():
            raise InputError("class: expected a class name or id, got an empty text")
        whole(self.min_voxels, "min_voxels")
        check_min_volume(self.min_volume_um3)
        check_neck_ratio(self.split_neck_ratio)
        object.__setattr__(self, "min_confidence", check_min_confidence(self.min_confidence))
        for name in ("split", "fill_cavities", "crops", "overwrite", "object_check"):
            flag(getattr(self, name), name)
        if self.object_check:
            self._check_object_check()
        if not self.overwrite:
            existing = [self.outdir / n for n in ("fossils.csv", self.instances_name)]
            existing = [p for p in existing if p.exists()]
            if existing:
                raise InputError(
                    f"outdir: {str(existing[0])!r} already exists; "
                    "choose another folder or pass overwrite=True (--overwrite)"
                )

    def _check_object_check(self) -> None:
        if self.image is None or self.confidence is None:
            missing = "scan" if self.image is None else "confidence map"
            raise InputError(
                "object check: needs the scan (--image) and the confidence map "
                f"(--confidence), got no {missing}"
            )

    @property
    def instances_name(self) -> str:
        """``instances.zarr`` for a zarr labels input, else ``instances.tif``."""
        return INSTANCES_ZARR if is_zarr(self.labels) else "instances.tif"


@dataclass(frozen=True, eq=False)
class FossilsResult:
    """What :func:`iter_fossils` found and wrote.

    Parameters
    ----------
    request : FossilsRequest
    table : FossilTable
    export : ExportResult
    class_id : int
    class_name : str
    spacing : (float, float, float)
        The voxel size used, µm (the scan's when the labels carry none).
    """

    request: FossilsRequest
    table: FossilTable
    export: ExportResult
    class_id: int
    class_name: str
    spacing: tuple[float, float, float]


def iter_fossils(request: FossilsRequest) -> ProgressGen[FossilsResult]:
    """Read the labels (and scan), extract the fossils and export them, yielding progress.

    The voxel size is the labels' unless they carry none and the scan does. Only
    headers are read before the class and the scan's shape are checked.

    Raises
    ------
    InputError
        From reading the files, labels with values above 255 (a scan given as the
        labels), an unknown class, or a scan of another shape.
    """
    r = request
    labels = read_labels(r.labels, spacing=r.voxel_size)
    cid, name = fossil_class(labels.class_names or (), r.which)
    spacing = labels.spacing
    vol = None
    if r.image is not None:
        vol = read_volume(r.image, spacing=r.voxel_size, lazy=True)
        if vol.shape != labels.shape:
            raise InputError(
                f"image: expected the labels' shape {labels.shape}, got {vol.shape} in {r.image}"
            )
        if labels.spacing_source == "default" and vol.spacing_source != "default":
            spacing = vol.spacing
    conf = None
    if r.confidence is not None:
        conf = read_volume(r.confidence, spacing=r.voxel_size, lazy=True).data
        if tuple(conf.shape) != tuple(labels.shape):
            raise InputError(
                f"confidence: expected the labels' shape {labels.shape}, "
                f"got {tuple(conf.shape)} in {r.confidence}"
            )
    voxels = int(np.prod(labels.shape))
    need = expected_bytes(voxels, "instances")
    check_disk_space(Path(r.outdir), need, "-o", f"the instances of {voxels / 1e9:.3g} G voxels")
    if labels.lazy:
        table, export = yield from iter_fossils_lazy(
            r, labels.data, None if vol is None else vol.data, cid, spacing, confidence=conf
        )
        return FossilsResult(
            request=r, table=table, export=export, class_id=cid, class_name=name, spacing=spacing
        )
    lab = labels.load()  # read once: checked, then extracted
    check_class_labels(lab, r.labels)
    image = vol.load() if vol is not None else None
    extract = ExtractRequest(
        lab,
        class_names=labels.class_names or (),
        which=cid,
        spacing=spacing,
        image=image,
        min_voxels=r.min_voxels,
        min_volume_um3=r.min_volume_um3,
        split=r.split,
        fill_cavities=r.fill_cavities,
        split_neck_ratio=r.split_neck_ratio,
        confidence=None if conf is None else np.asarray(conf),
        min_confidence=r.min_confidence,
        object_check=r.object_check,
    )
    table = yield from iter_extract(extract)
    done = yield from iter_export(
        ExportRequest(
            table,
            r.outdir,
            image=image,
            mesh_format=r.mesh_format,
            crops=r.crops,
            overwrite=r.overwrite,
        )
    )
    return FossilsResult(
        request=r,
        table=table,
        export=done.export,
        class_id=cid,
        class_name=name,
        spacing=spacing,
    )
