"""Validation: per-class scores of a network on whole held-out planes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..metrics import confusion_matrix, scores_from_confusion
from .slices import SliceSet

if TYPE_CHECKING:
    import torch


def evaluate(
    network: torch.nn.Module,
    data: SliceSet,
    class_names: Sequence[str],
    *,
    device: torch.device,
    tile: int = 256,
    batch_size: int = 4,
) -> dict[str, float]:
    """Per-class IoU/Dice and pixel error of ``network`` on whole validation planes."""
    from ..model import make_predictor
    from ..segmentation import predict_planes

    n = len(class_names)
    predictor = make_predictor(network, device)
    cm = np.zeros((n, n), np.int64)
    was_training = network.training
    network.eval()
    probs_iter = predict_planes(
        iter(data.images), predictor, num_classes=n, tile=tile, overlap=0.25, batch_size=batch_size
    )
    for probs, lab in zip(probs_iter, data.labels, strict=True):
        cm += confusion_matrix(probs.argmax(0), lab, n)
    network.train(was_training)
    return scores_from_confusion(cm, tuple(class_names))
