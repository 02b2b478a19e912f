"""The fossil table: an instance volume (one id per fossil) and one record per fossil."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._progress import Progress, drain
from ..errors import InputError
from ._checks import check_labels, check_spacing

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


@dataclass(frozen=True, eq=False)
class FossilTable:
    """Fossils found in a labelled volume.

    Parameters
    ----------
    instances : (Z, Y, X) array of uint16 or uint32
        0 = not a fossil, ``k`` = fossil ``k``. uint16 when there are fewer than 65535
        fossils, uint32 otherwise. From the blockwise extraction
        (:mod:`~napari_microfossil.fossils.blockwise`): a lazy view of an
        ``instances.zarr`` store, uint32, that the measurements, meshes, crops and
        pictures read one bounding box at a time; edits load it into memory.
    rows : tuple of dict
        One measurement record per fossil, keys :attr:`columns`, in id order.
    spacing : (float, float, float)
        Voxel size ``(z, y, x)`` in µm.
    columns : tuple of str
        Column names, in order (:data:`FOSSIL_COLUMNS`).
    dropped_unsure : int
        How many objects the extraction dropped as too unsure (below its confidence
        limit, :mod:`~napari_microfossil.fossils.evidence`); 0 after edits.
    dropped_lookalikes : int
        How many objects the object check judged look-alikes and dropped
        (:mod:`~napari_microfossil.fossils.objectcheck`); 0 after edits.
    split_by_check : int
        How many objects the object check split into fossils
        (:func:`~napari_microfossil.fossils.objectcheck.iter_split_judged`); 0 after edits.
    """

    instances: np.ndarray
    rows: tuple[dict[str, Any], ...]
    spacing: tuple[float, float, float]
    columns: tuple[str, ...] = FOSSIL_COLUMNS
    dropped_unsure: int = 0
    dropped_lookalikes: int = 0
    split_by_check: int = 0

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

    def bbox(self, fossil_id: int) -> tuple[slice, slice, slice]:
        """The recorded bounding box of one fossil, ``(z, y, x)`` slices in voxels.

        Raises
        ------
        InputError
            If there is no fossil with that id.
        """
        r = self.row(fossil_id)
        z, y, x = (slice(int(r[f"bbox_{ax}0"]), int(r[f"bbox_{ax}1"])) for ax in "zyx")
        return z, y, x

    @classmethod
    def from_instances(
        cls,
        instances: np.ndarray,
        *,
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        image: np.ndarray | None = None,
    ) -> FossilTable:
        """Measure an (edited) instance volume into a new table; ids are kept as they are."""
        from .measure import measure_fossils

        inst = check_labels(instances, "instances")
        sp = check_spacing(spacing)
        rows = measure_fossils(inst, spacing=sp, image=image)
        return cls(instances=inst, rows=tuple(rows), spacing=sp)

    # -- edits (see :mod:`napari_microfossil.fossils.edit`) ---------------------------

    def delete(self, ids: Iterable[int], *, copy: bool = True) -> FossilTable:
        """A table without these fossils (their voxels 0); see :func:`~.edit.delete_fossils`."""
        from .edit import delete_fossils

        return delete_fossils(self, ids, copy=copy)

    def merge(self, ids: Iterable[int], *, image: Any = None, copy: bool = True) -> FossilTable:
        """A table with these fossils joined under the smallest id, measured again;
        see :func:`~.edit.merge_fossils`."""
        from .edit import merge_fossils

        return merge_fossils(self, ids, image=image, copy=copy)

    def iter_remeasure(
        self,
        *,
        ids: Iterable[int] | None = None,
        instances: np.ndarray | None = None,
        image: Any = None,
    ) -> Generator[Progress, None, FossilTable]:
        """Measure (some) fossils again after their voxels changed, yielding progress;
        see :func:`~.edit.iter_remeasure_fossils`."""
        from .edit import iter_remeasure_fossils

        return iter_remeasure_fossils(self, ids=ids, instances=instances, image=image)

    def remeasure(
        self,
        *,
        ids: Iterable[int] | None = None,
        instances: np.ndarray | None = None,
        image: Any = None,
    ) -> FossilTable:
        """Measure (some) fossils again; see :func:`~.edit.iter_remeasure_fossils`."""
        return drain(self.iter_remeasure(ids=ids, instances=instances, image=image))
