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
    object_check_note,
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
        default=None,
        metavar="PCT",
        help=f"with --confidence: drop objects of a lower mean confidence (default: "
        f"{DEFAULT_MIN_CONFIDENCE:g} %%, or 0 when the object check runs; 0 keeps every object)",
    )
    s.add_argument(
        "--object-check",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="drop objects a 3D network judges look-alikes of fossils (grain clusters, "
        "ooids); needs the scan and the confidence map (default: on for the fossil class when "
        "both are known, from --image and --confidence or named by labels that segment "
        "--confidence wrote)",
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
    on_cluster = args.workers is not None or args.scheduler is not None
    named, named_scan = _named_inputs(args, scan=args.object_check is not False)
    check = args.object_check
    if check is None:  # on by default when it can run, for fossils (what it was trained on)
        check = str(args.class_).strip() == "fossil"
        check = check and (args.confidence or named) is not None
        check = check and (args.image or named_scan) is not None
    if check and args.image is None:
        args.image = named_scan
    if args.min_confidence is None:
        args.min_confidence = 0.0 if check else DEFAULT_MIN_CONFIDENCE
    if named is not None and (args.min_confidence > 0 or check):
        args.confidence = named
    else:
        named = None
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
        **({"object_check": True} if check else {}),
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
    if not check or args.min_confidence > 0:
        print(f"  {confidence_note(dropped, limit=args.min_confidence)}")
    if check:
        table = result.table
        print(f"  {object_check_note(table.dropped_lookalikes, split=table.split_by_check)}")
    if named_scan is not None and args.image == named_scan:
        print(f"  scan {named_scan}, named by the labels (segment)")
    if args.split:
        print("  touching fossils separated (watershed); --no-split keeps them as one object")
    print(f"  table      {outdir / 'fossils.csv'}\n  instances  {result.export.instances}")
    if mesh:
        print(f"  meshes     {outdir / 'meshes'} ({n} .{mesh})")
    if args.crops:
        print(f"  crops      {outdir / 'crops'} ({n} .tif)")
    return 0


def _named_inputs(args: argparse.Namespace, *, scan: bool) -> tuple[Any, Any]:
    """The confidence map and (with `scan`) the scan `segment` named in these labels,
    when not given and still there: what a first run uses without a flag."""
    from pathlib import Path

    from ..workflows.segment_outputs import CONFIDENCE_KEY, SCAN_KEY, inputs_named_by

    labels = Path(args.labels)
    want_scan = scan and args.image is None
    if not labels.exists() or (args.confidence is not None and not want_scan):
        return None, None  # a missing file is the request's error to give
    named = inputs_named_by(labels)
    conf = named.get(CONFIDENCE_KEY) if args.confidence is None else None
    return conf, named.get(SCAN_KEY) if want_scan else None
