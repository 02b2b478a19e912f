"""Which slices to correct next: what ``microfossil suggest`` runs.

The rule is the Review panel's ("Next slice to review"): the unreviewed slice where the
model was least confident, then, for a batch, the least confident ones far enough from
every reviewed and picked slice (:func:`~napari_microfossil.review.suggest_slices`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import ProgressGen
from ..axes import AXES, axis_index
from ..errors import InputError


def _slice_spec(text: str | None) -> dict[str, list[int]]:
    if text is None or not str(text).strip():
        return {}
    from ..training.slices import parse_slices

    return parse_slices(str(text), "--reviewed")


@dataclass(frozen=True)
class SuggestRequest:
    """Slices to suggest from a confidence volume; checked when built.

    Parameters
    ----------
    confidence : Path
        Per-voxel confidence, as ``segment --confidence`` writes it (TIFF or zarr).
    reviewed : str or dict, optional
        Slices already reviewed, ``"z:20,48,76"`` (as ``--slices`` elsewhere) or
        ``{"z": [20, 48, 76]}``. Only those along `axis` count.
    n : int
        How many slices to suggest.
    axis : {"z", "y", "x"}, optional
        Default: the one axis of `reviewed`, else ``"z"``.

    Raises
    ------
    InputError
        For a malformed `reviewed`, `n` < 1, an unknown `axis` or a `reviewed` listing
        several axes without `axis`. The file itself is checked when it is read.
    """

    confidence: Path
    reviewed: Any = None
    n: int = 3
    axis: str | None = None
    slices: dict[str, list[int]] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "confidence", Path(self.confidence))
        slices = (
            {k: [int(i) for i in v] for k, v in self.reviewed.items()}
            if isinstance(self.reviewed, dict)
            else _slice_spec(self.reviewed)
        )
        object.__setattr__(self, "slices", slices)
        if isinstance(self.n, bool) or not isinstance(self.n, (int, np.integer)) or self.n < 1:
            raise InputError(f"-n: expected an integer >= 1, got {self.n!r}")
        axis = self.axis
        if axis is None:
            if len(slices) > 1:
                raise InputError(
                    f"--axis: --reviewed lists slices along {', '.join(sorted(slices))}; "
                    f"say along which axis to suggest"
                )
            axis = next(iter(slices), "z")
        if axis not in AXES:
            raise InputError(f"--axis: expected one of z, y, x, got {axis!r}")
        object.__setattr__(self, "axis", axis)


@dataclass(frozen=True)
class SuggestResult:
    """The suggested slices along `axis`, least confident first, and their mean
    confidence (in the file's units, percent for ``segment --confidence``)."""

    axis: str
    slices: tuple[int, ...]
    scores: tuple[float, ...]
    n_slices: int
    reviewed: tuple[int, ...]

    @property
    def spec(self) -> str:
        """``"z:34,62,88"``: what ``--reviewed`` and ``--slices`` take."""
        return f"{self.axis}:{','.join(map(str, self.slices))}"


def iter_suggest(request: SuggestRequest) -> ProgressGen[SuggestResult]:
    """Read the confidence one slice at a time, then pick (see the module doc).

    Yields
    ------
    Progress
        ``"read confidence"``, in slices along the axis.
    """
    from ..io import read_volume
    from ..review.suggest import iter_slice_confidence, suggest_slices

    vol = read_volume(request.confidence)
    path = request.confidence
    if vol.class_names:
        raise InputError(
            f"{path}: is a label volume (classes {', '.join(vol.class_names)}); give the "
            f"confidence file that `segment --confidence` writes"
        )
    axis = str(request.axis)
    ax = axis_index(axis)
    total = int(vol.data.shape[ax])
    done = sorted(set(request.slices.get(axis, [])))
    bad = [i for i in done if not 0 <= i < total]
    if bad:
        raise InputError(
            f"--reviewed: slice {bad[0]} is outside the confidence's {total} {axis}-slices "
            f"(0..{total - 1})"
        )
    per = yield from iter_slice_confidence(vol.data, axis)
    picks = suggest_slices(per, done, int(request.n))
    return SuggestResult(
        axis=axis,
        slices=tuple(picks),
        scores=tuple(float(per[i]) for i in picks),
        n_slices=total,
        reviewed=tuple(done),
    )
