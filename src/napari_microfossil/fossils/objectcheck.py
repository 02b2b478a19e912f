"""The object check: a small 3D network that tells a fossil from a look-alike.

On held-out phantoms most of what ``fossils`` reports wrongly are clusters of bright
grains and ooids that the slice network labels fossil: one slice shows them as a
closed chamber, and neither their size, shape, intensity nor the model's mean
confidence separates them from the smallest true fossils (docs/fossils_defaults.md).
In 3D they look different. The object check looks at a cube of
:data:`CROP` voxels around each object, in three channels -- the scan (normalised as
the segmentation normalises it), the object's own mask, and the segmentation's
evidence for the fossil class (its confidence where it labelled fossil, 100 minus it
elsewhere) -- plus the object's size and mean evidence, and gives the probability that
the object is one true fossil. Objects below the check's threshold are dropped.

The bundled check (``models/object_check.safetensors``) is trained by
``scripts/train_object_check.py`` on the objects ``fossils`` extracts from the default
model's segmentations of phantoms: it knows phantom grains, and voxels of the
phantoms' size. On a real scan, look at what it dropped (the summary says how many)
before trusting it; ``--no-object-check`` turns it off.

The file is one ``.safetensors``: the weights (float16) and, in its header, a JSON
record (:data:`METADATA_KEY`) with the crop, the threshold and the provenance.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import Progress
from ..errors import InputError

#: Side of the cube (voxels) the check sees around each object's centre.
CROP = 32
#: Header key of the check's JSON record in its safetensors file.
METADATA_KEY = "napari_microfossil_object_check"
#: Name of the bundled check under ``napari_microfossil/models``.
DEFAULT_OBJECT_CHECK_NAME = "object_check"
#: Objects per forward pass. On the CPU small batches stay in cache: 7 ms an object
#: at 4-8, 14 at 16, 17.5 at 64 (2 cores, flips included).
FORWARD_BATCH = 8


@dataclass(frozen=True)
class ObjectCheck:
    """A loaded object check.

    Attributes
    ----------
    network : torch.nn.Module
        The network, in eval mode, on the CPU.
    threshold : float
        Objects with a fossil probability below this are look-alikes.
    provenance : dict
        How it was trained (seeds, epochs, the validation score).
    path : str
        Where it was loaded from.
    split_neck_ratio : float or None
        When splitting: an object the check keeps is split again at this (finer) neck
        ratio, and the pieces replace it when the check judges every piece a fossil
        with at least `split_threshold` (:func:`iter_split_judged`). None: no such
        second split (chosen on validation phantoms, with the threshold).
    split_threshold : float
        See `split_neck_ratio`.
    """

    network: Any
    threshold: float
    provenance: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    split_neck_ratio: float | None = None
    split_threshold: float = 1.0


def default_object_check_path() -> Path:
    """The bundled object check."""
    root = resources.files("napari_microfossil") / "models"
    return Path(str(root / f"{DEFAULT_OBJECT_CHECK_NAME}.safetensors"))


def build_network() -> Any:
    """The check's network: four 3D conv stages on the crop, then the two scalars join."""
    import torch
    from torch import nn

    def stage(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU()]

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                *stage(3, 8),
                nn.MaxPool3d(2),
                *stage(8, 16),
                *stage(16, 16),
                nn.MaxPool3d(2),
                *stage(16, 32),
                *stage(32, 32),
                nn.MaxPool3d(2),
                *stage(32, 64),
                nn.AdaptiveAvgPool3d(1),
            )
            self.head = nn.Sequential(
                nn.Linear(66, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 1)
            )

        def forward(self, crops: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
            f = self.features(crops).flatten(1)
            return self.head(torch.cat([f, scalars], 1)).squeeze(1)

    return Net()


def save_object_check(
    path: str | Path,
    network: Any,
    threshold: float,
    provenance: dict[str, Any],
    split: tuple[float, float] | None = None,
) -> None:
    """Write a check's weights (float16) and record to `path` (``.safetensors``);
    `split`: its ``(split_neck_ratio, split_threshold)``, or None."""
    from safetensors.torch import save_file

    from ..atomic import atomic_path

    state = {
        k: v.detach().cpu().to(dtype=_half(v)).contiguous() for k, v in network.state_dict().items()
    }
    record: dict[str, Any] = {"crop": CROP, "threshold": float(threshold), "provenance": provenance}
    if split is not None:
        record["split"] = {"neck_ratio": float(split[0]), "threshold": float(split[1])}
    with atomic_path(Path(path)) as tmp:
        save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(record)})


def _half(t: Any) -> Any:
    import torch

    return torch.float16 if t.is_floating_point() else t.dtype


def load_object_check(path: str | Path | None = None) -> ObjectCheck:
    """Load an object check (the bundled one when `path` is None).

    Raises
    ------
    InputError
        If `path` is missing or is not an object check file.
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    p = default_object_check_path() if path is None else Path(path)
    if not p.is_file():
        raise InputError(f"object check: expected a .safetensors file, got {p} (not found)")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(p))
    except Exception as exc:  # safetensors raises its own errors for a bad header
        raise InputError(f"object check: {p} is not a readable .safetensors file ({exc})") from None
    if METADATA_KEY not in meta:
        raise InputError(f"object check: {p} is a safetensors file but not an object check")
    record = json.loads(meta[METADATA_KEY])
    if int(record.get("crop", -1)) != CROP:
        raise InputError(
            f"object check: {p} sees {record.get('crop')}-voxel cubes, expected {CROP}"
        )
    net = build_network()
    net.load_state_dict(
        {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()}
    )
    net.eval()
    split = record.get("split") or {}
    return ObjectCheck(
        net,
        float(record["threshold"]),
        dict(record.get("provenance", {})),
        str(p),
        split_neck_ratio=float(split["neck_ratio"]) if split else None,
        split_threshold=float(split.get("threshold", 1.0)),
    )


@functools.lru_cache(maxsize=1)
def bundled_object_check() -> ObjectCheck:
    """The bundled object check, loaded once per process."""
    return load_object_check(None)


def fossil_evidence(labels: np.ndarray, confidence: Any, class_id: int) -> np.ndarray:
    """Evidence for `class_id`, -1..1: the confidence where labelled so, 100 minus it elsewhere."""
    conf = np.asarray(confidence, dtype=np.float32)
    ev = np.where(np.asarray(labels) == class_id, conf, np.float32(100.0) - conf)
    return (ev / np.float32(50.0) - np.float32(1.0)).astype(np.float32)


def object_inputs(
    scan: Any,
    labels: Any,
    confidence: Any,
    objects: Sequence[tuple[tuple[slice, ...], np.ndarray]],
    *,
    class_id: int,
    intensity: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """The check's inputs for each object; only a cube around each object is read.

    Parameters
    ----------
    scan, labels, confidence : (Z, Y, X) array-like
        The scan, the class labels and the segmentation's confidence (percent).
    objects : sequence of (box, mask)
        Each object's bounding box in the volume and its mask within the box.
    class_id : int
        The fossil class.
    intensity : (lo, hi)
        The scan's intensity range (:func:`~napari_microfossil.normalise.intensity_range`),
        mapped to -1..1 as the segmentation maps it.

    Returns
    -------
    crops : (N, 3, CROP, CROP, CROP) float16
        Scan, mask and evidence (:func:`fossil_evidence`) in a cube centred on the
        object's centre of mass (outside the volume: -1, 0, -1).
    scalars : (N, 2) float32
        ``log(voxels)`` and the mean evidence over the object.
    """
    from ..normalise import apply_normalisation
    from .split import box_in

    half = CROP // 2
    shape = tuple(int(n) for n in scan.shape)
    crops = np.zeros((len(objects), 3, CROP, CROP, CROP), dtype=np.float16)
    scalars = np.zeros((len(objects), 2), dtype=np.float32)
    for k, (box, mask) in enumerate(objects):
        zyx = np.nonzero(mask)
        centre = [round(float(c.mean())) + b.start for c, b in zip(zyx, box, strict=True)]
        lo = [c - half for c in centre]
        src = tuple(slice(max(a, 0), min(a + CROP, n)) for a, n in zip(lo, shape, strict=True))
        dst = tuple(slice(s.start - a, s.stop - a) for s, a in zip(src, lo, strict=True))
        crops[k, 0] = -1.0
        crops[k, 2] = -1.0
        crops[k, 0][dst] = apply_normalisation(np.asarray(scan[src]), *intensity)
        # The evidence of the cube and of the object's box, from one read of both.
        both = tuple(
            slice(min(s.start, b.start), max(s.stop, b.stop)) for s, b in zip(src, box, strict=True)
        )
        ev = fossil_evidence(np.asarray(labels[both]), np.asarray(confidence[both]), class_id)
        crops[k, 2][dst] = ev[box_in(src, both)]
        crops[k, 1][dst] = _mask_in(mask, box, src)
        scalars[k, 0] = math.log(max(int(mask.sum()), 1))
        scalars[k, 1] = float(ev[box_in(box, both)][mask].mean(dtype=np.float64))
    return crops, scalars


def _mask_in(mask: np.ndarray, box: tuple[slice, ...], window: tuple[slice, ...]) -> np.ndarray:
    """The object's mask (given in `box`) within `window` (both in volume coordinates)."""
    out = np.zeros(tuple(w.stop - w.start for w in window), dtype=bool)
    both = tuple(
        slice(max(w.start, b.start), min(w.stop, b.stop)) for w, b in zip(window, box, strict=True)
    )
    if all(s.stop > s.start for s in both):
        from_mask = tuple(
            slice(s.start - b.start, s.stop - b.start) for s, b in zip(both, box, strict=True)
        )
        to_out = tuple(
            slice(s.start - w.start, s.stop - w.start) for s, w in zip(both, window, strict=True)
        )
        out[to_out] = mask[from_mask]
    return out


def fossil_probability(check: ObjectCheck, crops: np.ndarray, scalars: np.ndarray) -> np.ndarray:
    """The check's probability (0..1) that each object is a fossil.

    Averaged over the crop as it is and flipped along each axis and all three
    (the check was trained with flips and axis swaps).
    """
    import torch

    out = np.zeros(len(crops), dtype=np.float32)
    flips: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (4,), (2, 3, 4))
    with torch.no_grad():
        for start in range(0, len(crops), FORWARD_BATCH):
            x = torch.from_numpy(crops[start : start + FORWARD_BATCH].astype(np.float32))
            s = torch.from_numpy(scalars[start : start + FORWARD_BATCH])
            p = [torch.sigmoid(check.network(torch.flip(x, f) if f else x, s)) for f in flips]
            out[start : start + len(x)] = torch.stack(p).mean(0).numpy()
    return out


def iter_judge_objects(
    check: ObjectCheck,
    objects: Sequence[tuple[tuple[slice, ...], np.ndarray]],
    *,
    scan: Any,
    labels: Any,
    confidence: Any,
    class_id: int,
    intensity: tuple[float, float] | None = None,
) -> Generator[Progress, None, np.ndarray]:
    """The check's fossil probability for each object, in batches, as a generator.

    `intensity`: the scan's :func:`~napari_microfossil.normalise.intensity_range`, if
    known (a caller judging a few objects at a time computes it once).

    Yields
    ------
    Progress
        ``stage="check objects"``, one per batch of 64 objects.

    Returns
    -------
    (N,) float32
        Probabilities, 0..1; compare with ``check.threshold``.
    """
    from ..normalise import intensity_range

    rng = intensity_range(scan) if intensity is None else intensity
    out = np.zeros(len(objects), dtype=np.float32)
    yield Progress("check objects", 0, len(objects))
    for start in range(0, len(objects), 64):
        batch = objects[start : start + 64]
        crops, scalars = object_inputs(
            scan, labels, confidence, batch, class_id=class_id, intensity=rng
        )
        out[start : start + len(batch)] = fossil_probability(check, crops, scalars)
        yield Progress("check objects", start + len(batch), len(objects))
    return out


def iter_check_outcomes(
    check: ObjectCheck,
    objects: Sequence[tuple[tuple[slice, ...], np.ndarray]],
    *,
    split: bool,
    spacing: tuple[float, float, float],
    min_count: int,
    min_distance_um: float | None,
    scan: Any,
    labels: Any,
    confidence: Any,
    class_id: int,
    intensity: tuple[float, float] | None = None,
) -> Generator[Progress, None, list[list[tuple[tuple[slice, ...], np.ndarray]]]]:
    """What the check makes of each object: nothing (a look-alike), the object itself,
    or, when `split`, the pieces of its second split (:func:`iter_split_judged`).

    One rule for the in-memory extraction (all objects at once) and the block-wise
    one (a batch at a time, `intensity` computed once by the caller). The scan's
    intensity range is read once for both judgements.

    Returns
    -------
    list of lists of (box, mask)
        Per object, in order: ``[]``, ``[object]`` or its two or more pieces.
    """
    from ..normalise import intensity_range

    inputs = {
        "scan": scan,
        "labels": labels,
        "confidence": confidence,
        "class_id": class_id,
        "intensity": intensity_range(scan) if intensity is None else intensity,
    }
    p = yield from iter_judge_objects(check, objects, **inputs)
    kept = [k for k in range(len(objects)) if p[k] >= check.threshold]
    outcomes: list[list[tuple[tuple[slice, ...], np.ndarray]]] = [[] for _ in objects]
    for k in kept:
        outcomes[k] = [objects[k]]
    if split:
        replace = yield from iter_split_judged(
            check,
            [objects[k] for k in kept],
            spacing=spacing,
            min_count=min_count,
            min_distance_um=min_distance_um,
            **inputs,
        )
        for j, pieces in replace.items():
            outcomes[kept[j]] = pieces
    return outcomes


def iter_split_judged(
    check: ObjectCheck,
    objects: Sequence[tuple[tuple[slice, ...], np.ndarray]],
    *,
    spacing: tuple[float, float, float],
    min_count: int,
    min_distance_um: float | None,
    scan: Any,
    labels: Any,
    confidence: Any,
    class_id: int,
    intensity: tuple[float, float] | None = None,
) -> Generator[Progress, None, dict[int, list[tuple[tuple[slice, ...], np.ndarray]]]]:
    """Split again, more finely, the objects the check kept, where it judges every piece
    a fossil too.

    A fossil that lies against a bigger one often joins it by a neck too wide for the
    default split (which keeps a foraminifer's chambers together). Each kept object is
    split at ``check.split_neck_ratio``; when that gives two or more pieces of at least
    `min_count` voxels and the check gives every one of them a probability of at least
    ``check.split_threshold``, the pieces replace the object (smaller pieces are
    dropped, as specks). A foraminifer cut into chambers fails that test: a chamber
    alone does not look like a whole fossil to the check.

    Yields
    ------
    Progress
        ``stage="split objects"`` per object, then the check's ``"check objects"``.

    Returns
    -------
    dict
        For each object split (its index in `objects`): its pieces, each (box, mask).
    """
    from .split import split_body, sub_box, tight_box

    if check.split_neck_ratio is None or not objects:
        return {}
    candidates: list[tuple[int, list[tuple[tuple[slice, ...], np.ndarray]]]] = []
    for k, (box, mask) in enumerate(objects):
        yield Progress("split objects", k, len(objects))
        parts = split_body(mask, spacing, min_distance_um, check.split_neck_ratio)
        pieces = []
        for part in parts:
            if int(part.sum()) < max(min_count, 1):
                continue
            sub = tight_box(part)
            pieces.append((sub_box(box, sub), part[sub]))
        if len(pieces) >= 2:
            candidates.append((k, pieces))
    yield Progress("split objects", len(objects), len(objects))
    flat = [piece for _, pieces in candidates for piece in pieces]
    if not flat:
        return {}
    p = yield from iter_judge_objects(
        check,
        flat,
        scan=scan,
        labels=labels,
        confidence=confidence,
        class_id=class_id,
        intensity=intensity,
    )
    replace: dict[int, list[tuple[tuple[slice, ...], np.ndarray]]] = {}
    start = 0
    for k, pieces in candidates:
        if bool(np.all(p[start : start + len(pieces)] >= check.split_threshold)):
            replace[k] = pieces
        start += len(pieces)
    return replace
