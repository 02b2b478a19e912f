"""The edits a user makes to a fossil table: delete fossils, merge fossils, measure again.

Each edit returns a new :class:`~napari_microfossil.fossils.table.FossilTable` whose
instance volume and rows agree: a deleted fossil's voxels are 0 and its row is gone; a
merged fossil carries the smallest id of the group and is measured again, so its row is
exactly what :func:`~napari_microfossil.fossils.measure.measure_fossils` gives for the
edited volume. Ids are never renumbered. Only the edited fossils' bounding boxes are
read or written, so an edit costs what those fossils cost, not the whole scan.

By default the instance volume is copied first (the input table stays as it was);
``copy=False`` edits ``table.instances`` in place, for a volume that a viewer shows.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .._progress import Progress, drain
from ..errors import InputError
from ._checks import check_labels
from .measure import iter_measure_fossils, measure_one
from .split import tight_box
from .table import FossilTable


def _ids(table: FossilTable, ids: Iterable[Any], *, least: int) -> list[int]:
    """`ids` as sorted distinct ints of the table; at least `least` of them."""
    try:
        wanted = sorted({int(i) for i in ids})
    except (TypeError, ValueError):
        raise InputError(f"ids: expected fossil ids (integers), got {ids!r}") from None
    known = set(table.ids)
    unknown = [i for i in wanted if i not in known]
    if unknown:
        raise InputError(
            f"ids: expected fossil ids of the table (1..{max(table.ids, default=0)}), "
            f"got unknown {unknown[:5]}"
        )
    if len(wanted) < least:
        raise InputError(
            f"ids: expected at least {least} different fossil id{'s' if least > 1 else ''}, "
            f"got {wanted}"
        )
    return wanted


def _image_crop(image: Any, shape: tuple[int, ...], box: tuple[slice, ...]) -> np.ndarray | None:
    """The scan inside `box` (only that part is read, so lazy scans work)."""
    if image is None:
        return None
    got = tuple(getattr(image, "shape", ()))
    if got != shape:
        raise InputError(f"image: expected the shape of the instances {shape}, got {got}")
    return np.asarray(image[box])


def _editable(table: FossilTable, copy: bool) -> np.ndarray:
    """The instance volume to edit: a copy, or the array itself. An on-disk (lazy)
    volume, as the blockwise extraction makes, is loaded: edits work in memory."""
    if not isinstance(table.instances, np.ndarray):
        if not copy:
            raise InputError(
                "copy: expected True for a table whose instances are on disk "
                f"({type(table.instances).__name__}); they cannot be edited in place"
            )
        return np.asarray(table.instances[...])
    return table.instances.copy() if copy else table.instances


def _union(boxes: Sequence[tuple[slice, ...]]) -> tuple[slice, ...]:
    return tuple(
        slice(min(b[k].start for b in boxes), max(b[k].stop for b in boxes)) for k in range(3)
    )


def delete_fossils(table: FossilTable, ids: Iterable[int], *, copy: bool = True) -> FossilTable:
    """Remove fossils: their voxels become 0 and their rows go.

    Parameters
    ----------
    table : FossilTable
    ids : iterable of int
        Fossils to delete (at least one, all in the table).
    copy : bool
        Edit a copy of ``table.instances`` (default) or the array itself.

    Returns
    -------
    FossilTable
        The other fossils, unchanged, in id order.

    Raises
    ------
    InputError
        If `ids` is empty or names a fossil that is not in the table.
    """
    gone = set(_ids(table, ids, least=1))
    inst = _editable(table, copy)
    for fid in gone:
        crop = inst[table.bbox(fid)]
        crop[crop == fid] = 0
    rows = tuple(r for r in table.rows if int(r["id"]) not in gone)
    return FossilTable(instances=inst, rows=rows, spacing=table.spacing, columns=table.columns)


def merge_fossils(
    table: FossilTable, ids: Iterable[int], *, image: Any = None, copy: bool = True
) -> FossilTable:
    """Join fossils into one, with the smallest of their ids, and measure it again.

    Parameters
    ----------
    table : FossilTable
    ids : iterable of int
        Fossils to merge (at least two, all in the table). The parts need not touch.
    image : (Z, Y, X) array-like, optional
        The scan, for the merged fossil's ``mean_intensity``; only its box is read.
    copy : bool
        Edit a copy of ``table.instances`` (default) or the array itself.

    Returns
    -------
    FossilTable
        The merged fossil's row is that of a fresh measurement of the edited volume
        (volume = sum of the parts, bounding box = their union, ...); the others are
        unchanged.

    Raises
    ------
    InputError
        If fewer than two ids are given, one is not in the table, or `image` has
        another shape than the instances.
    """
    group = _ids(table, ids, least=2)
    shape = tuple(table.instances.shape)
    target, others = group[0], group[1:]
    boxes = [table.bbox(fid) for fid in group]
    box = _union(boxes)
    crop_image = _image_crop(image, shape, box)  # checked before anything is changed
    inst = _editable(table, copy)
    for fid, b in zip(others, boxes[1:], strict=True):
        crop = inst[b]
        crop[crop == fid] = target
    body = inst[box] == target
    merged: dict[str, Any] | None = None
    if body.any():
        tight = tight_box(body)
        slc = tuple(
            slice(o.start + t.start, o.start + t.stop) for o, t in zip(box, tight, strict=True)
        )
        img = None if crop_image is None else crop_image[tight]
        merged = measure_one(target, body[tight], slc, table.spacing, shape, img)
    rows = []
    for r in table.rows:
        fid = int(r["id"])
        if fid == target:
            if merged is not None:
                rows.append(merged)
        elif fid not in others:
            rows.append(r)
    return FossilTable(
        instances=inst, rows=tuple(rows), spacing=table.spacing, columns=table.columns
    )


def iter_remeasure_fossils(
    table: FossilTable,
    *,
    ids: Iterable[int] | None = None,
    instances: np.ndarray | None = None,
    image: Any = None,
) -> Generator[Progress, None, FossilTable]:
    """Measure fossils again after their voxels changed (painting, erasing), with progress.

    Parameters
    ----------
    table : FossilTable
        The table before the change.
    ids : iterable of int, optional
        Only these fossils (ids of the table, or ids newly painted into the volume);
        a fossil with no voxels left loses its row. Default: every fossil of the
        volume, as :meth:`FossilTable.from_instances` would.
    instances : (Z, Y, X) array of int, optional
        The changed instance volume. Default: ``table.instances`` (edited in place).
    image : (Z, Y, X) array-like, optional
        The scan, for ``mean_intensity``.

    Yields
    ------
    Progress
        Stage ``"measure"``, one per measured fossil.

    Returns
    -------
    FossilTable
        Rows in id order; rows of fossils not asked for are kept as they were.

    Raises
    ------
    InputError
        On a bad volume or image, or an id that is neither in the table nor in the volume.
    """
    inst = check_labels(table.instances if instances is None else instances, "instances")
    shape = tuple(inst.shape)
    if image is not None and tuple(getattr(image, "shape", ())) != shape:
        raise InputError(
            f"image: expected the shape of the instances {shape}, "
            f"got {tuple(getattr(image, 'shape', ()))}"
        )
    if ids is None:
        rows = yield from iter_measure_fossils(
            inst, spacing=table.spacing, image=None if image is None else np.asarray(image)
        )
        return FossilTable(
            instances=inst, rows=tuple(rows), spacing=table.spacing, columns=table.columns
        )
    try:
        wanted = sorted({int(i) for i in ids})
    except (TypeError, ValueError):
        raise InputError(f"ids: expected fossil ids (integers), got {ids!r}") from None
    slices = ndi.find_objects(inst) if inst.size else []
    present = {i: s for i, s in enumerate(slices, start=1) if s is not None}
    known = set(table.ids)
    unknown = [i for i in wanted if i not in present and i not in known]
    if unknown:
        raise InputError(
            f"ids: expected ids of the table or of the volume, got unknown {unknown[:5]}"
        )
    fresh: dict[int, dict[str, Any] | None] = {}
    yield Progress("measure", 0, len(wanted))
    for done, fid in enumerate(wanted, start=1):
        slc = present.get(fid)
        if slc is None:
            fresh[fid] = None
        else:
            crop = None if image is None else np.asarray(image[slc])
            fresh[fid] = measure_one(fid, inst[slc] == fid, slc, table.spacing, shape, crop)
        yield Progress("measure", done, len(wanted))
    by_id = {int(r["id"]): r for r in table.rows} | fresh
    kept = tuple(r for _, r in sorted(by_id.items()) if r is not None)
    return FossilTable(instances=inst, rows=kept, spacing=table.spacing, columns=table.columns)


def remeasure_fossils(table: FossilTable, **kwargs: Any) -> FossilTable:
    """Measure fossils again; see :func:`iter_remeasure_fossils` for parameters."""
    return drain(iter_remeasure_fossils(table, **kwargs))
