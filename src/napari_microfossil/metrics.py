"""Segmentation metrics: confusion counts, IoU, Dice, pixel error; object matching."""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255


def confusion_matrix(
    pred: np.ndarray, truth: np.ndarray, num_classes: int, *, ignore: int = IGNORE_INDEX
) -> np.ndarray:
    """Counts ``cm[t, p]`` of voxels with true class ``t`` predicted as ``p``.

    Voxels whose truth equals ``ignore`` are left out.
    """
    pred = np.asarray(pred).ravel()
    truth = np.asarray(truth).ravel()
    if pred.shape != truth.shape:
        raise ValueError(
            f"pred and truth: expected the same size, got {pred.size} and {truth.size}"
        )
    keep = truth != ignore
    t = truth[keep].astype(np.int64)
    p = np.clip(pred[keep].astype(np.int64), 0, num_classes - 1)
    t = np.clip(t, 0, num_classes - 1)
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def scores_from_confusion(
    cm: np.ndarray, class_names: tuple[str, ...] | list[str] | None = None
) -> dict[str, float]:
    """Per-class IoU and Dice, their means over the foreground classes, and pixel error.

    A class absent from both truth and prediction has no score (left out of the means).
    """
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    out: dict[str, float] = {}
    ious, dices = [], []
    for i in range(n):
        denom = tp[i] + fp[i] + fn[i]
        if denom == 0:
            continue
        iou = tp[i] / denom
        dice = 2 * tp[i] / (2 * tp[i] + fp[i] + fn[i])
        out[f"iou_{names[i]}"] = float(iou)
        out[f"dice_{names[i]}"] = float(dice)
        if i > 0:
            ious.append(iou)
            dices.append(dice)
    total = cm.sum()
    out["mean_iou_fg"] = float(np.mean(ious)) if ious else float("nan")
    out["mean_dice_fg"] = float(np.mean(dices)) if dices else float("nan")
    out["pixel_error"] = float(1.0 - tp.sum() / total) if total else float("nan")
    return out


def segmentation_scores(
    pred: np.ndarray,
    truth: np.ndarray,
    class_names: tuple[str, ...] | list[str],
    *,
    ignore: int = IGNORE_INDEX,
) -> dict[str, float]:
    """Per-class IoU/Dice (F1), foreground means and pixel error of a prediction."""
    return scores_from_confusion(
        confusion_matrix(pred, truth, len(class_names), ignore=ignore), class_names
    )


def object_matches(
    pred: np.ndarray, truth: np.ndarray, *, iou: float = 0.5
) -> tuple[int, int, int]:
    """One-to-one matches of two instance volumes (0 = no object) at IoU >= `iou`.

    Pairs are taken greedily by decreasing IoU, each object at most once (at
    ``iou > 0.5`` a match is unique anyway).

    Returns
    -------
    (matched, n_pred, n_true)
        Matched pairs, and the distinct objects of each volume.
    """
    p = np.asarray(pred).ravel().astype(np.int64)
    t = np.asarray(truth).ravel().astype(np.int64)
    size_p = np.bincount(p)
    size_t = np.bincount(t)
    n_pred, n_true = int(np.count_nonzero(size_p[1:])), int(np.count_nonzero(size_t[1:]))
    both = (p > 0) & (t > 0)
    stride = len(size_t)
    pairs, inter = np.unique(p[both] * stride + t[both], return_counts=True)
    a, b = np.divmod(pairs, stride)
    ious = inter / (size_p[a] + size_t[b] - inter)
    used_p: set[int] = set()
    used_t: set[int] = set()
    for k in np.argsort(-ious, kind="stable"):
        if ious[k] < iou:
            break
        if a[k] not in used_p and b[k] not in used_t:
            used_p.add(int(a[k]))
            used_t.add(int(b[k]))
    return len(used_p), n_pred, n_true


def object_scores(matched: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
    """Precision, recall and F1 of :func:`object_matches`' counts (0 where undefined)."""
    precision = matched / n_pred if n_pred else 0.0
    recall = matched / n_true if n_true else 0.0
    total = precision + recall
    return precision, recall, (2 * precision * recall / total if total else 0.0)
