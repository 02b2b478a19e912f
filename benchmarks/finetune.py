"""Fine-tuning on a few corrected slices of a scan unlike the training data.

Makes a phantom in the harder style (``PhantomStyle().harder()``: more noise, blur,
rings and cupping, less contrast), segments it with the base model, then "corrects"
``--n-slices`` evenly spaced z-slices (takes their ground truth, as a user painting
them would), fine-tunes the base model on those slices alone for at most
``--time-limit`` seconds, and segments again. Prints the per-class IoU on every *other*
slice (the corrected slices are left out of the score), side by side:

- the base model as it is;
- the base model on the scan smoothed with ``--smooth`` (no training: what the
  Smoothing option alone does);
- the fine-tuned model (trained and applied with the same smoothing);
- with ``--in-domain``, the base model on the *default*-style phantom of the same seed
  (same fossils, the noise and contrast the base model was trained on): what the
  network reaches where it needs no adapting, a yardstick for the fine-tuned column.

``--flips`` scores every ``--axes`` entry again with test-time flip averaging (the
Segment panel's "Average over flips").

Usage::

    python benchmarks/finetune.py [--seed 4000] [--n-slices 3] [--time-limit 300]
        [--smooth 0.7] [--axes z zyx] [--flips] [--in-domain]
    python benchmarks/finetune.py --smooth-sweep 0 0.5 0.7 1 1.5   # no training
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

# OpenMP threads that wait for a descheduled sibling sleep instead of spinning (set
# before torch loads libgomp): on a loaded machine spinning made a training step cost
# 3.7x the CPU seconds (docs/correction_loop.md, session 3), and CPU seconds are the
# budget here. `OMP_WAIT_POLICY=ACTIVE python ...` for the old behaviour.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from napari_microfossil._progress import drain
from napari_microfossil.cli.train import add_recipe_options, recipe_from_args
from napari_microfossil.metrics import confusion_matrix, scores_from_confusion
from napari_microfossil.model import load_model
from napari_microfossil.phantom import PhantomStyle, make_phantom
from napari_microfossil.segmentation import iter_segment
from napari_microfossil.workflows.train import TrainRequest, iter_run_training


def modes(args) -> list[tuple[str, bool]]:
    """(axes, flips) pairs to score: each ``--axes`` entry, and with flips if ``--flips``."""
    return [
        (axes, flips) for axes in args.axes for flips in ((False, True) if args.flips else (False,))
    ]


def mode_name(axes: str, flips: bool) -> str:
    return f"{axes}, averaged over flips" if flips else axes


def scores(model, image, truth, keep, names, args, smooth=None) -> dict[str, dict[str, float]]:
    out = {}
    for axes, flips in modes(args):
        seg = drain(
            iter_segment(image, model, axes=axes, device=args.device, smooth=smooth, flips=flips)
        ).labels
        out[mode_name(axes, flips)] = scores_from_confusion(
            confusion_matrix(seg[keep], truth[keep], len(names)), names
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--base", default="default")
    p.add_argument("--seed", type=int, default=4000)
    p.add_argument("--shape", type=int, nargs=3, default=(64, 256, 256))
    p.add_argument("--n-slices", type=int, default=3)
    p.add_argument("--axes", nargs="+", default=["z"], help="slicing axes when scoring, e.g. z zyx")
    p.add_argument("--flips", action="store_true", help="also score with test-time flip averaging")
    p.add_argument(
        "--in-domain",
        action="store_true",
        help="also score the base model on the default-style phantom of the same seed",
    )
    add_recipe_options(p)  # the train command's recipe options; the time limit usually rules
    p.set_defaults(epochs=1000, time_limit=300.0, smooth=0.7)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--smooth-sweep",
        type=float,
        nargs="+",
        metavar="SIGMA",
        help="only score the base model with each of these smoothings (no training)",
    )
    args = p.parse_args(argv)

    ph = make_phantom(tuple(args.shape), seed=args.seed, style=PhantomStyle().harder())  # type: ignore[arg-type]
    nz = ph.image.shape[0]
    picks = np.linspace(0, nz - 1, args.n_slices + 2)[1:-1].round().astype(int).tolist()
    keep = np.ones(nz, dtype=bool)
    keep[picks] = False

    base = load_model(args.base, device=args.device)
    names = base.spec.class_names
    if args.smooth_sweep:
        print(f"base model on harder phantom seed {args.seed}, other {int(keep.sum())} slices")
        print(f"{'sigma':>6} {'axes':>5} " + " ".join(f"{'IoU ' + n:>14}" for n in names))
        for sigma in args.smooth_sweep:
            got = scores(base, ph.image, ph.labels, keep, names, args, smooth=sigma)
            for mode, sc in got.items():
                row = " ".join(f"{sc['iou_' + n]:>14.4f}" for n in names)
                print(f"{sigma:>6g} {mode:>5} {row}")
        return 0
    before = scores(base, ph.image, ph.labels, keep, names, args)
    in_domain: dict[str, dict[str, float]] = {}
    if args.in_domain:
        easy = make_phantom(tuple(args.shape), seed=args.seed)  # type: ignore[arg-type]
        in_domain = scores(base, easy.image, easy.labels, keep, names, args)
    smoothed = scores(base, ph.image, ph.labels, keep, names, args, smooth=args.smooth)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "finetuned.safetensors"
        t0 = time.perf_counter()
        # The training path of `microfossil train` and the Fine-tune panel (fewer than
        # four corrected slices: all of them train, none is held out).
        request = TrainRequest(
            ph.image,
            ph.labels,
            out,
            slices={"z": picks},
            base=args.base,
            **recipe_from_args(args),
            device=args.device,
            name="harder phantom",
        )
        result = drain(iter_run_training(request))
        dt = time.perf_counter() - t0
        tuned = load_model(out, device=args.device)
        assert tuned.spec.normalisation.smooth == args.smooth  # Segment will smooth alike
        after = scores(tuned, ph.image, ph.labels, keep, names, args)

    steps = result.history[-1]["steps"]  # one phase (no frozen epochs): steps so far
    print(
        f"harder phantom seed {args.seed}, shape {tuple(args.shape)}; corrected z-slices {picks}; "
        f"scored on the other {int(keep.sum())} slices"
    )
    print(
        f"fine-tuned {dt:.0f} s (limit {args.time_limit:.0f} s): {len(result.history)} epochs, "
        f"{steps} steps of {args.batch_size} x {args.crop_size}^2 crops, lr {result.lr:g}, "
        f"augment {args.augment}, smoothing {args.smooth:g}; stopped: {result.stopped}"
    )
    for mode in before:
        print(f"IoU, segmenting along {mode}:")
        extra = f" {'base, default style':>20}" if in_domain else ""
        print(f"{'class':>12} {'base':>8} {'smoothed':>9} {'fine-tuned':>11}{extra}")
        for n in names:
            k = "iou_" + n
            b, s, a = before[mode][k], smoothed[mode][k], after[mode][k]
            ref = f" {in_domain[mode][k]:>20.4f}" if in_domain else ""
            print(f"{n:>12} {b:>8.4f} {s:>9.4f} {a:>11.4f}{ref}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
