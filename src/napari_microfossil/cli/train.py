"""``microfossil train``: train or fine-tune a model on labelled slices.

Parsing and printing only: the rules live in :mod:`napari_microfossil.workflows.train`.
:func:`add_recipe_options` and :func:`config_from_args` are the one mapping from
command-line options to a :class:`~napari_microfossil.training.TrainConfig`; the
benchmarks and the default-model script use them too.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..training import AUGMENT_MODES, TIME_CLOCKS
from ..workflows.train import DEFAULT_LR
from ._common import add_common_options, progress

if TYPE_CHECKING:
    from ..training import TrainConfig
    from ..workflows.train import Notice, TrainRequest

#: How the train command names the request's fields in its messages.
OPTION_NAMES = {
    "output": "-o",
    "labels": "--labels",
    "slices": "--slices",
    "val_slices": "--val-slices",
    "classes": "--classes",
    "smooth": "--smooth",
    "lr_find_steps": "--lr-find-steps",
    "pixel_features": "--pixel-features",
}


def add_parser(sub: Any) -> None:
    s = sub.add_parser(
        "train",
        help="train or fine-tune a model on labelled slices",
        description="Train or fine-tune a U-Net on labelled slices (a quarter of them, at "
        "least 1 when there are 4 or more, held out for validation). On several GPUs: "
        "torchrun --nproc_per_node N -m napari_microfossil.cli train ... (see "
        "docs/fine_tuning.md).",
    )
    s.add_argument("--image", required=True, metavar="SCAN")
    s.add_argument("--labels", required=True, metavar="LABELS.tif")
    s.add_argument(
        "--slices", help="labelled slices, e.g. 'z:10,40,70' (default: every z-slice with labels)"
    )
    s.add_argument(
        "--val-slices",
        metavar="SLICES",
        help="validate on these slices, e.g. 'z:20,25' (never trained on; all of --slices "
        "then train); default: a quarter of --slices, when there are 4 or more",
    )
    s.add_argument(
        "--no-hold-out",
        dest="hold_out",
        action="store_false",
        help="train on every slice of --slices, holding none out for validation (the best "
        "epoch is then the one with the lowest training loss); e.g. for a later correction "
        "round, when every corrected slice counts",
    )
    s.add_argument(
        "--base",
        default="default",
        help="'default', a model file, 'scratch' (random weights) or 'imagenet' (a new "
        "network with an ImageNet-trained encoder; needs the network the first time)",
    )
    s.add_argument("-o", "--output", required=True, metavar="MODEL.safetensors")
    s.add_argument(
        "--classes",
        metavar="NAMES",
        help="all class names in label-id order, comma separated, background first, e.g. "
        "'background,fossil,pore,ostracod'; classes the base model lacks get a new head "
        "(default: the base model's classes, plus the label file's names or class_N for "
        "higher ids found in the labels)",
    )
    add_recipe_options(s)
    add_forest_options(s)
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    s.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the validation split, crops, augmentation and a new head (default 0)",
    )
    add_common_options(s)
    s.set_defaults(func=run)


def add_forest_options(s: argparse.ArgumentParser) -> None:
    """``--method`` and the pixel forest's options; read back with :func:`forest_from_args`."""
    s.add_argument(
        "--method",
        choices=("network", "forest"),
        default="network",
        help="'network' (default): train the U-Net; 'forest': fit a random forest on "
        "multiscale pixel features with auto-context (the ilastik recipe, usually better on "
        "real multi-phase rock with few labelled slices; --base and the recipe options are "
        "then refused)",
    )
    s.add_argument(
        "--forest-stages",
        type=int,
        default=2,
        metavar="N",
        help="with --method forest: 1 = a plain forest, 2 or more = auto-context stages, each "
        "also seeing the previous stage's class probabilities (default 2)",
    )
    s.add_argument(
        "--forest-trees",
        type=int,
        default=100,
        metavar="N",
        help="with --method forest: trees of each stage (default 100)",
    )


def forest_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~napari_microfossil.workflows.train.TrainRequest` fields of
    :func:`add_forest_options`. With ``--method forest``, ``--base`` and the network's
    recipe options (:func:`add_recipe_options`) set to other than their defaults are
    refused: a forest is fitted from the labels alone and would silently ignore them."""
    from ..training.forest import ForestRecipe

    method = getattr(args, "method", "network")
    if method != "forest":
        return {"method": method}
    for option in ("--forest-stages", "--forest-trees"):
        value = getattr(args, option[2:].replace("-", "_"))
        if value < 1:
            raise InputError(f"{option}: expected an integer >= 1, got {value}")
    unused = [f"--{k.replace('_', '-')}" for k in _network_options_set(args)]
    if unused:
        raise InputError(
            f"--method forest: {', '.join(unused)} only apply to the network (a forest is "
            "fitted from the labels alone); drop them or use --method network"
        )
    return {"method": method, "forest": ForestRecipe(args.forest_stages, args.forest_trees)}


def _network_options_set(args: argparse.Namespace) -> list[str]:
    """The network-only options of `args` (``base`` and :func:`add_recipe_options`'s)
    whose values are not their defaults."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--base", default="default")
    add_recipe_options(parser)
    defaults = vars(parser.parse_args([]))
    return [k for k, v in defaults.items() if hasattr(args, k) and getattr(args, k) != v]


def add_recipe_options(s: argparse.ArgumentParser) -> None:
    """The training recipe's options (epochs, crops, learning rate, LR finder, time
    limit, augmentation, smoothing); read back with :func:`config_from_args`."""
    s.add_argument(
        "--epochs",
        type=int,
        default=10,
        help="epochs with the whole network learning; the encoder's blocks get discriminative "
        "rates from lr/400 (first) to lr/4 (last) (default 10)",
    )
    s.add_argument(
        "--frozen-epochs",
        type=int,
        default=0,
        help="epochs with the encoder frozen first, only decoder and head learning, each "
        "phase with its own one-cycle schedule (default 0)",
    )
    s.add_argument(
        "--resolutions",
        default="1",
        metavar="SCALES",
        help="progressive resolution: comma-separated scales the run is split over, e.g. "
        "'0.25,0.5,1' trains on crops down-sampled 4x, then 2x, then at full resolution "
        "(default 1: full resolution only)",
    )
    s.add_argument(
        "--steps-per-epoch", type=int, default=25, help="optimiser steps per epoch (default 25)"
    )
    s.add_argument(
        "--batch-size", type=int, default=8, help="crops per step, per process (default 8)"
    )
    s.add_argument(
        "--crop-size",
        type=int,
        default=128,
        help="training crop edge in pixels, multiple of 32 (default 128)",
    )
    s.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"peak learning rate of the one-cycle schedule (default {DEFAULT_LR:g}, or "
        "the LR finder's suggestion with --lr-find)",
    )
    s.add_argument(
        "--lr-find",
        action="store_true",
        help="first sweep the learning rate from 1e-6 to 1 (one step each, weights restored "
        "after), print the loss curve and the suggested rate (rate at the lowest loss / 10) "
        "and train with it; with --lr given, only report it and train with --lr",
    )
    s.add_argument(
        "--lr-find-steps",
        type=int,
        default=100,
        metavar="N",
        help="steps of the LR sweep (default 100)",
    )
    s.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this long; the schedule is compressed to fit and the best model kept",
    )
    s.add_argument(
        "--time-clock",
        choices=list(TIME_CLOCKS),
        default="wall",
        help="what --time-limit counts: wall-clock seconds, or CPU seconds of the training "
        "process (steadier than wall time when the machine is busy; for identical training "
        "use --epochs/--steps-per-epoch without --time-limit) (default wall)",
    )
    s.add_argument(
        "--augment",
        choices=list(AUGMENT_MODES),
        default="light",
        help="full: rotations, shear, zoom, flips, gain, noise and blur, for a model meant "
        "for many scans; light: 90-degree turns, flips and gain, for fine-tuning on the "
        "scan it will segment (default light)",
    )
    s.add_argument(
        "--pixel-features",
        metavar="SIGMAS",
        help="feed multiscale pixel features (intensity, edges, texture, as ilastik's) at "
        "these Gaussian sigmas in pixels, e.g. '1,2,4,8,16', into the class head beside the "
        "network's own; the head is fitted to the labelled pixels first (default: none, or "
        "those of the base model)",
    )
    s.add_argument(
        "--smooth",
        type=float,
        default=None,
        metavar="SIGMA",
        help="3D Gaussian smoothing of the scan before training, sigma in voxels; the model "
        "records it and segment applies it (default: the base model's)",
    )


def config_from_args(args: argparse.Namespace, **extra: Any) -> TrainConfig:
    """The :class:`~napari_microfossil.training.TrainConfig` of :func:`add_recipe_options`'
    values (``--lr`` unset: :data:`~napari_microfossil.workflows.train.DEFAULT_LR`);
    `extra` sets fields the command line has no option for."""
    from ..training import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        frozen_epochs=args.frozen_epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        crop_size=args.crop_size,
        resolutions=parse_scales(args.resolutions),
        lr=args.lr if args.lr is not None else DEFAULT_LR,
        time_limit_s=args.time_limit,
        time_clock=getattr(args, "time_clock", "wall"),
        augment=args.augment,
        seed=getattr(args, "seed", 0),
        **extra,
    )


def recipe_from_args(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """The :class:`~napari_microfossil.workflows.train.TrainRequest` fields that
    :func:`add_recipe_options` sets: ``config`` (see :func:`config_from_args`, `extra`
    for its other fields), ``smooth`` and the LR finder's."""
    return {
        "config": config_from_args(args, **extra),
        "smooth": args.smooth,
        "lr_find": args.lr_find,
        "lr_find_steps": args.lr_find_steps,
        "use_lr_suggestion": args.lr is None,
        "pixel_features": parse_scales(args.pixel_features, "--pixel-features", upper=64.0)
        if getattr(args, "pixel_features", None)
        else None,
    }


def request_from_args(args: argparse.Namespace) -> TrainRequest:
    """The :class:`~napari_microfossil.workflows.train.TrainRequest` of ``train``'s options."""
    from ..workflows.train import TrainRequest

    classes = None
    if args.classes:
        classes = tuple(n.strip() for n in args.classes.split(",") if n.strip())
    return TrainRequest(
        image=args.image,
        labels=args.labels,
        output=args.output,
        slices=args.slices,
        val_slices=args.val_slices,
        base=args.base,
        classes=classes,
        device=args.device,
        seed=args.seed,
        overwrite=args.overwrite,
        hold_out=args.hold_out,
        option_names=OPTION_NAMES,
        **recipe_from_args(args),
        **forest_from_args(args),
    )


def parse_scales(
    text: str, option: str = "--resolutions", *, upper: float = 1.0
) -> tuple[float, ...]:
    """``"0.25,0.5,1"`` -> ``(0.25, 0.5, 1.0)``: increasing scales in (0, `upper`]."""
    try:
        scales = tuple(float(v) for v in text.split(","))
    except ValueError:
        example = "0.25,0.5,1" if upper == 1 else "1,2,4,8,16"
        raise InputError(
            f"{option}: expected comma-separated scales such as {example}, got {text!r}"
        ) from None
    if any(not 0 < v <= upper for v in scales) or list(scales) != sorted(scales):
        raise InputError(f"{option}: expected increasing scales in (0, {upper:g}], got {text!r}")
    return scales


def run(args: argparse.Namespace) -> int:
    from ..training.distributed import launcher_env
    from ..workflows.train import cancel_report, iter_run_training, output_stamp

    request = request_from_args(args)
    where = launcher_env()  # under torchrun only rank 0 prints
    is_main = where is None or where[0] == 0

    def say(notice: Notice) -> None:
        if not is_main:
            return
        for line in notice.lines:
            if notice.kind == "lr-find":
                print(line)
            elif notice.kind == "warning":
                print(f"microfossil train: warning: {line}", file=sys.stderr)
            else:
                print(f"microfossil train: {line}", file=sys.stderr)

    before = output_stamp(request.output)
    try:
        result = progress(iter_run_training(request, notify=say), quiet=args.quiet or not is_main)
    except KeyboardInterrupt:
        if is_main:
            report = cancel_report(request.output, before)
            print(f"microfossil train: {report.text}", file=sys.stderr)
        return 130
    if not is_main:
        return 0
    if not result.history:  # a pixel forest: fitted, not trained by epochs
        scores = result.spec.metrics or {}
        scored_on = "validation" if result.after is not None else "the training slices"
        value = result.after if result.after is not None else result.fit_after
        ious = " ".join(f"{k[4:]} {v:.4f}" for k, v in scores.items() if k.startswith("iou_"))
        print(f"Pixel forest fitted; {result.score_key} {value:.4f} on {scored_on}")
        if ious:
            print(f"IoU: {ious}")
        print(f"Model written to {result.path}")
        return 0
    print(
        f"{'epoch':>5} {'loss':>8} "
        + " ".join(f"{k:>14}" for k in result.history[-1] if k.startswith("iou_"))
    )
    for h in result.history:
        print(
            f"{h['epoch']:>5} {h['loss']:>8.4f} "
            + " ".join(f"{h[k]:>14.4f}" for k in h if k.startswith("iou_"))
        )
    print(
        f"Best epoch {result.best_epoch} ({result.stopped}); lr {result.lr:.3g}; model written to {result.path}"
    )
    return 0
