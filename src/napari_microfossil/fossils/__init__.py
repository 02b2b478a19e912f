"""Fossils as 3D objects: connected components of a class, and their measurements.

A segmentation gives each voxel a class id; a *fossil* is one connected body of the
fossil class. :func:`iter_extract_fossils` turns labels into an instance volume (one id
per fossil) and a table of measurements in physical units (µm); :func:`measure_fossils`
measures an instance volume again after the user merged or deleted fossils.

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
from .mesh import mask_surface_area

logger = logging.getLogger(__name__)

#: Columns of the fossil table, in order. Lengths and positions ending in ``_um`` are
#: in µm; ``bbox_*`` and ``centroid_z/y/x`` are in voxels (bbox half-open: ``z0 <= z < z1``).
FOSSIL_COLUMNS: tuple[str, ...] = (
    "id",
    "voxels",
    "volume_um3",
    "equivalent_diameter_um",
    "surface_area_um2",
    "sphericity",
    "length_um",
    "width_um",
    "thickness_um",
    "bbox_z0",
    "bbox_y0",
    "bbox_x0",
    "bbox_z1",
    "bbox_y1",
    "bbox_x1",
    "centroid_z",
    "centroid_y",
    "centroid_x",
    "centroid_z_um",
    "centroid_y_um",
    "centroid_x_um",
    "mean_intensity",
    "touches_border",
)

_CONNECTIVITIES = (6, 18, 26)


@dataclass(frozen=True, eq=False)
class FossilTable:
    """Fossils found in a labelled volume.

    Parameters
    ----------
    instances : (Z, Y, X) array of uint16 or uint32
        0 = not a fossil, ``k`` = fossil ``k``. uint16 when there are fewer than 65535
        fossils, uint32 otherwise.
    rows : tuple of dict
        One measurement record per fossil, keys :attr:`columns`, in id order.
    spacing : (float, float, float)
        Voxel size ``(z, y, x)`` in µm.
    columns : tuple of str
        Column names, in order (:data:`FOSSIL_COLUMNS`).
    """

    instances: np.ndarray
    rows: tuple[dict[str, Any], ...]
    spacing: tuple[float, float, float]
    columns: tuple[str, ...] = FOSSIL_COLUMNS

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return (
            f"FossilTable({len(self.rows)} fossils, instances {self.instances.shape} "
            f"{self.instances.dtype}, spacing={self.spacing})"
        )

    @property
    def ids(self) -> tuple[int, ...]:
        """Fossil ids, in row order."""
        return tuple(int(r["id"]) for r in self.rows)

    def row(self, fossil_id: int) -> dict[str, Any]:
        """The measurement record of one fossil.

        Raises
        ------
        InputError
            If there is no fossil with that id.
        """
        for r in self.rows:
            if int(r["id"]) == int(fossil_id):
                return r
        raise InputError(f"fossil id: expected one of the table's ids, got {fossil_id!r}")

    @classmethod
    def from_instances(
        cls,
        instances: np.ndarray,
        *,
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        image: np.ndarray | None = None,
    ) -> FossilTable:
        """Measure an (edited) instance volume into a new table; ids are kept as they are."""
        inst = _check_labels(instances, "instances")
        sp = _check_spacing(spacing)
        rows = measure_fossils(inst, spacing=sp, image=image)
        return cls(instances=inst, rows=tuple(rows), spacing=sp)


# -- validation ----------------------------------------------------------------------


def _check_labels(labels: Any, name: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 3 or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise InputError(
            f"{name}: expected a 3D (Z, Y, X) array of integer class ids, "
            f"got shape {arr.shape} dtype {arr.dtype}"
        )
    return arr


def _check_spacing(spacing: Any) -> tuple[float, float, float]:
    try:
        sp = np.asarray(spacing, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(
            f"spacing: expected 3 positive numbers (z, y, x) in µm, got {spacing!r}"
        ) from None
    if sp.shape != (3,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise InputError(f"spacing: expected 3 positive numbers (z, y, x) in µm, got {spacing!r}")
    return float(sp[0]), float(sp[1]), float(sp[2])


def _check_image(image: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    if image is None:
        return None
    img = np.asarray(image)
    if img.shape != shape:
        raise InputError(f"image: expected the same shape as the labels {shape}, got {img.shape}")
    return img


# -- extraction ----------------------------------------------------------------------


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
) -> Generator[Progress, None, FossilTable]:
    """Find every fossil of one class, as a generator yielding progress.

    Steps: 3D connected components of ``labels == class_id``; per component, enclosed
    cavities (a hollow chamber the network left as background) are filled and join the
    fossil; components smaller than the size limit are dropped; optionally, touching
    fossils are separated by a distance-transform watershed; each fossil is measured.

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
        separates balls touching by up to about two thirds of their radius.
    fill_cavities : bool
        Fill enclosed 3D cavities of each fossil (only voxels of no other fossil).
    connectivity : {26, 18, 6}
        Voxel neighbourhood for connected components.
    image : (Z, Y, X) array, optional
        The scan, for the ``mean_intensity`` column.

    Yields
    ------
    Progress
        Stage ``"label"`` (per component, at most about 200 records), then
        ``"measure"`` per fossil.

    Returns
    -------
    FossilTable
        Instances (ids ordered by size, largest first) and one row per fossil.

    Raises
    ------
    InputError
        On a non-3D or non-integer ``labels``, bad ``spacing``, ``connectivity``, size
        limits, or an ``image`` of another shape.
    """
    lab = _check_labels(labels, "labels")
    sp = _check_spacing(spacing)
    img = _check_image(image, lab.shape)
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

    yield Progress("label", 0, 1)
    mask = lab == cid
    comp, n = cc3d.connected_components(
        mask, connectivity=cast(Literal[6, 18, 26], connectivity), return_N=True
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
        body = comp[slc] == i
        if fill_cavities and min(body.shape) >= 3:
            filled = ndi.binary_fill_holes(body)
            gained = filled & ~body & (comp[slc] == 0)
            if gained.any():
                comp[slc][gained] = i
                body |= gained
        if split:
            parts = _split_body(body, sp, split_min_distance_um, split_neck_ratio)
        else:
            parts = [body]
        for part in parts:
            sub = _tight(part)
            sub_slc = tuple(
                slice(s.start + t.start, s.start + t.stop) for s, t in zip(slc, sub, strict=True)
            )
            pieces.append((sub_slc, part[sub]))
        if i % every == 0 or i == n:
            yield Progress("label", i, n)

    keep = [(s, m) for s, m in pieces if int(m.sum()) >= max(min_count, 1)]
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
    return FossilTable(instances=instances, rows=tuple(rows), spacing=sp)


def extract_fossils(labels: np.ndarray, **kwargs: Any) -> FossilTable:
    """Find every fossil of one class; see :func:`iter_extract_fossils` for parameters."""
    return drain(iter_extract_fossils(labels, **kwargs))


def _tight(mask: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of the set voxels of a non-empty mask."""
    found = ndi.find_objects(mask.astype(np.uint8))
    assert found and found[0] is not None
    return found[0]


def _split_body(
    body: np.ndarray,
    spacing: tuple[float, float, float],
    min_distance_um: float | None,
    neck_ratio: float,
) -> list[np.ndarray]:
    """Split one body into touching parts; returns full-crop masks (one if no split)."""
    from skimage.morphology import local_maxima, reconstruction
    from skimage.segmentation import watershed

    padded = np.pad(body, 1)
    dist = ndi.distance_transform_edt(padded, sampling=spacing)
    # Smoothing by about a voxel removes the ripples a voxel staircase puts on the
    # ridge of an elongated body, which would otherwise become extra seeds.
    sigma = tuple(max(spacing) / s * 0.75 for s in spacing)
    dist = ndi.gaussian_filter(dist, sigma=sigma) * padded
    # Seeds are the plateaus of the h-dome reconstruction of log(distance + 1 voxel):
    # two maxima become two seeds only if the saddle between them (the neck's radius)
    # is below ``neck_ratio`` times the smaller one (its body's radius). A relative
    # depth keeps the wide joints between the chambers of one foraminifer together,
    # the extra voxel keeps staircase ripples on small bodies from counting, and
    # plateaus (not h_maxima's tops) make equally high maxima on one ridge one seed.
    voxel = max(spacing)
    if float(dist.max()) <= voxel:
        return [body]
    f = np.log(dist + voxel)
    domes = reconstruction(f - math.log(1.0 / neck_ratio), f, method="dilation")
    peaks = local_maxima(domes, connectivity=3, allow_borders=True) & padded
    seeds, n_seeds = ndi.label(peaks, structure=np.ones((3, 3, 3), dtype=bool))
    if n_seeds <= 1:
        return [body]
    if min_distance_um:
        seeds, n_seeds = _merge_close_seeds(seeds, n_seeds, dist, spacing, min_distance_um)
        if n_seeds <= 1:
            return [body]
    parts = watershed(-dist, seeds, mask=padded)[1:-1, 1:-1, 1:-1]
    return [parts == k for k in range(1, n_seeds + 1) if np.any(parts == k)]


def _merge_close_seeds(
    seeds: np.ndarray,
    n: int,
    dist: np.ndarray,
    spacing: tuple[float, float, float],
    min_distance_um: float,
) -> tuple[np.ndarray, int]:
    """Merge seeds whose highest points are closer than ``min_distance_um``."""
    idx = range(1, n + 1)
    pos = np.array(ndi.maximum_position(dist, seeds, idx), dtype=float) * np.asarray(spacing)
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a in range(n):
        for b in range(a + 1, n):
            if np.linalg.norm(pos[a] - pos[b]) < min_distance_um:
                parent[find(b)] = find(a)
    roots = sorted({find(a) for a in range(n)})
    lut = np.zeros(n + 1, dtype=np.int32)
    for a in range(n):
        lut[a + 1] = roots.index(find(a)) + 1
    return lut[seeds], len(roots)


# -- measurement ---------------------------------------------------------------------


def iter_measure_fossils(
    instances: np.ndarray,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    image: np.ndarray | None = None,
) -> Generator[Progress, None, list[dict[str, Any]]]:
    """Measure every fossil of an instance volume, yielding progress per fossil.

    Parameters
    ----------
    instances : (Z, Y, X) array of int
        0 = background, ``k > 0`` = fossil ``k``; ids need not be consecutive.
    spacing : 3 floats
        Voxel size ``(z, y, x)`` in µm.
    image : (Z, Y, X) array, optional
        The scan, for ``mean_intensity`` (NaN without an image).

    Yields
    ------
    Progress
        Stage ``"measure"``, one per fossil.

    Returns
    -------
    list of dict
        One record per fossil present, keys :data:`FOSSIL_COLUMNS`, in id order.
        Volume is the voxel count times the voxel volume; surface area is that of the
        smoothed marching-cubes mesh; length >= width >= thickness are the full extents
        of the solid ellipsoid with the same second moments (exact for an ellipsoid).
    """
    inst = _check_labels(instances, "instances")
    sp = _check_spacing(spacing)
    img = _check_image(image, inst.shape)
    if inst.size and inst.min() < 0:
        raise InputError("instances: expected ids >= 0, got negative values")
    slices = ndi.find_objects(inst) if inst.size else []
    present = [(i, s) for i, s in enumerate(slices, start=1) if s is not None]
    total = len(present)
    yield Progress("measure", 0, total)
    rows = []
    for done, (fid, slc) in enumerate(present, start=1):
        body = inst[slc] == fid
        crop = None if img is None else img[slc]
        rows.append(_measure_one(fid, body, slc, sp, inst.shape, crop))
        yield Progress("measure", done, total)
    return rows


def measure_fossils(
    instances: np.ndarray,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    image: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Measure every fossil of an instance volume; see :func:`iter_measure_fossils`."""
    return drain(iter_measure_fossils(instances, spacing=spacing, image=image))


def _measure_one(
    fid: int,
    body: np.ndarray,
    slc: tuple[slice, ...],
    spacing: tuple[float, float, float],
    shape: tuple[int, ...],
    image_crop: np.ndarray | None,
) -> dict[str, Any]:
    sp = np.asarray(spacing)
    start = np.array([s.start for s in slc])
    stop = np.array([s.stop for s in slc])
    coords = np.nonzero(body)
    n = len(coords[0])
    idx = np.stack(coords, axis=1).astype(np.float64) + start  # (n, 3) voxel indices
    centroid = idx.mean(axis=0)
    pts = idx * sp
    # Each voxel is a solid box, not a point: its own second moment adds s²/12 per axis,
    # which makes 2 * sqrt(5 * variance) the true diameter of a voxelised ellipsoid.
    cov = np.cov(pts, rowvar=False, bias=True) if n > 1 else np.zeros((3, 3))
    cov = cov + np.diag(sp**2 / 12.0)
    eig = np.sort(np.clip(np.linalg.eigvalsh(cov), 0.0, None))[::-1]
    length, width, thickness = (2.0 * np.sqrt(5.0 * eig)).tolist()

    volume = n * float(np.prod(sp))
    area = mask_surface_area(body, spacing=spacing, smooth=True)
    sphericity = (math.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area) if area > 0 else math.nan
    mean_intensity = float(image_crop[body].mean()) if image_crop is not None else math.nan
    touches = bool(np.any(start == 0) or np.any(stop == np.asarray(shape)))
    return {
        "id": int(fid),
        "voxels": int(n),
        "volume_um3": volume,
        "equivalent_diameter_um": (6.0 * volume / math.pi) ** (1 / 3),
        "surface_area_um2": area,
        "sphericity": sphericity,
        "length_um": length,
        "width_um": width,
        "thickness_um": thickness,
        "bbox_z0": int(start[0]),
        "bbox_y0": int(start[1]),
        "bbox_x0": int(start[2]),
        "bbox_z1": int(stop[0]),
        "bbox_y1": int(stop[1]),
        "bbox_x1": int(stop[2]),
        "centroid_z": float(centroid[0]),
        "centroid_y": float(centroid[1]),
        "centroid_x": float(centroid[2]),
        "centroid_z_um": float(centroid[0] * sp[0]),
        "centroid_y_um": float(centroid[1] * sp[1]),
        "centroid_x_um": float(centroid[2] * sp[2]),
        "mean_intensity": mean_intensity,
        "touches_border": touches,
    }
