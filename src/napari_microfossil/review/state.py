"""Which slices of a volume, along one axis, the user has reviewed or edited.

:class:`ReviewState` is what the Review panel keeps on a labels layer and what
fine-tuning reads (:meth:`ReviewState.reviewed_slices`); :class:`Marks` is what one
edit added to it, so that undoing the edit takes exactly that back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..axes import AXES, axis_name


@dataclass(frozen=True)
class Marks:
    """Slices one edit newly marked (:meth:`ReviewState.mark_edit`), to take back on undo.

    `seq` numbers the edit (it takes no part in comparisons): :meth:`ReviewState.undo_marks`
    leaves marked a slice a later edit also changed.
    """

    axis: str
    reviewed: frozenset[int]
    edited: frozenset[int]
    seq: int = field(default=0, compare=False)


@dataclass(kw_only=True)
class ReviewState:
    """Which slices along one axis the user has reviewed or edited.

    Parameters
    ----------
    n_slices : int
        Number of slices along `axis`.
    axis : {"z", "y", "x"}
        The axis the user steps through.
    reviewed : set of int
        Slices the user has looked at and accepted, or edited.
    edited : set of int
        Slices the user has painted in; always a subset of `reviewed`.
    shape : (Z, Y, X), optional
        The volume's shape; needed by :meth:`switch_axis`.
    other_axes : dict
        Reviewed and edited slices of the axes not current, as
        ``{"y": {"reviewed": [...], "edited": [...]}}``, so switching axis loses nothing.
    """

    n_slices: int
    axis: str = "z"
    reviewed: set[int] = field(default_factory=set)
    edited: set[int] = field(default_factory=set)
    shape: tuple[int, int, int] | None = None
    other_axes: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    # Which standing edits (their Marks.seq) changed each slice, as {(axis, i): {seq}}:
    # undoing one edit keeps a slice another edit also changed. Not saved (nor the undo).
    _edits: dict[tuple[str, int], set[int]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _seq: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.axis = axis_name(self.axis)
        if isinstance(self.n_slices, bool) or not isinstance(self.n_slices, (int, np.integer)):
            raise TypeError(f"n_slices: expected an int; got {self.n_slices!r}")
        self.n_slices = int(self.n_slices)
        if self.n_slices < 0:
            raise ValueError(f"n_slices: expected >= 0; got {self.n_slices}")
        if self.shape is not None:
            shape = tuple(int(n) for n in self.shape)
            if len(shape) != 3:
                raise ValueError(f"shape: expected (Z, Y, X); got {self.shape!r}")
            if shape[AXES.index(self.axis)] != self.n_slices:
                raise ValueError(
                    f"n_slices: expected {shape[AXES.index(self.axis)]} (shape {shape} along "
                    f"{self.axis!r}); got {self.n_slices}"
                )
            self.shape = (shape[0], shape[1], shape[2])
        self.reviewed = {self._check(i) for i in self.reviewed}
        self.edited = {self._check(i) for i in self.edited}
        self.reviewed |= self.edited

    @classmethod
    def for_volume(cls, shape: Sequence[int], axis: str = "z") -> ReviewState:
        """A fresh state for a volume of `shape` ``(Z, Y, X)``, stepping along `axis`."""
        shape = tuple(int(n) for n in shape)
        if len(shape) != 3:
            raise ValueError(f"shape: expected (Z, Y, X); got {shape!r}")
        name = axis_name(axis)
        return cls(n_slices=shape[AXES.index(name)], axis=name, shape=shape)  # type: ignore[arg-type]

    def _check(self, i: Any) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"slice index: expected an int; got {i!r}")
        if not 0 <= int(i) < self.n_slices:
            raise ValueError(
                f"slice index: expected 0..{self.n_slices - 1} along {self.axis!r}; got {i}"
            )
        return int(i)

    def mark_reviewed(self, i: int) -> None:
        """Record that slice `i` was looked at and accepted."""
        self.reviewed.add(self._check(i))

    def mark_edited(self, i: int) -> None:
        """Record that slice `i` was painted in; an edited slice counts as reviewed."""
        i = self._check(i)
        self.edited.add(i)
        self.reviewed.add(i)

    def unmark(self, i: int) -> None:
        """Forget slice `i` (reviewed and edited)."""
        i = self._check(i)
        self.reviewed.discard(i)
        self.edited.discard(i)
        self._edits.pop((self.axis, i), None)

    def mark_edit(self, touched: Iterable[int] | None, *, current: int | None) -> Marks:
        """Record an edit that changed the slices `touched`, seen on slice `current`.

        Reviewed slices become fine-tuning ground truth, so only a slice the user saw
        the edit in counts: an edit of one slice marks that slice; an edit across
        several (a 3D brush or fill, erasing a 3D object) marks only `current`, and
        nothing if it did not touch `current`. With `touched` None (unknown), `current`.

        Returns
        -------
        Marks
            The slices newly marked, for :meth:`undo_marks`. A slice this edit changed
            that was marked already is remembered too: undoing an earlier edit keeps it.
        """
        if touched is None:
            seen = set() if current is None else {int(current)}
        else:
            got = {int(i) for i in touched if 0 <= int(i) < self.n_slices}
            if len(got) == 1:
                seen = got
            else:
                seen = got & ({int(current)} if current is not None else set())
        self._seq += 1
        added = Marks(
            axis=self.axis,
            reviewed=frozenset(i for i in seen if i not in self.reviewed),
            edited=frozenset(i for i in seen if i not in self.edited),
            seq=self._seq,
        )
        for i in seen:
            self.mark_edited(i)
            self._edits.setdefault((self.axis, i), set()).add(self._seq)
        return added

    def undo_marks(self, marks: Marks) -> None:
        """Take back the slices :meth:`mark_edit` added (when its edit is undone).

        A slice reviewed before the edit and only edited by it stays reviewed; a slice
        another edit not undone also changed (a later stroke on it) stays edited.
        """
        for key in [k for k in self._edits if k[0] == marks.axis]:
            self._edits[key].discard(marks.seq)
            if not self._edits[key]:
                del self._edits[key]
        kept = {i for axis, i in self._edits if axis == marks.axis}
        reviewed, edited = marks.reviewed - kept, marks.edited - kept
        if marks.axis == self.axis:
            self.reviewed -= reviewed
            self.edited -= edited
            return
        other = self.other_axes.get(marks.axis)
        if other is not None:
            other["reviewed"] = [i for i in other.get("reviewed", []) if i not in reviewed]
            other["edited"] = [i for i in other.get("edited", []) if i not in edited]

    def is_reviewed(self, i: int) -> bool:
        return int(i) in self.reviewed

    def slice_status(self, i: int) -> str:
        """``"edited"``, ``"reviewed"`` or ``"not reviewed"``: what slice `i` is."""
        i = int(i)
        return (
            "edited" if i in self.edited else "reviewed" if i in self.reviewed else "not reviewed"
        )

    def summary(self) -> str:
        """``"k of N slices reviewed"``."""
        return f"{len(self.reviewed)} of {self.n_slices} slices reviewed"

    def switch_axis(self, axis: str) -> None:
        """Step along another axis; the slices of the current one are kept for later.

        Raises
        ------
        ValueError
            If `axis` is invalid, or differs from the current one and `shape` is unknown.
        """
        name = axis_name(axis)
        if name == self.axis:
            return
        if self.shape is None:
            raise ValueError(
                "shape: the volume's shape is needed to switch axis; build the state with "
                "ReviewState.for_volume(shape)"
            )
        self.other_axes[self.axis] = {
            "reviewed": sorted(self.reviewed),
            "edited": sorted(self.edited),
        }
        saved = self.other_axes.pop(name, {})
        self.axis = name
        self.n_slices = self.shape[AXES.index(name)]
        self.edited = {int(i) for i in saved.get("edited", [])}
        self.reviewed = {int(i) for i in saved.get("reviewed", [])} | self.edited

    def reviewed_slices(self) -> dict[str, list[int]]:
        """Reviewed slices per axis, ``{"z": [3, 10, ...]}``, for fine-tuning.

        Only axes with at least one reviewed slice appear; an empty dict means nothing
        was reviewed. This is the `slices` mapping of ``training.slices_from_volume``.
        """
        out: dict[str, list[int]] = {}
        for name in AXES:
            if name == self.axis:
                got = sorted(self.reviewed)
            else:
                got = sorted(int(i) for i in self.other_axes.get(name, {}).get("reviewed", []))
            if got:
                out[name] = got
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; :meth:`from_dict` reads it back."""
        return {
            "axis": self.axis,
            "n_slices": self.n_slices,
            "reviewed": sorted(self.reviewed),
            "edited": sorted(self.edited),
            "shape": list(self.shape) if self.shape is not None else None,
            "other_axes": {
                k: {
                    "reviewed": sorted(v.get("reviewed", [])),
                    "edited": sorted(v.get("edited", [])),
                }
                for k, v in self.other_axes.items()
            },
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReviewState:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            If a field is missing or out of range.
        """
        try:
            shape = d.get("shape")
            return cls(
                n_slices=int(d["n_slices"]),
                axis=str(d.get("axis", "z")),
                reviewed={int(i) for i in d.get("reviewed", [])},
                edited={int(i) for i in d.get("edited", [])},
                shape=tuple(int(n) for n in shape) if shape is not None else None,  # type: ignore[arg-type]
                other_axes={
                    axis_name(k): {
                        "reviewed": [int(i) for i in v.get("reviewed", [])],
                        "edited": [int(i) for i in v.get("edited", [])],
                    }
                    for k, v in dict(d.get("other_axes") or {}).items()
                },
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"review state: expected the fields of ReviewState; {exc}") from exc
