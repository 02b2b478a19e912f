"""The object check inside the block-wise extraction's loop.

The in-memory extraction judges all its objects at once; the block-wise one cannot
hold them, so it judges each component's objects as its loop reaches the component,
with the same rule (:func:`~.objectcheck.iter_check_outcomes`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._progress import drain
from .crops import CachedCrops, is_lazy
from .objectcheck import ObjectCheck, iter_check_outcomes


class BlockJudge:
    """The object check in the loop: its inputs (read through block caches) and what
    it dropped and split."""

    def __init__(
        self,
        check: ObjectCheck,
        image: Any,
        labels: Any,
        confidence: Any,
        class_id: int,
        intensity: tuple[float, float],
        min_distance_um: float | None,
    ) -> None:
        self.check = check
        self.inputs = {
            "scan": image,
            "labels": CachedCrops(labels) if is_lazy(labels) else labels,
            "confidence": confidence,
            "class_id": class_id,
            "intensity": intensity,
        }
        self.min_distance_um = min_distance_um
        self.dropped = 0
        self.split = 0

    def outcomes(
        self,
        objects: list[tuple[tuple[slice, ...], np.ndarray]],
        spacing: tuple[float, float, float],
        min_count: int,
        split: bool,
    ) -> list[list[tuple[tuple[slice, ...], np.ndarray]]]:
        """:func:`~.objectcheck.iter_check_outcomes` of one component's objects."""
        return drain(
            iter_check_outcomes(
                self.check,
                objects,
                split=split,
                spacing=spacing,
                min_count=min_count,
                min_distance_um=self.min_distance_um,
                **self.inputs,
            )
        )
