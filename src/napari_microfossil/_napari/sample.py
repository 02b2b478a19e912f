"""napari sample data: a synthetic MicroCT scan with its ground truth."""

from __future__ import annotations

from typing import Any

from ..phantom import make_phantom
from .layers import CLASS_NAMES, SPATIAL_UNITS, label_colormap

SAMPLE_SHAPE = (96, 256, 256)
SAMPLE_SEED = 7


def make_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """The sample scan as an Image layer and its ground truth as a hidden Labels layer."""
    ph = make_phantom(SAMPLE_SHAPE, seed=SAMPLE_SEED)
    scale = tuple(ph.spacing)
    return [
        (
            ph.image,
            {
                "name": "microfossil sample",
                "scale": scale,
                "units": SPATIAL_UNITS,
                "colormap": "gray",
                "metadata": {CLASS_NAMES: list(ph.class_names), "seed": SAMPLE_SEED},
            },
            "image",
        ),
        (
            ph.labels,
            {
                "name": "ground truth",
                "scale": scale,
                "units": SPATIAL_UNITS,
                "visible": False,
                "colormap": label_colormap(ph.class_names),
                "metadata": {CLASS_NAMES: list(ph.class_names)},
            },
            "labels",
        ),
    ]
