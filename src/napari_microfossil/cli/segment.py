"""``microfossil segment``: label every voxel of a scan."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ._common import add_common_options, check_output, progress, spacing_arg


def add_parser(sub: Any) -> None:
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
    add_common_options(s)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io import read_volume, write_tiff
    from ..model import load_model
    from ..normalise import check_smooth
    from ..segmentation import iter_segment, iter_suggest_smoothing

    out = Path(args.output)
    check_output(out, args.overwrite)
    auto = args.smooth is not None and str(args.smooth).strip().lower() == "auto"
    smooth = None if args.smooth is None or auto else check_smooth(args.smooth, "--smooth")
    conf_path = Path(args.confidence) if args.confidence else None
    if conf_path is not None:
        check_output(conf_path, args.overwrite, "--confidence")
    vol = read_volume(args.scan, spacing=spacing_arg(args.voxel_size))
    model = load_model(args.model, device=args.device)
    t0 = time.perf_counter()
    if auto:
        found = progress(
            iter_suggest_smoothing(vol.data, model, device=args.device), quiet=args.quiet
        )
        smooth = found.sigma
        print(found.describe())
    seg = progress(
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
