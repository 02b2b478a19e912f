"""Segment a volume slice by slice with a 2D network: tiling, blending, axis fusion.

Modules, lowest first:

* :mod:`.tiling` -- where tiles start, the blending window, the tiling options' check;
* :mod:`.predict` -- the tiling kernel: planes in, blended probabilities out, for any
  predictor callable ``f((B, 1, H, W) float32) -> (B, C, H, W)`` (numpy only);
* :mod:`.options` -- the options of a segmentation, checked once; test-time flips;
* :mod:`.stream` -- the engine: a volume slab by slab, along one axis or several
  fused (:func:`iter_slabs`), for volumes of any size;
* :mod:`.volume` -- the engine run as one slab, result in memory (:func:`iter_segment`);
* :mod:`.smoothing` -- the smoothing a model is most confident with.
"""

from .options import DEFAULT_HALO, SegmentSettings, check_axes, check_settings, flip_averaged
from .predict import predict_planes
from .smoothing import (
    SMOOTH_CANDIDATES,
    SmoothingSuggestion,
    iter_suggest_smoothing,
    suggest_smoothing,
)
from .stream import Slab, estimate_intensity_range, iter_slabs, read_planes
from .tiling import MAX_OVERLAP, blend_window, check_tiling, tile_starts
from .volume import Segmentation, iter_segment, segment

__all__ = [
    "DEFAULT_HALO",
    "MAX_OVERLAP",
    "SMOOTH_CANDIDATES",
    "SegmentSettings",
    "Segmentation",
    "Slab",
    "SmoothingSuggestion",
    "blend_window",
    "check_axes",
    "check_settings",
    "check_tiling",
    "estimate_intensity_range",
    "flip_averaged",
    "iter_segment",
    "iter_slabs",
    "iter_suggest_smoothing",
    "predict_planes",
    "read_planes",
    "segment",
    "suggest_smoothing",
    "tile_starts",
]
