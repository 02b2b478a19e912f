"""Segment a volume slice by slice with a 2D network: tiling, blending, axis fusion.

Modules, lowest first:

* :mod:`.tiling` -- where tiles start, the blending window, the tiling options' check;
* :mod:`.predict` -- the tiling kernel: planes in, blended probabilities out, for any
  predictor callable ``f((B, 1, H, W) float32) -> (B, C, H, W)`` (numpy only);
* :mod:`.volume` -- a whole volume along one axis or several fused
  (:func:`iter_segment`), test-time flips;
* :mod:`.smoothing` -- the smoothing a model is most confident with.
"""

from .predict import predict_planes
from .smoothing import (
    SMOOTH_CANDIDATES,
    SmoothingSuggestion,
    iter_suggest_smoothing,
    suggest_smoothing,
)
from .tiling import MAX_OVERLAP, blend_window, check_tiling, tile_starts
from .volume import Segmentation, check_axes, flip_averaged, iter_segment, segment

__all__ = [
    "MAX_OVERLAP",
    "SMOOTH_CANDIDATES",
    "Segmentation",
    "SmoothingSuggestion",
    "blend_window",
    "check_axes",
    "check_tiling",
    "flip_averaged",
    "iter_segment",
    "iter_suggest_smoothing",
    "predict_planes",
    "segment",
    "suggest_smoothing",
    "tile_starts",
]
