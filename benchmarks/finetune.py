"""Fine-tuning on a few corrected slices of a scan unlike the training data.

Makes a phantom in the harder style (``PhantomStyle().harder()``: more noise, blur,
rings and cupping, less contrast), segments it with the base model, then "corrects"
``--n-slices`` evenly spaced z-slices (takes their ground truth, as a user painting
them would), fine-tunes the base model on those slices alone for at most
``--time-limit`` seconds, and segments again. Prints the per-class IoU before and after
on every *other* slice (the corrected slices are left out of the score).

Usage::

    python benchmarks/finetune.py [--seed 4000] [--n-slices 3] [--time-limit 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_microfossil._progress import drain
from napari_microfossil.inference import iter_segment
from napari_microfossil.metrics import confusion_matrix, scores_from_confusion
from napari_microfossil.model import load_model
from napari_microfossil.normalise import intensity_range
from napari_microfossil.phantom import PhantomStyle, make_phantom
from napari_microfossil.training import TrainConfig, iter_train, slices_from_volume


def scores(model, image, truth, keep, names, device) -> dict[str, float]:
    seg = drain(iter_segment(image, model, axes="z", device=device)).labels
    return scores_from_confusion(confusion_matrix(seg[keep], truth[keep], len(names)), names)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--base", default="default")
    p.add_argument("--seed", type=int, default=4000)
    p.add_argument("--shape", type=int, nargs=3, default=(64, 256, 256))
    p.add_argument("--n-slices", type=int, default=3)
    p.add_argument("--time-limit", type=float, default=300.0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps-per-epoch", type=int, default=25)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)

    ph = make_phantom(tuple(args.shape), seed=args.seed, style=PhantomStyle().harder())  # type: ignore[arg-type]
    nz = ph.image.shape[0]
    picks = np.linspace(0, nz - 1, args.n_slices + 2)[1:-1].round().astype(int).tolist()
    keep = np.ones(nz, dtype=bool)
    keep[picks] = False

    base = load_model(args.base, device=args.device)
    names = base.spec.class_names
    before = scores(base, ph.image, ph.labels, keep, names, args.device)

    norm = base.spec.normalisation
    data = slices_from_volume(
        ph.image,
        ph.labels,
        {"z": picks},
        normalisation=norm,
        value_range=intensity_range(ph.image, norm),
        name="harder phantom",
    )
    cfg = TrainConfig(
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        lr=args.lr,
        time_limit_s=args.time_limit,
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "finetuned.safetensors"
        t0 = time.perf_counter()
        result = drain(
            iter_train(
                data,
                None,
                base.spec,
                network=base.network,
                config=cfg,
                device=args.device,
                output=str(out),
            )
        )
        dt = time.perf_counter() - t0
        tuned = load_model(out, device=args.device)
        after = scores(tuned, ph.image, ph.labels, keep, names, args.device)

    print(
        f"harder phantom seed {args.seed}, shape {tuple(args.shape)}; corrected z-slices {picks}; "
        f"scored on the other {int(keep.sum())} slices"
    )
    print(
        f"fine-tuned {dt:.0f} s (limit {args.time_limit:.0f} s), best epoch {result.best_epoch}, "
        f"stopped: {result.stopped}"
    )
    print(f"{'class':>12} {'IoU before':>11} {'IoU after':>10}")
    for n in names:
        print(f"{n:>12} {before['iou_' + n]:>11.4f} {after['iou_' + n]:>10.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
