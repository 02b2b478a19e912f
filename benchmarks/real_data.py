"""Fine-tuning on real labelled data: the sandstone MicroCT slices and ISBI 2012 EM.

Stacks the labelled 2D slices of a dataset in ``../shared/data`` into a scan and a
label TIFF, fine-tunes the bundled default model on some slices with ``microfossil
train`` (a new head for the dataset's classes, ``--val-slices`` for the held-out ones),
then segments the held-out slices with the new model and prints per-class IoU and the
pixel error (share of wrongly classified pixels).

- ``sandstone`` (Zeiss Versa MicroCT, 10 slices of 1024 x 996 from z = 0..400, 4
  phases): train on the 5 slices at even positions in z order, validate on the other 5.
  Classes: 0 pore space and outside the core, 1 clay-like matrix, 2 grains, 3 dense
  minerals (the source names none; see its SOURCE.md).
- ``isbi`` (ISBI 2012 ssTEM, 30 slices of 512 x 512): train on slices 0-19, validate
  on 20-29. Classes: 0 cell interior, 1 membrane (the source's label 0).

The slices are not contiguous in 3D (sandstone) or strongly anisotropic (ISBI), so no
3D smoothing is used.

Usage::

    python benchmarks/real_data.py sandstone [--time-limit 300] [--data ../shared/data]
    python benchmarks/real_data.py isbi [--time-limit 300]
    python benchmarks/real_data.py sandstone --method forest [--forest-stages 2] --no-val
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_microfossil._progress import drain
from napari_microfossil.cli.train import (
    add_forest_options,
    add_recipe_options,
    forest_from_args,
    recipe_from_args,
)
from napari_microfossil.io import write_tiff
from napari_microfossil.metrics import confusion_matrix, scores_from_confusion
from napari_microfossil.model import load_model
from napari_microfossil.segmentation import iter_segment
from napari_microfossil.workflows.train import TrainRequest, iter_run_training

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"


def load_sandstone(root: Path) -> tuple[np.ndarray, np.ndarray, list[int], list[int], list[str]]:
    import tifffile

    folder = root / "sandstone-versa-microct"
    names = sorted(p.name for p in (folder / "labels_index").glob("Sandstone_Versa*.tif"))
    images = []
    for n in names:
        p = folder / "images" / n
        if not p.exists():  # slice 0180 ships on its own
            p = folder / "extra_slice_0180" / n.replace(".tif", "_image.tif")
        images.append(tifffile.imread(p))
    labels = [tifffile.imread(folder / "labels_index" / n) for n in names]
    n = len(names)
    train = list(range(0, n, 2))
    val = list(range(1, n, 2))
    classes = ["pore", "clay", "grain", "dense"]
    return np.stack(images), np.stack(labels).astype(np.uint8), train, val, classes


def load_isbi(root: Path) -> tuple[np.ndarray, np.ndarray, list[int], list[int], list[str]]:
    from PIL import Image

    folder = root / "isbi2012-membrane" / "train"
    images = [np.asarray(Image.open(folder / "image" / f"{i}.png")) for i in range(30)]
    # The source marks membrane 0 and cell interior 255 (255 means "unlabelled" here).
    labels = [(np.asarray(Image.open(folder / "label" / f"{i}.png")) < 128) for i in range(30)]
    return (
        np.stack(images),
        np.stack(labels).astype(np.uint8),
        list(range(20)),
        list(range(20, 30)),
        ["cell", "membrane"],
    )


LOADERS = {"sandstone": load_sandstone, "isbi": load_isbi}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("dataset", choices=sorted(LOADERS))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--base", default="default")
    add_recipe_options(p)  # the train command's recipe options; the time limit usually rules
    p.set_defaults(epochs=1000, time_limit=300.0)
    add_forest_options(p)  # --method forest: the pixel forest with auto-context instead
    p.add_argument("--device", default="auto")
    p.add_argument("--keep", type=Path, help="keep the stacks and the model in this folder")
    p.add_argument(
        "--no-val",
        action="store_true",
        help="do not validate on the held-out slices while training (no epoch is picked by "
        "the slices it is scored on; every epoch's time goes to training)",
    )
    args = p.parse_args(argv)

    image, labels, train, val, classes = LOADERS[args.dataset](args.data)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        scan = write_tiff(work / f"{args.dataset}_scan.tif", image, overwrite=True)
        lab = write_tiff(
            work / f"{args.dataset}_labels.tif", labels, class_names=classes, overwrite=True
        )
        model_path = work / f"{args.dataset}_model.safetensors"
        t0 = time.perf_counter()
        # What `microfossil train --slices ... --val-slices ... --classes ...` runs.
        request = TrainRequest(
            scan,
            lab,
            model_path,
            slices={"z": train},
            val_slices=None if args.no_val else {"z": val},
            hold_out=False,
            base=args.base,
            classes=classes,
            **recipe_from_args(args),
            **forest_from_args(args),
            device=args.device,
            overwrite=True,
        )
        c0 = time.process_time()
        drain(iter_run_training(request))
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        model = load_model(model_path, device=args.device)
        seg = drain(iter_segment(image[val], model, axes="z", device=args.device)).labels
    cm = confusion_matrix(seg, labels[val], len(classes))
    sc = scores_from_confusion(cm, classes)
    pixel_error = 1.0 - np.trace(cm) / cm.sum()
    print(
        f"\n{args.dataset}: trained on z {train}, validated on z {val} "
        f"({image.shape[1]} x {image.shape[2]} px); {dt:.0f} s wall, {cpu:.0f} s CPU in all "
        + (
            f"(limit {args.time_limit:.0f} s of training, {args.time_clock} clock)"
            if args.method == "network"
            else f"(pixel forest, {args.forest_stages} stages of {args.forest_trees} trees)"
        )
    )
    print(f"{'class':>10} {'IoU':>7} {'Dice':>7}")
    for c in classes:
        print(f"{c:>10} {sc['iou_' + c]:>7.4f} {sc['dice_' + c]:>7.4f}")
    print(f"pixel error {pixel_error:.4f}")
    print(f"mean IoU {np.nanmean([sc['iou_' + c] for c in classes]):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
