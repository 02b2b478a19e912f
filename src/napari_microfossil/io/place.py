"""Placing a sparse stack of label slices on the planes of its scan.

Labels are often made on a few slices of a scan only: ``labels/slice_0000.tif``,
``slice_0050.tif``, ... is a stack of 9 planes for a scan of 401. :func:`line_up` finds
the scan plane of each label slice, by the numbers their file names carry
(:func:`~napari_microfossil.io.slices.slice_numbers`), and :func:`line_up_evenly` from a
first plane and a step the user gives; :func:`place` then builds the labels of the
scan's shape, the placed slices at their planes and every other plane 0.

Which planes were placed is the caller's to record (the napari layer marks them
reviewed, so fine-tuning trains on them and on no other plane): 0 is a class like any
other (the sandstone's pores), so an all-0 plane cannot tell "not labelled".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["Placement", "line_up", "line_up_evenly", "place"]


@dataclass(frozen=True)
class Placement:
    """Where the slices of a label stack go on a scan of `n_planes` planes.

    Attributes
    ----------
    slices : tuple of int
        Index in the label stack of each placed slice.
    planes : tuple of int
        The scan plane (0-based index) each of `slices` goes to.
    numbers : tuple of int
        The number of each placed slice (its file's number, or its plane).
    left_out : tuple of int
        Numbers of the label slices that have no scan plane (not placed).
    n_planes : int
        Planes of the scan.
    how : str
        How the planes were found, for messages.
    """

    slices: tuple[int, ...]
    planes: tuple[int, ...]
    numbers: tuple[int, ...]
    left_out: tuple[int, ...]
    n_planes: int
    how: str

    def describe(self, scan: str = "the scan", name: str = "label slices") -> str:
        """One line: ``"9 of 10 label slices placed on the 9 planes of 'images' by the
        numbers in their file names; left out (no plane of 'images' numbered so): 180"``."""
        n = len(self.slices) + len(self.left_out)
        text = f"{len(self.slices)} of {n} {name} placed on the {self.n_planes} planes of "
        text += f"{scan} {self.how}"
        if self.left_out:
            text += f"; left out (no plane of {scan} numbered so): {_numbers(self.left_out)}"
        return text


def line_up(label_numbers: Sequence[int], scan_numbers: Sequence[int]) -> Placement:
    """Place each label slice on the scan plane with the same number.

    Parameters
    ----------
    label_numbers : sequence of int
        The number of each label slice (e.g. from its file name), in stack order.
    scan_numbers : sequence of int
        The number of each scan plane, in order: its slice files' numbers, or
        ``range(Z)`` for a scan read from one file.

    Raises
    ------
    InputError
        If no label slice has a scan plane of its number.
    """
    where = {int(n): z for z, n in enumerate(scan_numbers)}
    placed = [(k, where[int(n)], int(n)) for k, n in enumerate(label_numbers) if int(n) in where]
    left = tuple(int(n) for n in label_numbers if int(n) not in where)
    if not placed:
        raise InputError(
            f"cannot line up the label slices (numbered {_numbers(label_numbers)}) with the "
            f"scan's planes (numbered {_numbers(scan_numbers)}): no number in common; give "
            "the plane of the first label slice and the step between them instead"
        )
    return Placement(
        slices=tuple(k for k, _, _ in placed),
        planes=tuple(z for _, z, _ in placed),
        numbers=tuple(n for _, _, n in placed),
        left_out=left,
        n_planes=len(scan_numbers),
        how="by the numbers in their file names",
    )


def line_up_evenly(n_slices: int, n_planes: int, *, first: int, step: int) -> Placement:
    """Place label slice ``k`` on scan plane ``first + k * step``.

    Raises
    ------
    InputError
        If `first` is negative, `step` below 1, or the last slice falls past the scan.
    """
    if first < 0 or step < 1:
        raise InputError(
            f"first plane and step: expected a plane >= 0 and a step >= 1, got {first} and {step}"
        )
    last = first + (n_slices - 1) * step
    if last >= n_planes:
        raise InputError(
            f"cannot place {n_slices} label slices from plane {first} every {step} planes: "
            f"the last would go to plane {last}, but the scan has {n_planes} "
            f"(0..{n_planes - 1}); choose a smaller first plane or step"
        )
    planes = tuple(first + k * step for k in range(n_slices))
    return Placement(
        slices=tuple(range(n_slices)),
        planes=planes,
        numbers=planes,
        left_out=(),
        n_planes=n_planes,
        how=f"from plane {first}, every {step} planes",
    )


def place(stack: Any, placement: Placement, *, max_bytes: int | None = None) -> np.ndarray:
    """The labels of the scan's depth: `stack`'s placed slices at their planes, 0 elsewhere.

    Parameters
    ----------
    stack : array-like, shape (K, Y, X)
        The label slices (read one at a time, so a lazy stack stays lazy).
    placement : Placement
    max_bytes : int, optional
        Refuse a result larger than this (it is held in memory, to be painted in).

    Returns
    -------
    ndarray, shape (placement.n_planes, Y, X)
        Of `stack`'s dtype.

    Raises
    ------
    InputError
        If the result would be larger than `max_bytes`.
    """
    dtype = np.dtype(stack.dtype)
    shape = (placement.n_planes, *(int(n) for n in stack.shape[1:]))
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if max_bytes is not None and nbytes > max_bytes:
        raise InputError(
            f"placing the label slices on the scan makes a {shape} volume of "
            f"{nbytes / 2**30:.1f} GiB, more than the {max_bytes / 2**30:.1f} GiB held in memory "
            "for painting; crop the scan first"
        )
    out = np.zeros(shape, dtype=dtype)
    for k, z in zip(placement.slices, placement.planes, strict=True):
        out[z] = np.asarray(stack[k])
    return out


def _numbers(values: Sequence[int], limit: int = 8) -> str:
    """``"0, 50, 100, ... 400"``: a short list of slice numbers for messages."""
    items = [str(int(v)) for v in values]
    if len(items) > limit:
        items = [*items[: limit - 2], "...", items[-1]]
    return ", ".join(items)
