"""Accuracy of a model on phantom scans it never saw (test seeds 3000 and up).

Segments each phantom with the engine exactly as ``microfossil segment`` does and prints
per-class IoU against the exact ground truth, plus the pooled IoU over all volumes.
Training used seeds 1000+, validation 2000+ (scripts/train_default_model.py).

Usage::

    python benchmarks/accuracy.py [--model default] [--n 5] [--shape 128 256 256] [--axes z] [--harder]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from napari_microfossil._progress import drain
from napari_microfossil.metrics import confusion_matrix, scores_from_confusion
from napari_microfossil.model import load_model
from napari_microfossil.phantom import PhantomStyle, make_phantom
from napari_microfossil.segmentation import iter_segment

TEST_SEED0 = 3000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="default")
    p.add_argument("--n", type=int, default=5, help="number of test phantoms")
    p.add_argument("--seed0", type=int, default=TEST_SEED0)
    p.add_argument("--shape", type=int, nargs=3, default=(128, 256, 256))
    p.add_argument("--axes", default="z")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--flips", action="store_true", help="test-time flips (segment --flips)")
    p.add_argument(
        "--harder",
        action="store_true",
        help="use PhantomStyle().harder() (other noise, contrast, blur)",
    )
    args = p.parse_args(argv)

    model = load_model(args.model, device=args.device)
    names = model.spec.class_names
    style = PhantomStyle().harder() if args.harder else None
    total = np.zeros((len(names), len(names)), np.int64)
    print(
        f"model {model.path}  axes {args.axes}  shape {tuple(args.shape)}  flips {args.flips}  style {'harder' if style else 'default'}"
    )
    print(
        f"{'seed':>6} {'fossils':>7} "
        + " ".join(f"{'IoU ' + n:>15}" for n in names)
        + f" {'Mvox/s':>8}"
    )
    for seed in range(args.seed0, args.seed0 + args.n):
        ph = make_phantom(tuple(args.shape), seed=seed, style=style)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        seg = drain(
            iter_segment(
                ph.image,
                model,
                axes=args.axes,
                device=args.device,
                batch_size=args.batch_size,
                flips=args.flips,
            )
        )
        dt = time.perf_counter() - t0
        cm = confusion_matrix(seg.labels, ph.labels, len(names))
        total += cm
        s = scores_from_confusion(cm, names)
        print(
            f"{seed:>6} {len(ph.fossils):>7} "
            + " ".join(f"{s.get('iou_' + n, float('nan')):>15.4f}" for n in names)
            + f" {ph.image.size / dt / 1e6:>8.2f}"
        )
    s = scores_from_confusion(total, names)
    print(
        f"{'pooled':>6} {'':>7} "
        + " ".join(f"{s.get('iou_' + n, float('nan')):>15.4f}" for n in names)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
