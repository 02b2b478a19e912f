"""The face merge of blockwise labelling: which atoms touch across block boundaries.

Each block's outer planes (:class:`BlockFaces`) are kept until the block on the other
side of each face is labelled; the pairs of atoms facing each other across a boundary
plane, under the chosen connectivity, are the edges the merge joins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def in_plane_shifts(connectivity: int) -> list[tuple[int, int]]:
    """Shifts within a boundary plane that join two voxels across it: a voxel and its
    neighbour on the other side differ by one along the plane's normal, and by these
    along the plane (6: none; 18: at most one more axis; 26: both)."""
    all_ = [(du, dv) for du in (-1, 0, 1) for dv in (-1, 0, 1)]
    if connectivity == 6:
        return [(0, 0)]
    if connectivity == 18:
        return [(du, dv) for du, dv in all_ if abs(du) + abs(dv) <= 1]
    return all_


def face_pairs(a: np.ndarray, b: np.ndarray, shifts: Sequence[tuple[int, int]]) -> np.ndarray:
    """Distinct ``(atom in a, atom in b)`` pairs of neighbours across a boundary.

    `a` and `b` are the two planes facing each other (same 2D shape); ``a[u, v]``
    touches ``b[u + du, v + dv]`` for each shift. Returns an ``(n, 2)`` int64 array.
    """
    out = []
    nu, nv = a.shape
    for du, dv in shifts:
        sa = (slice(max(0, -du), nu - max(0, du)), slice(max(0, -dv), nv - max(0, dv)))
        sb = (slice(max(0, du), nu + min(0, du)), slice(max(0, dv), nv + min(0, dv)))
        pa, pb = a[sa], b[sb]
        both = (pa > 0) & (pb > 0)
        if both.any():
            key = (pa[both].astype(np.int64) << 32) | pb[both].astype(np.int64)
            out.append(np.unique(key))
    if not out:
        return np.zeros((0, 2), dtype=np.int64)
    keys = np.unique(np.concatenate(out))
    return np.stack([keys >> 32, keys & 0xFFFFFFFF], axis=1)


@dataclass
class Faces:
    """Boundary planes kept between blocks, and the atom pairs found so far."""

    shifts: list[tuple[int, int]]
    pairs: list[np.ndarray]
    prev_x: np.ndarray | None = None
    y_first: np.ndarray | None = None
    y_last: np.ndarray | None = None
    prev_y: np.ndarray | None = None
    z_first: np.ndarray | None = None
    z_last: np.ndarray | None = None
    prev_z: np.ndarray | None = None

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        found = face_pairs(a, b, self.shifts)
        if len(found):
            self.pairs.append(found)


@dataclass
class BlockFaces:
    """The six outer planes of a block's labels: what the face merge reads."""

    z0: np.ndarray
    z1: np.ndarray
    y0: np.ndarray
    y1: np.ndarray
    x0: np.ndarray
    x1: np.ndarray

    @classmethod
    def of(cls, g: np.ndarray) -> BlockFaces:
        return cls(
            *(np.array(p) for p in (g[0], g[-1], g[:, 0], g[:, -1], g[:, :, 0], g[:, :, -1]))
        )

    @classmethod
    def empty(cls, shape: Sequence[int]) -> BlockFaces:
        """The planes of a block of `shape` with no labels (no whole block of zeros)."""
        z, y, x = (int(n) for n in shape)
        planes = ((y, x), (y, x), (z, x), (z, x), (z, y), (z, y))
        return cls(*(np.zeros(p, np.uint32) for p in planes))

    def shifted(self, offset: int) -> BlockFaces:
        """The planes with `offset` added to every label (0 stays 0)."""
        add = np.uint32(offset)
        return BlockFaces(
            *(
                np.where(p > 0, p + add, p)
                for p in (self.z0, self.z1, self.y0, self.y1, self.x0, self.x1)
            )
        )


def collect_faces(
    faces: Faces,
    g: BlockFaces,
    region: tuple[slice, slice, slice],
    pos: tuple[int, int, int],
    last: Sequence[int],
    shape: tuple[int, ...],
) -> None:
    """Record the pairs across the block's low faces, keep its high faces for later.

    A pair of neighbours in different blocks differs in its block along some axis.
    Pairs in different z-blocks are found between whole (Y, X) planes at each z
    boundary; pairs in the same z-block but different y-blocks between (z-row, X)
    planes; pairs in the same z- and y-block between the two blocks' x faces. Each
    plane pair looks at every in-plane shift the connectivity allows.
    """
    bz, by, bx = pos
    _, ys, xs = region
    if bx > 0 and faces.prev_x is not None:
        faces.add(faces.prev_x, g.x0)
    faces.prev_x = g.x1
    if bx == 0:  # a new row of blocks along x
        faces.y_first = np.zeros((g.y0.shape[0], shape[2]), np.uint32)
        faces.y_last = np.zeros((g.y0.shape[0], shape[2]), np.uint32)
        if by == 0:
            faces.z_first = np.zeros(shape[1:], np.uint32)
            faces.z_last = np.zeros(shape[1:], np.uint32)
    assert faces.y_first is not None and faces.y_last is not None
    assert faces.z_first is not None and faces.z_last is not None
    faces.y_first[:, xs] = g.y0
    faces.y_last[:, xs] = g.y1
    faces.z_first[ys, xs] = g.z0
    faces.z_last[ys, xs] = g.z1
    if bx == last[2]:  # the row is complete
        if by > 0 and faces.prev_y is not None:
            faces.add(faces.prev_y, faces.y_first)
        faces.prev_y = faces.y_last
        if by == last[1]:  # the z-row of blocks is complete
            if bz > 0 and faces.prev_z is not None:
                faces.add(faces.prev_z, faces.z_first)
            faces.prev_z = faces.z_last
            faces.prev_y = None
