"""What a first run of ``microfossil fossils`` or the Fossils panel does without options.

One place for the defaults both front ends (and the blockwise path, through the
requests) use, and for the sentence that tells the user what they were and how to
change them. Measured on held-out phantoms in ``benchmarks/fossils_f1.py`` (see
``docs/fossils_defaults.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: The default size limit: a fossil must hold at least a ball this many voxels
#: across. The limit is in voxels, not µm, because what it removes -- specks and
#: slivers the network labels at bright grains and fossil rims -- has the size of
#: the scanner's blur and noise, a few voxels whatever the voxel size; an object
#: under 8 voxels across is also too small for a meaningful surface or shape.
DEFAULT_MIN_DIAMETER_VOXELS = 8
#: :data:`DEFAULT_MIN_DIAMETER_VOXELS` as a voxel count (the ball's volume): 269.
DEFAULT_MIN_VOXELS = math.ceil(math.pi / 6 * DEFAULT_MIN_DIAMETER_VOXELS**3)
#: Touching fossils are separated by default (a distance-transform watershed,
#: :func:`~napari_microfossil.fossils.split.split_body`): in a fossil-rich rock most
#: fossils touch another one.
DEFAULT_SPLIT = True
#: How narrow a neck must be, relative to the smaller body's inscribed radius, for the
#: front ends to split (:func:`~napari_microfossil.fossils.split.split_body`). 0.6
#: rather than the engine's 0.7: on held-out phantoms 0.7 cut one fossil into pieces
#: more often (docs/fossils_defaults.md).
DEFAULT_SPLIT_NECK_RATIO = 0.6


def size_limit_note(
    spacing: Sequence[float],
    *,
    keep_all: str = "--min-voxels 0",
    other: str = "--min-volume UM3",
) -> str:
    """One sentence on the default size limit, in voxels and µm, and how to change it.

    Parameters
    ----------
    spacing : 3 floats
        Voxel size ``(z, y, x)`` in µm.
    keep_all, other : str
        How the front end keeps every speck, and sets another limit.

    Returns
    -------
    str
        E.g. ``"size limit 269 voxels (a ball 8 voxels, about 30 µm, across): smaller
        specks dropped; --min-voxels 0 keeps them, --min-volume UM3 sets another limit"``.
    """
    across = DEFAULT_MIN_DIAMETER_VOXELS * sum(float(s) for s in spacing) / len(spacing)
    return (
        f"size limit {DEFAULT_MIN_VOXELS} voxels (a ball {DEFAULT_MIN_DIAMETER_VOXELS} "
        f"voxels, about {across:.3g} µm, across): smaller specks dropped; "
        f"{keep_all} keeps them, {other} sets another limit"
    )


#: The default confidence limit, percent: given the segmentation's confidence map
#: (``microfossil segment --confidence``, the Segment panel's confidence layer), an
#: object whose voxels the model was on average less sure of is dropped. On held-out
#: phantoms most such objects are bright grains and ooid-like look-alikes of the size
#: of the smallest fossils, which no size limit separates (docs/fossils_defaults.md).
DEFAULT_MIN_CONFIDENCE = 85.0


def confidence_note(
    dropped: int | None,
    *,
    limit: float = DEFAULT_MIN_CONFIDENCE,
    keep_all: str = "--min-confidence 0",
    give: str = "pass --confidence CONF (written by microfossil segment --confidence CONF)",
) -> str:
    """One sentence on the confidence limit: what it dropped and how to change it.

    Parameters
    ----------
    dropped : int or None
        Objects dropped for their confidence; None when no confidence was given.
    limit : float
        The limit used, percent.
    keep_all, give : str
        How the front end keeps every object, and how to give it the confidence.

    Returns
    -------
    str
        E.g. ``"confidence limit 80 %: 12 objects the model was less sure of dropped;
        --min-confidence 0 keeps them"``, or, without a confidence map, how to give one.
    """
    if dropped is None:
        return f"no confidence map: objects the model was unsure of are kept; to drop them, {give}"
    if limit <= 0:
        return "no confidence limit: every object kept"
    objects = "object" if dropped == 1 else "objects"
    return (
        f"confidence limit {limit:g} % (mean over each object): {dropped} {objects} the "
        f"model was less sure of dropped; {keep_all} keeps them"
    )


def object_check_note(dropped: int, *, split: int = 0, keep_all: str = "--no-object-check") -> str:
    """One sentence on the object check: what it dropped (and split) and how to keep them.

    E.g. ``"object check: 12 objects judged look-alikes of fossils (grain clusters,
    ooids) dropped, 2 objects judged to hold touching fossils split; --no-object-check
    keeps them"``.
    """
    objects = "object" if dropped == 1 else "objects"
    cut = ""
    if split:
        cut = f", {split} {'object' if split == 1 else 'objects'} judged to hold touching fossils split"
    return (
        f"object check: {dropped} {objects} judged look-alikes of fossils (grain clusters, "
        f"ooids) dropped{cut}; {keep_all} keeps them"
    )
