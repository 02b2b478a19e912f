"""The loss: weighted cross-entropy plus soft Dice, and the class weights."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..metrics import IGNORE_INDEX
from .config import TrainConfig
from .slices import SliceSet

if TYPE_CHECKING:
    import torch


def dice_ce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    class_weights: torch.Tensor | None,
    dice_weight: float,
) -> torch.Tensor:
    """Cross-entropy (weighted, 255 ignored) plus soft Dice over the classes present."""
    import torch
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, target, weight=class_weights, ignore_index=IGNORE_INDEX)
    if dice_weight <= 0:
        return ce
    valid = (target != IGNORE_INDEX).unsqueeze(1)
    probs = torch.softmax(logits.float(), dim=1) * valid
    onehot = (
        F.one_hot(target.clamp(0, logits.shape[1] - 1), logits.shape[1]).permute(0, 3, 1, 2) * valid
    )
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    denom = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    present = onehot.sum(dim=(0, 2, 3)) > 0
    dice = (2 * inter + 1.0) / (denom + 1.0)
    dice_loss = 1 - dice[present].mean() if bool(present.any()) else logits.sum() * 0
    return ce + dice_weight * dice_loss


def auto_class_weights(data: SliceSet, num_classes: int) -> np.ndarray:
    """Inverse square-root class frequency, normalised to mean 1 over present classes."""
    counts = np.zeros(num_classes, np.float64)
    for lab in data.labels:
        counts += np.bincount(lab[lab != IGNORE_INDEX].ravel(), minlength=num_classes)[:num_classes]
    w = np.zeros(num_classes)
    present = counts > 0
    w[present] = 1.0 / np.sqrt(counts[present] / counts.sum())
    w[present] /= w[present].mean()
    w[~present] = 1.0
    return w


def class_weight_tensor(
    cfg: TrainConfig, data: SliceSet, n_cls: int, dev: torch.device
) -> torch.Tensor | None:
    import torch

    if cfg.class_weights is None:
        return None
    if isinstance(cfg.class_weights, str) and cfg.class_weights == "auto":
        w = auto_class_weights(data, n_cls)
    else:
        w = np.asarray(list(cfg.class_weights), dtype=np.float64)
    return torch.tensor(w, dtype=torch.float32, device=dev)
