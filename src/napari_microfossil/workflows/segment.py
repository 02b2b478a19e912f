"""Segment a scan: the options and requests, checked once, and the use cases.

Two front ends ask for the same thing: ``microfossil segment`` (a scan file in, label
and confidence files out) and the Segment panel (an image layer in, layers out). Both
build :class:`SegmentOptions`, whose construction checks every option before any file
is read or any model loaded, so a mistake is refused with the same one-line message
by both. :class:`SegmentRequest` adds the files of the command line (all checked up
front too); :class:`SegmentImageRequest` an in-memory volume.

The use cases (:func:`iter_segment_scan`, :func:`iter_segment_image`,
:func:`iter_suggest_image`) are generators that yield
:class:`~napari_microfossil._progress.Progress` and return their result; closing one
stops it before its next predictor call, and nothing is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import Progress, ProgressGen
from ..errors import InputError
from ..model import LoadedModel, ModelSpec
from ..normalise import check_smooth
from ..segmentation import (
    DEFAULT_HALO,
    Segmentation,
    SmoothingSuggestion,
    check_axes,
    check_tiling,
    iter_segment,
    iter_suggest_smoothing,
)

#: The ``smooth`` value that asks for :func:`~napari_microfossil.segmentation.iter_suggest_smoothing`.
AUTO = "auto"


@dataclass(frozen=True)
class SegmentOptions:
    """How to segment, whatever the front end; checked when built.

    Parameters
    ----------
    axes : str
        ``"z"``, ``"y"``, ``"x"`` or a combination such as ``"zyx"`` (fused);
        normalised to lower case.
    tile : int, optional
        Tile edge in pixels, a multiple of 32; None: the model's.
    overlap : float
        Fraction of a tile shared with its neighbour, in ``[0, 0.9)``.
    batch_size : int
        Tiles per network call (>= 1).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``; must exist on this machine.
    flips : bool
        Average each tile over its four flips (4x slower).
    smooth : float, None or "auto"
        Gaussian sigma in voxels applied to the scan first (0 to 3); None: the
        model's own; ``"auto"`` (any case): the sigma the model is most confident with.

    Raises
    ------
    InputError
        Naming the first bad option: axes, tile, overlap, batch_size, smooth, device.
    """

    axes: str = "z"
    tile: int | None = None
    overlap: float = 0.25
    batch_size: int = 4
    device: str = "auto"
    flips: bool = False
    smooth: float | str | None = None

    def __post_init__(self) -> None:
        from ..device import resolve_device

        object.__setattr__(self, "axes", check_axes(self.axes))
        check_tiling(self.tile, self.overlap, self.batch_size)
        smooth = self.smooth
        if isinstance(smooth, str) and smooth.strip().lower() == AUTO:
            smooth = AUTO
        elif smooth is not None:
            smooth = check_smooth(smooth, "smooth")
        object.__setattr__(self, "smooth", smooth)
        if not isinstance(self.flips, (bool, np.bool_)):
            raise InputError(f"flips: expected True or False, got {self.flips!r}")
        resolve_device(self.device)

    @property
    def auto_smooth(self) -> bool:
        """Whether the smoothing is to be suggested from the scan."""
        return self.smooth == AUTO

    def engine_options(self, sigma: float | None) -> dict[str, Any]:
        """Keyword arguments of :func:`~napari_microfossil.segmentation.iter_segment`,
        with `sigma` in place of ``"auto"``."""
        return {
            "axes": self.axes,
            "tile": None if self.tile is None else int(self.tile),
            "overlap": float(self.overlap),
            "batch_size": int(self.batch_size),
            "device": self.device,
            "flips": bool(self.flips),
            "smooth": sigma,
        }

    def record(self) -> dict[str, Any]:
        """The options as JSON values, for a resumable output's job record."""
        return {
            "axes": self.axes,
            "tile": None if self.tile is None else int(self.tile),
            "overlap": float(self.overlap),
            "batch_size": int(self.batch_size),
            "device": self.device,
            "flips": bool(self.flips),
            "smooth": self.smooth,
            "halo": DEFAULT_HALO,
        }


def _model_spec(model: str | Path) -> ModelSpec:
    """The model file's spec (its header only: no weights, no torch)."""
    from ..model import read_spec

    spec = read_spec(model)
    if spec.num_classes > 256:
        raise InputError(f"model: at most 256 classes fit uint8 labels, got {spec.num_classes}")
    return spec


def _model_file(model: str | Path) -> Path | None:
    """The model's file, when `model` names one (not ``"default"``)."""
    return None if str(model) == "default" else Path(model)


def check_finite(volume: Any, name: str) -> None:
    """Refuse a floating-point volume without a single finite value (all NaN/inf).

    Reads plane by plane and stops at the first plane holding a finite value, so a
    normal scan costs one plane.

    Raises
    ------
    InputError
        Naming `name`: such a scan would segment to 100 % background.
    """
    if np.dtype(getattr(volume, "dtype", np.float32)).kind not in "fc":
        return
    for z in range(int(volume.shape[0])):
        if np.isfinite(np.asarray(volume[z])).any():
            return
    raise InputError(
        f"{name}: expected a scan with finite values, got only NaN/inf in every voxel; "
        "nothing to segment"
    )


def _check_volume(volume: Any, name: str) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in getattr(volume, "shape", ()))
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"{name}: expected a non-empty (Z, Y, X) volume, got shape {shape}")
    return (shape[0], shape[1], shape[2])


def parse_voxel_size(text: str) -> tuple[float, float, float]:
    """A voxel size as typed: one value in µm (isotropic) or three, ``z, y, x`` (commas
    or spaces between).

    Raises
    ------
    InputError
        Naming ``spacing``, unless one or three finite numbers > 0 were typed.
    """
    from ..io import parse_spacing

    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        return parse_spacing(text)  # not numbers: refused, naming the text
    return parse_spacing(values[0] if len(values) == 1 else values)


def voxel_size_text(zyx: Any) -> str:
    """A voxel size ``(z, y, x)`` as :func:`parse_voxel_size` reads it: one value when
    the three are equal."""
    values = [float(v) for v in zyx]
    same = all(math.isclose(v, values[0], rel_tol=1e-9) for v in values)
    return ", ".join(f"{v:g}" for v in (values[:1] if same else values))


def _segment_loaded(
    volume: Any, model: LoadedModel, options: SegmentOptions, *, confidence: bool
) -> ProgressGen[tuple[Segmentation, SmoothingSuggestion | None]]:
    """Suggest a smoothing if asked for, then segment: the rule both use cases share."""
    found = None
    sigma = options.smooth
    if options.auto_smooth:
        found = yield from iter_suggest_smoothing(volume, model, device=options.device)
        sigma = found.sigma
    assert not isinstance(sigma, str)  # "auto" was replaced just above
    seg = yield from iter_segment(
        volume, model, confidence=confidence, **options.engine_options(sigma)
    )
    return seg, found


@dataclass(frozen=True)
class SegmentImageRequest:
    """Segment a volume held in memory (a napari image layer's data).

    Parameters
    ----------
    volume : array-like, shape (Z, Y, X)
        Read plane by plane when the use case runs, not when the request is built.
    model : str or path
        ``"default"`` or a ``.safetensors`` model file.
    options : SegmentOptions
    confidence : bool
        Also return the per-voxel confidence.

    Attributes
    ----------
    spec : ModelSpec
        The model's classes and normalisation (read from the file's header).

    Raises
    ------
    InputError
        For a volume that is not 3D or a model file that cannot be read.
    """

    volume: Any = field(repr=False, compare=False)
    model: str = "default"
    options: SegmentOptions = field(default_factory=SegmentOptions)
    confidence: bool = False
    spec: ModelSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.options, SegmentOptions):
            raise InputError(f"options: expected SegmentOptions, got {type(self.options).__name__}")
        _check_volume(self.volume, "image")
        object.__setattr__(self, "spec", _model_spec(self.model))


def _load(model: str, device: str) -> ProgressGen[LoadedModel]:
    from ..model import load_model

    yield Progress("load model", 0, 1)
    loaded = load_model(model, device=device)
    yield Progress("load model", 1, 1)
    return loaded


def iter_segment_image(request: SegmentImageRequest) -> ProgressGen[Segmentation]:
    """Load the model and segment the volume (suggesting a smoothing if asked).

    Yields
    ------
    Progress
        ``"load model"``, then as :func:`iter_segment_scan`.
    """
    check_finite(request.volume, "image")
    model = yield from _load(request.model, request.options.device)
    seg, _ = yield from _segment_loaded(
        request.volume, model, request.options, confidence=request.confidence
    )
    return seg


def iter_suggest_image(request: SegmentImageRequest) -> ProgressGen[SmoothingSuggestion]:
    """Load the model and suggest a smoothing for the volume (its options' device).

    Yields
    ------
    Progress
        ``"load model"``, then ``"suggest smoothing"``.
    """
    model = yield from _load(request.model, request.options.device)
    return (yield from iter_suggest_smoothing(request.volume, model, device=request.options.device))


# The scan use case lives in its own module; it is part of this module's interface.
from .segment_scan import SegmentRequest, SegmentResult, iter_segment_scan  # noqa: E402

__all__ = [
    "AUTO",
    "SegmentImageRequest",
    "SegmentOptions",
    "SegmentRequest",
    "SegmentResult",
    "check_finite",
    "iter_segment_image",
    "iter_segment_scan",
    "iter_suggest_image",
    "parse_voxel_size",
    "voxel_size_text",
]
