"""Score a label volume against ground truth: per-class IoU, Dice and pixel error.

Usage: python scripts/score.py LABELS.tif TRUTH.tif
"""

from __future__ import annotations

import sys

from napari_microfossil.classes import PHANTOM_CLASS_NAMES
from napari_microfossil.errors import InputError
from napari_microfossil.io import read_labels
from napari_microfossil.metrics import segmentation_scores


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python scripts/score.py LABELS.tif TRUTH.tif", file=sys.stderr)
        return 2
    try:
        pred, truth = read_labels(argv[0]), read_labels(argv[1])
    except InputError as exc:
        print(f"score: error: {exc}", file=sys.stderr)
        return 2
    names = truth.class_names or pred.class_names or PHANTOM_CLASS_NAMES
    scores = segmentation_scores(pred.load(), truth.load(), names)
    iou = "  ".join(f"{n} {scores[f'iou_{n}']:.3f}" for n in names if f"iou_{n}" in scores)
    print(f"Accuracy against the ground truth: IoU {iou}; pixel error {scores['pixel_error']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
