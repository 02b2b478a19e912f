"""The ``microfossil`` command line: the same engine as the napari plugin, headless.

Every user mistake ends in one line on stderr naming the file or option, and exit code
2; nothing half-written is left behind (all writes are atomic).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

from . import __version__
from ._progress import Progress
from .errors import InputError

if TYPE_CHECKING:
    from .training import LRFindResult

T = TypeVar("T")
log = logging.getLogger("napari_microfossil")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _progress(gen: Generator[Progress, None, T], *, quiet: bool = False) -> T:
    """Drain an engine generator with one tqdm bar per stage."""
    from tqdm import tqdm

    bar = None
    stage = None
    # In a log file (not a terminal) a bar line every few seconds is enough.
    interval = 0.2 if sys.stderr.isatty() else 10.0
    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            if quiet:
                continue
            if p.stage != stage or bar is None:
                if bar is not None:
                    bar.close()
                stage = p.stage
                bar = tqdm(
                    total=p.total,
                    desc=p.stage,
                    unit="step",
                    dynamic_ncols=True,
                    file=sys.stderr,
                    mininterval=interval,
                )
            if bar.total != p.total:
                bar.total = p.total
            loss = p.info.get("loss")
            if loss is not None:
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            if p.done > bar.n:
                bar.update(p.done - bar.n)  # tqdm rate-limits the redraws
    finally:
        if bar is not None:
            bar.close()
        gen.close()


def _spacing_arg(values: Sequence[float] | None) -> tuple[float, float, float] | None:
    if values is None:
        return None
    if len(values) == 1:
        return (values[0],) * 3  # type: ignore[return-value]
    if len(values) == 3:
        return tuple(values)  # type: ignore[return-value]
    raise InputError(
        f"--voxel-size: expected 1 value (isotropic) or 3 values Z Y X in µm, got {len(values)}"
    )


def _check_output(path: Path, overwrite: bool, option: str = "-o") -> None:
    if path.exists() and not overwrite:
        raise InputError(f"{option}: {path} already exists; pass --overwrite to replace it")
    if not path.parent.exists():
        raise InputError(f"{option}: folder {path.parent} does not exist")


# --- commands ----------------------------------------------------------------------


def cmd_sample(args: argparse.Namespace) -> int:
    from .io import write_tiff
    from .phantom import make_phantom

    out = Path(args.outdir)
    if out.exists() and not out.is_dir():
        raise InputError(f"OUTDIR: {out} exists and is not a folder")
    targets = [out / "scan.tif", out / "truth.tif", out / "truth_instances.tif"]
    for t in targets:
        if t.exists() and not args.overwrite:
            raise InputError(f"OUTDIR: {t} already exists; pass --overwrite to replace it")
    shape = tuple(args.shape)
    ph = make_phantom(shape, seed=args.seed)  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    write_tiff(targets[0], ph.image, spacing=ph.spacing, overwrite=args.overwrite)
    write_tiff(
        targets[1],
        ph.labels,
        spacing=ph.spacing,
        class_names=ph.class_names,
        overwrite=args.overwrite,
    )
    write_tiff(targets[2], ph.instances, spacing=ph.spacing, overwrite=args.overwrite)
    print(
        f"Wrote a synthetic MicroCT scan {'x'.join(map(str, shape))} (seed {args.seed}, voxel "
        f"{ph.spacing[2]:g} µm) with {len(ph.fossils)} fossils:\n"
        f"  scan   {targets[0]}\n  truth  {targets[1]} (classes: {', '.join(ph.class_names)})\n"
        f"  fossil instances {targets[2]}"
    )
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np

    from .io import read_volume, write_tiff
    from .model import load_model
    from .normalise import check_smooth
    from .segmentation import iter_segment, iter_suggest_smoothing

    out = Path(args.output)
    _check_output(out, args.overwrite)
    auto = args.smooth is not None and str(args.smooth).strip().lower() == "auto"
    smooth = None if args.smooth is None or auto else check_smooth(args.smooth, "--smooth")
    conf_path = Path(args.confidence) if args.confidence else None
    if conf_path is not None:
        _check_output(conf_path, args.overwrite, "--confidence")
    vol = read_volume(args.scan, spacing=_spacing_arg(args.voxel_size))
    model = load_model(args.model, device=args.device)
    t0 = time.perf_counter()
    if auto:
        found = _progress(
            iter_suggest_smoothing(vol.data, model, device=args.device), quiet=args.quiet
        )
        smooth = found.sigma
        print(found.describe())
    seg = _progress(
        iter_segment(
            vol.data,
            model,
            axes=args.axes,
            tile=args.tile,
            overlap=args.overlap,
            batch_size=args.batch_size,
            device=args.device,
            confidence=conf_path is not None,
            flips=args.flips,
            smooth=smooth,
        ),
        quiet=args.quiet,
    )
    dt = time.perf_counter() - t0
    write_tiff(
        out, seg.labels, spacing=vol.spacing, class_names=seg.class_names, overwrite=args.overwrite
    )
    if conf_path is not None and seg.confidence is not None:
        write_tiff(conf_path, seg.confidence, spacing=vol.spacing, overwrite=args.overwrite)
    counts = np.bincount(seg.labels.ravel(), minlength=len(seg.class_names))
    shares = ", ".join(
        f"{n} {100 * c / seg.labels.size:.1f}%"
        for n, c in zip(seg.class_names, counts, strict=False)
    )
    nvox = seg.labels.size
    print(
        f"Segmented {'x'.join(map(str, seg.labels.shape))} voxels along {seg.axes} in {dt:.1f} s "
        f"({nvox / dt / 1e6:.2f} Mvoxel/s): {shares}\n  labels     {out}"
        + (f"\n  confidence {conf_path}" if conf_path else "")
    )
    return 0


def cmd_fossils(args: argparse.Namespace) -> int:
    from .classes import PHANTOM_CLASS_NAMES, class_index
    from .fossils import iter_extract_fossils
    from .fossils.export import iter_export_fossils
    from .io import read_labels, read_volume

    outdir = Path(args.outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"-o: {outdir} exists and is not a folder")
    labels = read_labels(args.labels, spacing=_spacing_arg(args.voxel_size))
    names = labels.class_names or PHANTOM_CLASS_NAMES
    cls = class_index(names, args.class_)
    image = None
    spacing = labels.spacing
    if args.image:
        vol = read_volume(args.image, spacing=_spacing_arg(args.voxel_size))
        if tuple(vol.data.shape) != tuple(labels.data.shape):
            raise InputError(
                f"--image: expected the labels' shape {tuple(labels.data.shape)}, got {tuple(vol.data.shape)} in {args.image}"
            )
        image = vol.load()
        if labels.spacing_source == "default" and vol.spacing_source != "default":
            spacing = vol.spacing
    mesh = None if args.mesh == "none" else args.mesh
    table = _progress(
        iter_extract_fossils(
            labels.load(),
            class_id=cls,
            spacing=spacing,
            min_voxels=args.min_voxels,
            min_volume_um3=args.min_volume,
            split=args.split,
            fill_cavities=not args.no_fill_cavities,
            image=image,
        ),
        quiet=args.quiet,
    )
    result = _progress(
        iter_export_fossils(
            table, outdir, image=image, mesh_format=mesh, crops=args.crops, overwrite=args.overwrite
        ),
        quiet=args.quiet,
    )
    n = len(table.rows)
    print(f"Found {n} {names[cls]} object{'s' if n != 1 else ''} (class {cls}) in {args.labels}:")
    if n:
        vols = sorted((r["volume_um3"] for r in table.rows), reverse=True)
        print(
            f"  volumes {vols[-1]:.4g} .. {vols[0]:.4g} µm³ (voxel {' x '.join(f'{s:g}' for s in spacing)} µm)"
        )
    print(f"  table      {outdir / 'fossils.csv'}\n  instances  {outdir / 'instances.tif'}")
    if mesh:
        print(f"  meshes     {outdir / 'meshes'} ({n} .{mesh})")
    if args.crops:
        print(f"  crops      {outdir / 'crops'} ({n} .tif)")
    del result
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if args.path == "default" or path.suffix == ".safetensors":
        from .model import describe, read_spec, resolve_model_path

        spec = read_spec(args.path)
        print(f"model {resolve_model_path(args.path)}")
        print(describe(spec))
        return 0
    from .io import volume_info

    info = volume_info(args.path)
    for key, value in info.items():
        print(f"{key:14s} {value}")
    return 0


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


def cmd_train(args: argparse.Namespace) -> int:
    import dataclasses
    import warnings

    import numpy as np
    import torch

    from .io import read_labels, read_volume
    from .model import ModelSpec, build_network, load_model, read_spec, resolve_model_path
    from .normalise import Normalisation, check_smooth, iter_presmooth
    from .training import (
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
    from .training.distributed import broadcast_object, distributed_session, launcher_env
    from .training.finetune import MIN_SLICES_FOR_VALIDATION, VAL_FRACTION

    out = Path(args.output)
    _check_output(out, args.overwrite)
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
    image, cut = _progress(iter_presmooth(vol.data, norm), quiet=quiet)
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
                    found = _progress(
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
            result = _progress(
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


# --- parser ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="microfossil", description="Find, measure and export microfossils in MicroCT scans."
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        sp.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    s = sub.add_parser("sample", help="write a synthetic MicroCT scan with ground truth")
    s.add_argument("outdir", metavar="OUTDIR")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), default=(128, 256, 256))
    common(s)
    s.set_defaults(func=cmd_sample)

    s = sub.add_parser("segment", help="segment a scan slice by slice with a U-Net")
    s.add_argument("scan", metavar="SCAN", help=".tif/.tiff file, folder of slices, or .zarr")
    s.add_argument("-o", "--output", required=True, metavar="LABELS.tif")
    s.add_argument("--model", default="default", help="'default' or a .safetensors model file")
    s.add_argument("--axes", default="z", help="z, y, x or zyx (all three fused)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    s.add_argument(
        "--tile", type=int, default=None, help="tile edge in pixels (default: the model's)"
    )
    s.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction")
    s.add_argument("--batch-size", type=int, default=4)
    s.add_argument("--confidence", metavar="CONF.tif", help="also write a confidence map (percent)")
    s.add_argument(
        "--flips",
        action="store_true",
        help="average each tile over its four flips (4x slower, a little more accurate)",
    )
    s.add_argument(
        "--voxel-size",
        type=float,
        nargs="+",
        metavar="UM",
        help="override voxel size: 1 or 3 (Z Y X) values in µm",
    )
    s.add_argument(
        "--smooth",
        default=None,
        metavar="SIGMA",
        help="3D Gaussian smoothing of the scan first, sigma in voxels, for noisy scans "
        "(e.g. 0.7; 0 = none; 'auto' = the sigma the model is most confident with on 6 "
        "slices; default: the model's own, 0 for the default model)",
    )
    common(s)
    s.set_defaults(func=cmd_segment)

    s = sub.add_parser("fossils", help="extract, measure and export each fossil")
    s.add_argument("labels", metavar="LABELS.tif")
    s.add_argument("-o", "--outdir", required=True, metavar="OUTDIR")
    s.add_argument("--image", metavar="SCAN", help="the scan, for crops and mean intensity")
    s.add_argument(
        "--class", dest="class_", default="fossil", help="class name or id (default: fossil)"
    )
    s.add_argument("--min-voxels", type=int, default=0)
    s.add_argument(
        "--min-volume", type=float, default=None, metavar="UM3", help="minimum volume in µm³"
    )
    s.add_argument("--split", action="store_true", help="split touching fossils (watershed)")
    s.add_argument("--mesh", choices=["stl", "ply", "obj", "none"], default="stl")
    s.add_argument(
        "--crops", action="store_true", help="write a cropped TIFF (image + mask) per fossil"
    )
    s.add_argument("--no-fill-cavities", action="store_true", help="do not fill enclosed chambers")
    s.add_argument("--voxel-size", type=float, nargs="+", metavar="UM")
    common(s)
    s.set_defaults(func=cmd_fossils)

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
    common(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("info", help="describe a model file or a scan")
    s.add_argument("path", metavar="MODEL|SCAN")
    s.set_defaults(func=cmd_info)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except InputError as exc:
        print(f"microfossil {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"microfossil {args.command}: cancelled; no output was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `microfossil info MODEL | head`
        sys.stderr.close()
        return 0
    except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        print(f"microfossil {args.command}: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
