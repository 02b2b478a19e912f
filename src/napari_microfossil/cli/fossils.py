"""``microfossil fossils``: extract, measure and export each fossil."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import InputError
from ._common import add_common_options, progress, spacing_arg


def add_parser(sub: Any) -> None:
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
    add_common_options(s)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..classes import PHANTOM_CLASS_NAMES, class_index
    from ..fossils import iter_extract_fossils
    from ..fossils.export import iter_export_fossils
    from ..io import read_labels, read_volume

    outdir = Path(args.outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"-o: {outdir} exists and is not a folder")
    labels = read_labels(args.labels, spacing=spacing_arg(args.voxel_size))
    names = labels.class_names or PHANTOM_CLASS_NAMES
    cls = class_index(names, args.class_)
    image = None
    spacing = labels.spacing
    if args.image:
        vol = read_volume(args.image, spacing=spacing_arg(args.voxel_size))
        if tuple(vol.data.shape) != tuple(labels.data.shape):
            raise InputError(
                f"--image: expected the labels' shape {tuple(labels.data.shape)}, got {tuple(vol.data.shape)} in {args.image}"
            )
        image = vol.load()
        if labels.spacing_source == "default" and vol.spacing_source != "default":
            spacing = vol.spacing
    mesh = None if args.mesh == "none" else args.mesh
    table = progress(
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
    result = progress(
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
