"""``microfossil sample``: a synthetic MicroCT scan with its ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import InputError
from ._common import add_common_options


def add_parser(sub: Any) -> None:
    s = sub.add_parser("sample", help="write a synthetic MicroCT scan with ground truth")
    s.add_argument("outdir", metavar="OUTDIR")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), default=(128, 256, 256))
    add_common_options(s)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import write_tiff
    from ..phantom import make_phantom

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
