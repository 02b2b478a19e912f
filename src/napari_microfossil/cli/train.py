"""``microfossil train``: train or fine-tune a model on labelled slices."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ._common import add_common_options, check_output, progress

if TYPE_CHECKING:
    from ..training import LRFindResult


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
        help=f"peak learning rate of the one-cycle schedule (default {DEFAULT_TRAIN_LR:g}, or "
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
        "--augment",
        choices=["full", "light", "off"],
        default="light",
        help="full: rotations, shear, zoom, flips, gain, noise and blur, for a model meant "
        "for many scans; light: 90-degree turns, flips and gain, for fine-tuning on the "
        "scan it will segment (default light)",
    )
    s.add_argument(
        "--smooth",
        type=float,
        default=None,
        metavar="SIGMA",
        help="3D Gaussian smoothing of the scan before training, sigma in voxels; the model "
        "records it and segment applies it (default: the base model's)",
    )
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    s.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the validation split, crops, augmentation and a new head (default 0)",
    )
    add_common_options(s)
    s.set_defaults(func=run)


#: Peak learning rate of ``train`` when neither --lr nor --lr-find sets one.
DEFAULT_TRAIN_LR = 1e-3


def _class_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if len(names) < 2:
        raise InputError(
            f"--classes: expected at least 2 comma-separated names (background first), got {text!r}"
        )
    if len(set(names)) != len(names):
        raise InputError(f"--classes: expected unique names, got {text!r}")
    return names


def parse_scales(text: str, option: str = "--resolutions") -> tuple[float, ...]:
    """``"0.25,0.5,1"`` -> ``(0.25, 0.5, 1.0)``: increasing scales in (0, 1]."""
    try:
        scales = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(
            f"{option}: expected comma-separated scales such as 0.25,0.5,1, got {text!r}"
        ) from None
    if any(not 0 < v <= 1 for v in scales) or list(scales) != sorted(scales):
        raise InputError(f"{option}: expected increasing scales in (0, 1], got {text!r}")
    return scales


def _print_lr_find(found: LRFindResult, explicit_lr: float | None) -> None:
    import math

    import numpy as np

    lrs = np.asarray(found.lrs)
    end = "" if found.stopped == "completed" else f", stopped at {lrs[-1]:.1e}: the loss diverged"
    print(
        f"LR finder: {len(lrs)} steps from {found.min_lr:.1e} to {found.max_lr:.1e}{end}\n"
        f"{'lr':>10} {'loss':>8}  (smoothed)"
    )
    # One row per decade, and the lowest loss.
    rows = {int(np.argmin(np.abs(np.log10(lrs) - d))) for d in range(-20, 21)}
    rows.add(int(np.argmin(found.smoothed)))
    for i in sorted(rows):
        if math.isfinite(found.smoothed[i]):
            print(f"{lrs[i]:>10.2e} {found.smoothed[i]:>8.4f}")
    print(
        f"Lowest loss at lr {found.min_loss_lr:.2e}; steepest descent at lr {found.steepest_lr:.2e}"
    )
    if found.stopped == "completed" and found.min_loss_lr >= found.lrs[-1]:
        print(
            "Note: the loss was still falling at the end of the sweep; the suggestion is cautious"
        )
    if explicit_lr is None:
        print(f"Suggested lr {found.suggestion:.2e} (lowest-loss lr / 10): training with it")
    else:
        print(
            f"Suggested lr {found.suggestion:.2e} (lowest-loss lr / 10); training with --lr "
            f"{explicit_lr:g} as given"
        )


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import warnings

    import numpy as np
    import torch

    from ..io import read_labels, read_volume
    from ..model import ModelSpec, build_network, load_model, read_spec, resolve_model_path
    from ..normalise import Normalisation, check_smooth, iter_presmooth
    from ..training import (
        SliceSet,
        TrainConfig,
        class_names_for_labels,
        expand_classes,
        iter_lr_find,
        iter_train,
        max_label_id,
        parse_slices,
        slices_from_volume,
        split_slices,
    )
    from ..training.distributed import broadcast_object, distributed_session, launcher_env
    from ..training.finetune import MIN_SLICES_FOR_VALIDATION, VAL_FRACTION

    out = Path(args.output)
    check_output(out, args.overwrite)
    if out.suffix != ".safetensors":
        raise InputError(f"-o: model files end in .safetensors, got {out.name!r}")
    requested = _class_list(args.classes) if args.classes else None
    resolutions = parse_scales(args.resolutions)
    where = launcher_env()  # under torchrun only rank 0 prints
    is_main = where is None or where[0] == 0
    quiet = args.quiet or not is_main
    vol = read_volume(args.image)
    labels = read_labels(args.labels)
    if tuple(vol.data.shape) != tuple(labels.data.shape):
        raise InputError(
            f"--labels: expected the image's shape {tuple(vol.data.shape)}, got {tuple(labels.data.shape)}"
        )
    lab = labels.load()
    val_planes = parse_slices(args.val_slices, "--val-slices") if args.val_slices else {}
    if args.slices:
        slices = parse_slices(args.slices)
    else:  # every z-slice that has any label (and is not for validation)
        skip = set(val_planes.get("z", []))
        labelled = [int(z) for z in range(lab.shape[0]) if z not in skip and np.any(lab[z] > 0)]
        if not labelled:
            raise InputError(
                f"--labels: {args.labels} has no labelled voxels; paint some or pass --slices"
            )
        slices = {"z": labelled}
    clash = sorted(
        f"{a}:{i}" for a, idx in val_planes.items() for i in set(idx) & set(slices.get(a, []))
    )
    if clash:
        raise InputError(
            f"--val-slices: expected slices not in --slices, got {', '.join(clash)} in both"
        )
    from_scratch = args.base in ("scratch", "imagenet")
    base = None if from_scratch else load_model(args.base, device="cpu")
    norm = base.spec.normalisation if base is not None else Normalisation()
    if args.smooth is not None:
        norm = dataclasses.replace(norm, smooth=check_smooth(args.smooth, "--smooth"))
    # Smoothed once, for training and validation planes alike.
    image, cut = progress(iter_presmooth(vol.data, norm), quiet=quiet)
    name = Path(args.image).name
    data = slices_from_volume(image, lab, slices, normalisation=cut, name=name)
    top = max_label_id(data)
    if requested is not None and len(requested) <= top:
        raise InputError(
            f"--classes: the labels use class ids up to {top}, so expected at least {top + 1} "
            f"names, got {len(requested)} ({','.join(requested)})"
        )
    if base is None:
        names = requested or class_names_for_labels(
            labels.class_names or ("background",), max(top, 1)
        )
        spec = ModelSpec(class_names=tuple(names), normalisation=norm)
        weights = "imagenet" if args.base == "imagenet" else None
        if weights and is_main:
            print(
                f"microfossil train: getting ImageNet weights for {spec.encoder} (needs the "
                "network the first time; cached after)",
                file=sys.stderr,
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            network = build_network(spec, encoder_weights=weights)
        base_desc = args.base
    else:
        base_desc = str(resolve_model_path(args.base))
        names = requested or class_names_for_labels(
            base.spec.class_names, top, label_class_names=labels.class_names
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            network, spec = expand_classes(
                base.network, base.spec, names, model_name=Path(base_desc).name, seed=args.seed
            )
        spec = dataclasses.replace(spec, normalisation=norm)
        if is_main:
            for w in caught:
                print(f"microfossil train: warning: {w.message}", file=sys.stderr)
    if val_planes:
        n_train = len(data)
        data.extend(slices_from_volume(image, lab, val_planes, normalisation=cut, name=name))
        tr_idx, va_idx = list(range(n_train)), list(range(n_train, len(data)))
    else:
        rng = np.random.default_rng(args.seed)
        tr_idx, va_idx = split_slices(
            data.sources, val_fraction=VAL_FRACTION, rng=rng, min_items=MIN_SLICES_FOR_VALIDATION
        )

    def subset(idx: list[int]) -> SliceSet:
        return SliceSet(
            [data.images[i] for i in idx],
            [data.labels[i] for i in idx],
            [data.sources[i] for i in idx],
        )

    cfg = TrainConfig(
        epochs=args.epochs,
        frozen_epochs=args.frozen_epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        crop_size=args.crop_size,
        resolutions=resolutions,
        lr=args.lr if args.lr is not None else DEFAULT_TRAIN_LR,
        time_limit_s=args.time_limit,
        augment=args.augment,
        seed=args.seed,
    )
    train_set = subset(tr_idx)
    val = subset(va_idx) if va_idx else None
    provenance: dict[str, object] = {
        "base": base_desc,
        "image": str(args.image),
        "labels": str(args.labels),
        "train_slices": [data.sources[i] for i in tr_idx],
        "val_slices": [data.sources[i] for i in va_idx],
    }
    before = out.stat().st_mtime_ns if out.exists() else None
    try:
        with distributed_session(args.device) as ctx:
            device = ctx.device if ctx.active else args.device
            if ctx.active:
                provenance["world_size"] = ctx.world_size
            if args.lr_find:
                found = None
                if ctx.is_main:  # the others wait for its suggestion
                    found = progress(
                        iter_lr_find(
                            train_set,
                            spec,
                            network=network,
                            config=cfg,
                            device=device,
                            steps=args.lr_find_steps,
                        ),
                        quiet=quiet,
                    )
                    _print_lr_find(found, args.lr)
                suggestion = broadcast_object(found.suggestion if found is not None else 0.0)
                if args.lr is None:
                    cfg = dataclasses.replace(cfg, lr=suggestion)
                provenance["lr_find"] = {
                    **(found.to_dict() if found is not None else {"suggestion": suggestion}),
                    "used": args.lr is None,
                }
            result = progress(
                iter_train(
                    train_set,
                    val,
                    spec,
                    network=network,
                    config=cfg,
                    device=device,
                    output=str(out),
                    provenance=provenance,
                ),
                quiet=quiet,
            )
    except KeyboardInterrupt:
        if not is_main:
            return 130
        written = out.exists() and out.stat().st_mtime_ns != before
        if written:
            prov = read_spec(out).provenance
            print(
                f"microfossil train: cancelled; the best model so far (epoch "
                f"{prov.get('best_epoch')} of {prov.get('epochs_run')} run) is in {out}",
                file=sys.stderr,
            )
        else:
            print(
                "microfossil train: cancelled before the first epoch ended; no model was written",
                file=sys.stderr,
            )
        return 130
    if not is_main:
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
        f"Best epoch {result.best_epoch} ({result.stopped}); lr {cfg.lr:.3g}; "
        f"model written to {out}"
    )
    return 0
