"""``microfossil pyramid``: build the multiscale pyramid napari opens a big scan with."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import progress

#: Function arguments named as this command's options, for error messages.
OPTIONS = {"out": "-o", "max_side": "--max-side", "scan": "SCAN"}


def add_parser(sub: Any) -> None:
    s = sub.add_parser(
        "pyramid",
        help="build a multiscale pyramid of a scan, so napari opens it quickly",
        description=(
            "Build an OME-Zarr multiscale pyramid of SCAN (mean of 2x2x2 blocks; mode for "
            "label volumes), cached as SCAN.pyramid.zarr beside it, or in the cache folder "
            "when that folder is not writable. An up-to-date pyramid is reused."
        ),
    )
    s.add_argument("scan", metavar="SCAN")
    s.add_argument("-o", "--out", metavar="PYRAMID.zarr", help="where to write it instead")
    s.add_argument(
        "--max-side",
        type=int,
        default=512,
        metavar="N",
        help="make levels until the largest side is at most N voxels (default: 512)",
    )
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.add_argument("--overwrite", action="store_true", help="build again even if up to date")
    s.set_defaults(func=run, options=OPTIONS)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..io.pyramid import iter_build_pyramid

    if args.max_side < 1:
        raise InputError(f"--max-side: expected a positive number of voxels; got {args.max_side}")
    where = progress(
        iter_build_pyramid(
            args.scan, out=args.out, max_side=args.max_side, overwrite=args.overwrite
        ),
        quiet=args.quiet,
    )
    print(where)
    return 0
