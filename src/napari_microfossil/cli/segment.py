"""``microfossil segment``: label every voxel of a scan."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import add_cluster_options, add_common_options, progress, spacing_arg


def add_parser(sub: Any) -> None:
    s = sub.add_parser("segment", help="segment a scan slice by slice with a U-Net")
    s.add_argument("scan", metavar="SCAN", help=".tif/.tiff file, folder of slices, or .zarr")
    s.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="LABELS.tif|LABELS.zarr",
        help="labels to write: a TIFF, or a .zarr store written slab by slab (resumable)",
    )
    s.add_argument("--model", default="default", help="'default' or a .safetensors model file")
    s.add_argument("--axes", default="z", help="z, y, x or zyx (all three fused)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    s.add_argument(
        "--tile", type=int, default=None, help="tile edge in pixels (default: the model's)"
    )
    s.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction")
    s.add_argument("--batch-size", type=int, default=4)
    s.add_argument(
        "--confidence",
        metavar="CONF.tif|CONF.zarr",
        help="also write a confidence map (percent)",
    )
    s.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run into its incomplete .zarr outputs "
        "(same scan, model and options); only the missing slabs are segmented",
    )
    s.add_argument(
        "--keep",
        metavar="CORRECTED",
        help="labels you corrected (TIFF or .zarr): the --keep-slices planes are copied "
        "from it into the output as they are",
    )
    s.add_argument(
        "--keep-slices",
        metavar="SLICES",
        help="the corrected planes to keep, e.g. 'z:20,48,76' (any axis: 'z:20;y:5')",
    )
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
    add_cluster_options(s)
    add_common_options(s)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..normalise import check_smooth
    from ..workflows.segment import SegmentOptions, SegmentRequest, iter_segment_scan

    smooth = args.smooth
    if smooth is not None and str(smooth).strip().lower() != "auto":
        smooth = check_smooth(smooth, "--smooth")  # parse the text; the request checks the rest
    request = SegmentRequest(
        scan=Path(args.scan),
        output=Path(args.output),
        confidence=Path(args.confidence) if args.confidence else None,
        model=args.model,
        options=SegmentOptions(
            axes=args.axes,
            tile=args.tile,
            overlap=args.overlap,
            batch_size=args.batch_size,
            device=args.device,
            flips=args.flips,
            smooth=smooth,
        ),
        voxel_size=spacing_arg(args.voxel_size),
        overwrite=args.overwrite,
        resume=args.resume,
        keep=Path(args.keep) if args.keep else None,
        keep_slices=args.keep_slices,
        workers=args.workers,
        scheduler=args.scheduler,
    )
    result = progress(iter_segment_scan(request), quiet=args.quiet)
    if result.smoothing is not None:
        print(result.smoothing.describe())
    dt = result.seconds
    shares = ", ".join(f"{name} {100 * f:.1f}%" for name, f in result.shares.items())
    print(
        f"Segmented {'x'.join(map(str, result.shape))} voxels along {result.axes} in {dt:.1f} s "
        f"({result.voxels / dt / 1e6:.2f} Mvoxel/s): {shares}\n  labels     {result.labels_path}"
        + (f"\n  confidence {result.confidence_path}" if result.confidence_path else "")
        + (f"\n  kept       {_spec(request.keep_slices)} of {request.keep}" if request.keep else "")
    )
    return 0


def _spec(slices: dict[str, list[int]]) -> str:
    return ";".join(f"{a}:{','.join(map(str, v))}" for a, v in slices.items())
