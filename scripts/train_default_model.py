"""Train the bundled default model on synthetic phantom scans.

The weights this writes are committed as ``src/napari_microfossil/models/default.safetensors``.
Training, validation and test phantoms come from disjoint seed ranges:

- training:   seeds 1000 .. 1000 + n_train - 1
- validation: seeds 2000 .. 2000 + n_val - 1   (picks the best epoch)
- test:       seeds 3000 and up                 (benchmarks/accuracy.py; never seen here)

Planes are cut along all three axes so the model serves ``--axes zyx`` too.

Usage::

    python scripts/train_default_model.py [--n-train 24] [--epochs 30] [--time-limit 3000]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from napari_microfossil._progress import drain
from napari_microfossil.classes import PHANTOM_CLASS_NAMES
from napari_microfossil.cli.train import add_recipe_options, config_from_args
from napari_microfossil.model import ModelSpec, default_model_path
from napari_microfossil.normalise import Normalisation
from napari_microfossil.phantom import make_phantom
from napari_microfossil.training import SliceSet, slices_from_volume
from napari_microfossil.workflows.train import iter_train_slices

TRAIN_SEED0, VAL_SEED0 = 1000, 2000


def phantom_slices(
    seeds: range, shape: tuple[int, int, int], per_axis: int, rng: np.random.Generator
) -> SliceSet:
    out = SliceSet()
    norm = Normalisation()
    for seed in seeds:
        ph = make_phantom(shape, seed=seed)
        picks = {
            ax: sorted(rng.choice(n, size=min(per_axis, n), replace=False).tolist())
            for ax, n in zip("zyx", shape, strict=True)
        }
        out.extend(
            slices_from_volume(
                ph.image, ph.labels, picks, normalisation=norm, name=f"phantom seed {seed}"
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n-train", type=int, default=24)
    p.add_argument("--n-val", type=int, default=4)
    p.add_argument("--shape", type=int, nargs=3, default=(96, 192, 192))
    p.add_argument("--per-axis", type=int, default=12, help="planes per axis per training phantom")
    add_recipe_options(p)  # the train command's recipe options, with this model's defaults
    p.set_defaults(epochs=30, steps_per_epoch=60, crop_size=160, lr=3e-3, augment="full")
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--init", default=None, help="continue from this model file (same architecture)")
    p.add_argument("--pct-start", type=float, default=0.2)
    p.add_argument("-o", "--output", default=str(default_model_path()))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    shape = tuple(args.shape)
    t0 = time.time()
    train = phantom_slices(
        range(TRAIN_SEED0, TRAIN_SEED0 + args.n_train), shape, args.per_axis, rng
    )  # type: ignore[arg-type]
    val = phantom_slices(range(VAL_SEED0, VAL_SEED0 + args.n_val), shape, 4, rng)  # type: ignore[arg-type]
    logging.info(
        "data: %d training planes, %d validation planes (%.0f s)",
        len(train),
        len(val),
        time.time() - t0,
    )

    spec = ModelSpec(
        class_names=PHANTOM_CLASS_NAMES,
        architecture="Unet",
        encoder=args.encoder,
        arch_kwargs={"encoder_depth": 4, "decoder_channels": (128, 64, 32, 16)},
        tile_size=256,
        provenance={
            "name": "napari-microfossil default",
            "trained_by": "scripts/train_default_model.py",
            "data": f"synthetic phantoms, seeds {TRAIN_SEED0}-{TRAIN_SEED0 + args.n_train - 1}, shape {list(shape)}, "
            f"{args.per_axis} planes per axis each; validation seeds {VAL_SEED0}-{VAL_SEED0 + args.n_val - 1}",
            "encoder_weights": "random init (no ImageNet: offline)",
        },
    )
    cfg = config_from_args(args, pct_start=args.pct_start, foreground_fraction=0.6)

    def show(pr: object) -> None:
        from napari_microfossil._progress import Progress

        assert isinstance(pr, Progress)
        if pr.stage == "validate":
            info = pr.info
            logging.info(
                "epoch %d  loss %.4f  IoU fossil %.4f  (%.0f s)",
                info["epoch"],
                info["loss"],
                info.get("iou_fossil", float("nan")),
                info["seconds"],
            )

    network = None
    if args.init:
        from napari_microfossil.model import load_model

        init = load_model(args.init, device="cpu")
        network = init.network
        spec = spec.with_updates(
            arch_kwargs=init.spec.arch_kwargs,
            provenance={**spec.provenance, "continued_from": init.spec.provenance.get("recipe")},
        )
    # The common tail of every training run (torchrun, LR finder, memory released).
    result = drain(
        iter_train_slices(
            train,
            val,
            spec,
            network=network,
            config=cfg,
            output=args.output,
            device=args.device,
            score_base=network is not None,
            lr_find_steps=args.lr_find_steps if args.lr_find else None,
            use_lr_suggestion=args.lr is None,
        ),
        show,
    )
    size = Path(args.output).stat().st_size / 1e6
    logging.info(
        "best epoch %d (%s); wrote %s (%.1f MB)",
        result.best_epoch,
        result.stopped,
        args.output,
        size,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
