"""``microfossil fossils``: extract, measure and export each fossil."""

from __future__ import annotations

import argparse
from typing import Any

from ..fossils.defaults import (
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_MIN_DIAMETER_VOXELS,
    DEFAULT_MIN_VOXELS,
    DEFAULT_SPLIT,
    confidence_note,
    size_limit_note,
)
from ._common import add_cluster_options, add_common_options, progress, spacing_arg

#: Request fields named as this command's options, for error messages.
OPTIONS = {
    "outdir": "-o",
    "image": "--image",
    "class": "--class",
    "min_voxels": "--min-voxels",
    "min_volume_um3": "--min-volume",
    "mesh_format": "--mesh",
    "voxel_size": "--voxel-size",
    "labels": "LABELS",
    "confidence": "--confidence",
    "min_confidence": "--min-confidence",
}


def add_parser(sub: Any) -> None:
    s = sub.add_parser("fossils", help="extract, measure and export each fossil")
    s.add_argument("labels", metavar="LABELS.tif|zarr")
    s.add_argument("-o", "--outdir", required=True, metavar="OUTDIR")
    s.add_argument("--image", metavar="SCAN", help="the scan, for crops and mean intensity")
    s.add_argument(
        "--class", dest="class_", default="fossil", help="class name or id (default: fossil)"
    )
    s.add_argument(
        "--min-voxels",
        type=int,
        default=None,
        metavar="N",
        help=f"drop objects with fewer voxels (default: {DEFAULT_MIN_VOXELS}, a ball "
        f"{DEFAULT_MIN_DIAMETER_VOXELS} voxels across, unless --min-volume is given; "
        "0 keeps every speck)",
    )
    s.add_argument(
        "--min-volume", type=float, default=None, metavar="UM3", help="minimum volume in µm³"
    )
    s.add_argument(
        "--confidence",
        metavar="CONF",
        help="the segmentation's confidence map (microfossil segment --confidence CONF): "
        "objects the model was unsure of are dropped",
    )
    s.add_argument(
        "--min-confidence",
        type=float,
        default=DEFAULT_MIN_CONFIDENCE,
        metavar="PCT",
        help=f"with --confidence: drop objects of a lower mean confidence (default: "
        f"{DEFAULT_MIN_CONFIDENCE:g} %%; 0 keeps every object)",
    )
    s.add_argument(
        "--split",
        action=argparse.BooleanOptionalAction,
        default=DEFAULT_SPLIT,
        help="separate touching fossils (distance-transform watershed; default: on, "
        "--no-split keeps touching fossils as one object)",
    )
    s.add_argument("--mesh", choices=["stl", "ply", "obj", "none"], default="stl")
    s.add_argument(
        "--crops", action="store_true", help="write a cropped TIFF (image + mask) per fossil"
    )
    s.add_argument("--no-fill-cavities", action="store_true", help="do not fill enclosed chambers")
    s.add_argument("--voxel-size", type=float, nargs="+", metavar="UM")
    add_cluster_options(s)
    add_common_options(s)
    s.set_defaults(func=run, options=OPTIONS)


def run(args: argparse.Namespace) -> int:
    from ..workflows.fossils import FossilsRequest, iter_fossils
    from ..workflows.fossils_cluster import FossilsClusterRequest

    by_default = args.min_voxels is None and args.min_volume is None
    if args.min_voxels is None:
        args.min_voxels = DEFAULT_MIN_VOXELS if by_default else 0
    named = _named_confidence(args) if args.confidence is None else None
    if named is not None:
        args.confidence = named
    on_cluster = args.workers is not None or args.scheduler is not None
    cluster = {"workers": args.workers, "scheduler": args.scheduler} if on_cluster else {}
    request = (FossilsClusterRequest if on_cluster else FossilsRequest)(
        labels=args.labels,
        outdir=args.outdir,
        image=args.image,
        which=args.class_,
        min_voxels=args.min_voxels,
        min_volume_um3=args.min_volume,
        split=args.split,
        fill_cavities=not args.no_fill_cavities,
        mesh_format=args.mesh,
        crops=args.crops,
        voxel_size=spacing_arg(args.voxel_size),
        overwrite=args.overwrite,
        confidence=args.confidence,
        min_confidence=args.min_confidence,
        **cluster,
    )
    result = progress(iter_fossils(request), quiet=args.quiet)
    outdir, mesh, rows = request.outdir, request.mesh_format, result.table.rows
    n = len(rows)
    print(
        f"Found {n} {result.class_name} object{'s' if n != 1 else ''} "
        f"(class {result.class_id}) in {args.labels}:"
    )
    if n:
        vols = sorted((r["volume_um3"] for r in rows), reverse=True)
        voxel = " x ".join(f"{s:g}" for s in result.spacing)
        print(f"  volumes {vols[-1]:.4g} .. {vols[0]:.4g} µm³ (voxel {voxel} µm)")
    if by_default:
        print(f"  {size_limit_note(result.spacing)}")
    dropped = result.table.dropped_unsure if args.confidence else None
    if named is not None:
        print(f"  confidence map {named}, named by the labels (segment --confidence)")
    print(f"  {confidence_note(dropped, limit=args.min_confidence)}")
    if args.split:
        print("  touching fossils separated (watershed); --no-split keeps them as one object")
    print(f"  table      {outdir / 'fossils.csv'}\n  instances  {result.export.instances}")
    if mesh:
        print(f"  meshes     {outdir / 'meshes'} ({n} .{mesh})")
    if args.crops:
        print(f"  crops      {outdir / 'crops'} ({n} .tif)")
    return 0


def _named_confidence(args: argparse.Namespace) -> Any:
    """The confidence map `segment --confidence` wrote beside these labels and named in
    them, if it is still there (and the limit is on): the default a first run uses."""
    from pathlib import Path

    from ..io import read_volume
    from ..workflows.segment_outputs import recorded_confidence

    labels = Path(args.labels)
    if args.min_confidence <= 0 or not labels.exists():
        return None  # no limit wanted; a missing file is the request's error to give
    return recorded_confidence(labels, read_volume(labels, lazy=True).metadata)
