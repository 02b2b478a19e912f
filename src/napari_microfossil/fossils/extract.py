"""Finding fossils: the connected bodies of one class, filled, filtered, split and measured.

Fossil ids are ``1..N`` in order of size, largest first (ties by the position of the
fossil's first voxel in ``(z, y, x)`` raster order), so ``fossil_0001`` is the biggest.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import cc3d
import numpy as np
from scipy import ndimage as ndi

from .._progress import Progress, drain
from ..errors import InputError
from ._checks import check_image, check_labels, check_spacing
from .evidence import check_confidence, check_min_confidence, is_sure
from .measure import iter_measure_fossils
from .objectcheck import ObjectCheck, iter_check_outcomes
from .split import split_body, sub_box, tight_box
from .table import FossilTable

logger = logging.getLogger(__name__)

_CONNECTIVITIES = (6, 18, 26)


def iter_extract_fossils(
    labels: np.ndarray,
    *,
    class_id: int = 1,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    min_voxels: int = 0,
    min_volume_um3: float | None = None,
    split: bool = False,
    split_min_distance_um: float | None = None,
    split_neck_ratio: float = 0.7,
    fill_cavities: bool = True,
    connectivity: int = 26,
    image: np.ndarray | None = None,
    confidence: Any = None,
    min_confidence: float = 0.0,
    object_check: ObjectCheck | None = None,
) -> Generator[Progress, None, FossilTable]:
    """Find every fossil of one class, as a generator yielding progress.

    Steps: 3D connected components of ``labels == class_id``; per component, enclosed
    cavities (a hollow chamber the network left as background) are filled and join the
    fossil; optionally, touching fossils are separated by a distance-transform
    watershed; objects smaller than the size limit, or (given the model's confidence)
    less sure than the confidence limit, are dropped; each fossil is measured.

    Parameters
    ----------
    labels : (Z, Y, X) array of int
        Class id per voxel.
    class_id : int
        The class whose bodies are fossils.
    spacing : 3 floats
        Voxel size ``(z, y, x)`` in µm.
    min_voxels : int
        Drop fossils with fewer voxels (counted after cavity filling).
    min_volume_um3 : float, optional
        Drop fossils with a smaller volume in µm³; combined with ``min_voxels`` the
        stricter limit wins.
    split : bool
        Separate touching fossils: seeds are the maxima of the (lightly smoothed)
        distance-to-background map joined by a narrow neck; a watershed of that map
        grows them back to the whole body. Each component is split on its own.
    split_min_distance_um : float, optional
        With ``split``: seeds closer than this (µm) are merged, so bodies whose centres
        are closer stay one fossil. Default: no extra merging.
    split_neck_ratio : float
        With ``split``: two bodies are separated only where the neck joining them is
        narrower than this fraction of the smaller body's inscribed radius (0 < r < 1).
        Lower splits less; 0.7 keeps the chambers of a foraminifer together but
        separates balls touching by up to about two thirds of their radius. The
        command line and the panel use
        :data:`~napari_microfossil.fossils.defaults.DEFAULT_SPLIT_NECK_RATIO`.
    fill_cavities : bool
        Fill enclosed 3D cavities of each fossil (only voxels of no other fossil).
    connectivity : {26, 18, 6}
        Voxel neighbourhood for connected components.
    image : (Z, Y, X) array, optional
        The scan, for the ``mean_intensity`` column.
    confidence : (Z, Y, X) array-like, optional
        The segmentation's per-voxel confidence in percent (what ``microfossil segment
        --confidence`` writes); only each object's bounding box is read.
    min_confidence : float
        With `confidence`: drop objects whose mean confidence (over their voxels,
        filled cavities included) is below this, in percent (0 keeps all). The front
        ends use :data:`~napari_microfossil.fossils.defaults.DEFAULT_MIN_CONFIDENCE`.
    object_check : ObjectCheck, optional
        Drop objects this 3D network judges look-alikes (grain clusters, ooids) rather
        than fossils (:mod:`~napari_microfossil.fossils.objectcheck`); needs `image`
        and `confidence`. With `split`, the objects it keeps are split again where it
        judges every piece a fossil (:func:`~.objectcheck.iter_split_judged`).

    Yields
    ------
    Progress
        Stage ``"label"`` (per component, at most about 200 records), with an
        `object_check` ``"check objects"`` (per batch) and ``"split objects"``, then
        ``"measure"`` per fossil.

    Returns
    -------
    FossilTable
        Instances (ids ordered by size, largest first) and one row per fossil;
        ``dropped_unsure`` counts the objects the confidence limit dropped,
        ``dropped_lookalikes`` those the object check dropped, ``split_by_check`` those
        it split.

    Raises
    ------
    InputError
        On a non-3D or non-integer ``labels``, bad ``spacing``, ``connectivity``, size
        or confidence limits, an ``image`` or ``confidence`` of another shape, or an
        `object_check` without both.
    """
    lab = check_labels(labels, "labels")
    img = check_image(image, lab.shape)
    conf = check_confidence(confidence, lab.shape)
    if object_check is not None and (img is None or conf is None):
        raise InputError(
            "object_check: needs the scan (image) and the confidence, got "
            f"{'no scan' if img is None else 'no confidence'}"
        )
    conf_limit = check_min_confidence(min_confidence)
    opts = check_options(
        class_id=class_id,
        spacing=spacing,
        min_voxels=min_voxels,
        min_volume_um3=min_volume_um3,
        split_min_distance_um=split_min_distance_um,
        split_neck_ratio=split_neck_ratio,
        connectivity=connectivity,
    )
    sp, cid, min_count = opts.spacing, opts.class_id, opts.min_count

    yield Progress("label", 0, 1)
    mask = lab == cid
    comp, n = cc3d.connected_components(
        mask, connectivity=cast(Literal[6, 18, 26], opts.connectivity), return_N=True
    )
    del mask
    comp = comp.astype(np.uint32, copy=False)
    logger.debug("%d connected components of class %d", n, cid)

    slices = ndi.find_objects(comp)
    # At most ~200 progress records for this stage: a noisy segmentation can have
    # 10⁵ specks, and each record crosses into the UI thread.
    every = max(1, n // 200)
    pieces: list[tuple[tuple[slice, ...], np.ndarray]] = []  # (bbox, mask in bbox) per fossil
    for i, slc in enumerate(slices, start=1):
        if slc is None:
            continue
        # Filling cannot grow a component beyond its bounding box: drop the hopeless ones.
        if math.prod(s.stop - s.start for s in slc) < min_count:
            comp[slc][comp[slc] == i] = 0
            if i % every == 0 or i == n:
                yield Progress("label", i, n)
            continue
        gained, parts = component_pieces(
            comp[slc],
            i,
            sp,
            fill_cavities=fill_cavities,
            split=split,
            split_min_distance_um=split_min_distance_um,
            split_neck_ratio=split_neck_ratio,
        )
        if gained is not None:
            comp[slc][gained] = i
        for sub, mask in parts:
            pieces.append((sub_box(slc, sub), mask))
        if i % every == 0 or i == n:
            yield Progress("label", i, n)

    keep = [(s, m) for s, m in pieces if int(m.sum()) >= max(min_count, 1)]
    sure = [(s, m) for s, m in keep if is_sure(conf, s, m, conf_limit)]
    unsure = len(keep) - len(sure)
    if unsure:
        logger.info("%d objects below %g %% mean confidence dropped", unsure, conf_limit)
    keep = sure
    lookalikes = resplit = 0
    if object_check is not None and keep:
        outcomes = yield from iter_check_outcomes(
            object_check,
            keep,
            split=split,
            spacing=sp,
            min_count=min_count,
            min_distance_um=split_min_distance_um,
            scan=img,
            labels=lab,
            confidence=conf,
            class_id=cid,
        )
        lookalikes = sum(not got for got in outcomes)
        resplit = sum(len(got) > 1 for got in outcomes)
        logger.info("%d objects the object check judged look-alikes dropped", lookalikes)
        keep = [piece for got in outcomes for piece in got]
    # Largest first; Python's sort is stable, so ties keep raster order of components.
    sizes = [int(m.sum()) for _, m in keep]
    order = sorted(range(len(keep)), key=lambda k: -sizes[k])
    dtype = np.uint16 if len(keep) < np.iinfo(np.uint16).max else np.uint32
    instances = np.zeros(lab.shape, dtype=dtype)
    for new_id, k in enumerate(order, start=1):
        s, m = keep[k]
        instances[s][m] = new_id
    del comp

    rows: list[dict[str, Any]] = yield from iter_measure_fossils(instances, spacing=sp, image=img)
    return FossilTable(
        instances=instances,
        rows=tuple(rows),
        spacing=sp,
        dropped_unsure=unsure,
        dropped_lookalikes=lookalikes,
        split_by_check=resplit,
    )


@dataclass(frozen=True)
class Options:
    """Checked options of an extraction (see :func:`check_options`)."""

    class_id: int
    spacing: tuple[float, float, float]
    min_count: int
    connectivity: int


def check_options(
    *,
    class_id: Any,
    spacing: Any,
    min_voxels: Any,
    min_volume_um3: Any,
    split_min_distance_um: Any,
    split_neck_ratio: Any,
    connectivity: Any,
) -> Options:
    """Check the options of :func:`iter_extract_fossils` (shared with the blockwise path).

    Returns
    -------
    Options
        The class id, voxel size and the smallest voxel count a fossil may have (the
        stricter of `min_voxels` and `min_volume_um3`).

    Raises
    ------
    InputError
        Naming the first bad option.
    """
    sp = check_spacing(spacing)
    if connectivity not in _CONNECTIVITIES or isinstance(connectivity, bool):
        raise InputError(f"connectivity: expected one of {_CONNECTIVITIES}, got {connectivity!r}")
    if (
        isinstance(min_voxels, bool)
        or not isinstance(min_voxels, (int, np.integer))
        or min_voxels < 0
    ):
        raise InputError(f"min_voxels: expected an integer >= 0, got {min_voxels!r}")
    if min_volume_um3 is not None and not (math.isfinite(min_volume_um3) and min_volume_um3 >= 0):
        raise InputError(f"min_volume_um3: expected a number >= 0 or None, got {min_volume_um3!r}")
    if split_min_distance_um is not None and not (
        math.isfinite(split_min_distance_um) and split_min_distance_um >= 0
    ):
        raise InputError(
            f"split_min_distance_um: expected a number >= 0 or None, got {split_min_distance_um!r}"
        )
    if not 0.0 < split_neck_ratio < 1.0:
        raise InputError(
            f"split_neck_ratio: expected a number between 0 and 1, got {split_neck_ratio!r}"
        )
    try:
        cid = int(class_id)
    except (TypeError, ValueError):
        raise InputError(f"class_id: expected an integer class id, got {class_id!r}") from None

    voxel_volume = sp[0] * sp[1] * sp[2]
    min_count = int(min_voxels)
    if min_volume_um3 is not None:
        # A small epsilon so that a limit of exactly k voxels' volume keeps k voxels.
        min_count = max(min_count, math.ceil(min_volume_um3 / voxel_volume - 1e-9))

    return Options(cid, sp, min_count, int(connectivity))


def component_pieces(
    state: np.ndarray,
    index: int,
    spacing: tuple[float, float, float],
    *,
    fill_cavities: bool,
    split: bool,
    split_min_distance_um: float | None,
    split_neck_ratio: float,
) -> tuple[np.ndarray | None, list[tuple[tuple[slice, ...], np.ndarray]]]:
    """Fill, and optionally split, one component within its bounding box.

    Parameters
    ----------
    state : (z, y, x) array of int
        The component volume cropped to the component's bounding box: ``index`` marks
        the component, 0 voxels that no (kept) component holds.
    index : int
        The component's id in `state`.

    Returns
    -------
    gained : (z, y, x) bool array or None
        Cavity voxels the component takes (only voxels that are 0 in `state`).
    pieces : list of (slices, mask)
        Each fossil made of the component: its tight box within the crop and its mask
        in that box.
    """
    body = state == index
    gained = None
    if fill_cavities and min(body.shape) >= 3:
        filled = ndi.binary_fill_holes(body)
        more = filled & ~body & (state == 0)
        if more.any():
            body |= more
            gained = more
    if split:
        parts = split_body(body, spacing, split_min_distance_um, split_neck_ratio)
    else:
        parts = [body]
    pieces = []
    for part in parts:
        sub = tight_box(part)
        pieces.append((sub, part[sub]))
    return gained, pieces


def extract_fossils(labels: np.ndarray, **kwargs: Any) -> FossilTable:
    """Find every fossil of one class; see :func:`iter_extract_fossils` for parameters."""
    return drain(iter_extract_fossils(labels, **kwargs))
