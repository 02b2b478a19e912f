"""Suggest a smoothing for a scan: the sigma the model is most confident with."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import normalise
from .._progress import Progress, drain
from ..errors import InputError
from ..model import LoadedModel
from .predict import predict_planes

#: Sigmas (voxels) that :func:`iter_suggest_smoothing` tries.
SMOOTH_CANDIDATES = (0.0, 0.5, 0.7, 1.0, 1.5)


@dataclass(frozen=True)
class SmoothingSuggestion:
    """What :func:`iter_suggest_smoothing` found.

    Attributes
    ----------
    sigma : float
        The suggested smoothing (0 = none).
    confidence : dict
        Sigma -> the model's mean confidence (0..1) on the sampled planes.
    planes : tuple of int
        The z-planes sampled.
    """

    sigma: float
    confidence: dict[float, float]
    planes: tuple[int, ...]

    def describe(self) -> str:
        """One line for a user: the choice, and the confidence each sigma got."""

        def name(sigma: float) -> str:
            return "none" if sigma == 0 else f"{sigma:g}"

        tried = ", ".join(f"{name(s)} {100 * c:.1f} %" for s, c in self.confidence.items())
        return (
            f"Smoothing {self.sigma:g} chosen; the model's mean confidence on z-slices "
            f"{', '.join(map(str, self.planes))} with each smoothing: {tried}"
        )


def iter_suggest_smoothing(
    volume: Any,
    model: LoadedModel,
    *,
    sigmas: Sequence[float] = SMOOTH_CANDIDATES,
    n_planes: int = 6,
    tolerance: float = 0.002,
    device: Any = None,
) -> Generator[Progress, None, SmoothingSuggestion]:
    """Suggest a smoothing for a scan: the one the model is most confident with.

    Segments ``n_planes`` z-planes spread over the scan after each candidate smoothing
    and averages the model's confidence (the probability of the class it chose). A
    noisy scan makes a model unsure, and smoothing helps until it blurs away what the
    model needs, so the confidence peaks near the best sigma. Of the sigmas within
    ``tolerance`` of the best confidence the smallest wins (usually no smoothing on a
    clean scan). On the synthetic scans of docs/fine_tuning.md it picked 1.0 on three of
    the four noisy ones (one step above the best, 0.7, on two) and none on the fourth and
    on all clean ones; the measured IoUs are in the table there.

    Each plane is smoothed as :func:`~napari_microfossil.normalise.iter_smooth` would
    smooth the whole scan, from a slab of :func:`~napari_microfossil.normalise.smoothing_margin`
    planes on each side, so the sample costs a few planes per sigma, not a smoothed
    copy of the scan.

    Yields
    ------
    Progress
        ``stage="suggest smoothing"``, one per (sigma, plane).
    """
    from ..model import make_predictor

    shape = tuple(int(n) for n in volume.shape)
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"volume: expected a (Z, Y, X) volume, got shape {shape}")
    if not isinstance(model, LoadedModel):
        raise InputError(f"model: expected a LoadedModel, got {type(model).__name__}")
    cands = sorted({normalise.check_smooth(s, "sigmas") for s in sigmas})
    if not cands:
        raise InputError("sigmas: expected at least one sigma")
    if isinstance(n_planes, bool) or not isinstance(n_planes, (int, np.integer)) or n_planes < 1:
        raise InputError(f"n_planes: expected an integer >= 1, got {n_planes!r}")
    nz = shape[0]
    spread = np.linspace(0, nz - 1, int(n_planes) + 2)[1:-1].round().astype(int)
    planes = tuple(sorted(set(spread.tolist()))) or (nz // 2,)
    spec = model.spec
    predictor = make_predictor(model.network, device)
    total = len(cands) * len(planes)
    done = 0
    confidence: dict[float, float] = {}
    for sigma in cands:
        margin = normalise.smoothing_margin(sigma)
        cut = []
        for z in planes:
            z0, z1 = max(0, z - margin), min(nz, z + margin + 1)
            cut.append(drain(normalise.iter_smooth(volume[z0:z1], sigma))[z - z0])
        sample = np.stack(cut)
        lo, hi = normalise.intensity_range(sample, spec.normalisation)
        means = []
        inputs = (normalise.apply_normalisation(p, lo, hi, spec.normalisation) for p in cut)
        for probs in predict_planes(
            inputs, predictor, num_classes=spec.num_classes, tile=spec.tile_size
        ):
            means.append(float(probs.max(axis=0).mean()))
            done += 1
            yield Progress("suggest smoothing", done, total, {"sigma": sigma})
        confidence[sigma] = float(np.mean(means))
    best = max(confidence.values())
    sigma = min(s for s, c in confidence.items() if c >= best - tolerance)
    return SmoothingSuggestion(sigma=sigma, confidence=confidence, planes=planes)


def suggest_smoothing(volume: Any, model: LoadedModel, **kwargs: Any) -> SmoothingSuggestion:
    """:func:`iter_suggest_smoothing` run to the end (same parameters)."""
    return drain(iter_suggest_smoothing(volume, model, **kwargs))
