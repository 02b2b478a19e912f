"""Score a label volume against ground truth: per-class IoU, Dice and pixel error, and
optionally the fossil objects found.

Usage::

    python scripts/score.py LABELS.tif TRUTH.tif [--instances FOUND.tif TRUE.tif]

``--instances``: the instances ``microfossil fossils`` wrote and the true ones (e.g.
``microfossil sample``'s ``truth_instances.tif``), matched one to one at IoU >= 0.5.
"""

from __future__ import annotations

import argparse
import sys

from napari_microfossil.classes import PHANTOM_CLASS_NAMES
from napari_microfossil.errors import InputError
from napari_microfossil.io import read_labels
from napari_microfossil.metrics import object_matches, object_scores, segmentation_scores


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="score.py", description=__doc__.split("\n\n")[0])
    p.add_argument("labels", metavar="LABELS.tif")
    p.add_argument("truth", metavar="TRUTH.tif")
    p.add_argument("--instances", nargs=2, metavar=("FOUND.tif", "TRUE.tif"))
    args = p.parse_args(argv)
    try:
        pred, truth = read_labels(args.labels), read_labels(args.truth)
        objects = [read_labels(f) for f in args.instances] if args.instances else None
    except InputError as exc:
        print(f"score: error: {exc}", file=sys.stderr)
        return 2
    names = truth.class_names or pred.class_names or PHANTOM_CLASS_NAMES
    scores = segmentation_scores(pred.load(), truth.load(), names)
    iou = "  ".join(f"{n} {scores[f'iou_{n}']:.3f}" for n in names if f"iou_{n}" in scores)
    print(f"Accuracy against the ground truth: IoU {iou}; pixel error {scores['pixel_error']:.4f}")
    if objects is not None:
        matched, n_found, n_true = object_matches(objects[0].load(), objects[1].load())
        precision, recall, f1 = object_scores(matched, n_found, n_true)
        print(
            f"Fossil objects: {matched} of the {n_true} true ones found (IoU >= 0.5); "
            f"{n_found - matched} of the {n_found} found match none; precision {precision:.2f}, "
            f"recall {recall:.2f}, F1 {f1:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
