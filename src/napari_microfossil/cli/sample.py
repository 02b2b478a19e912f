"""``microfossil sample``: a synthetic MicroCT scan with its ground truth."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_common_options, progress


def add_parser(sub: Any) -> None:
    s = sub.add_parser("sample", help="write a synthetic MicroCT scan with ground truth")
    s.add_argument("outdir", metavar="OUTDIR")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), default=(128, 256, 256))
    add_common_options(s)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..workflows.sample import SampleRequest, iter_write_sample

    request = SampleRequest(
        args.outdir, shape=tuple(args.shape), seed=args.seed, overwrite=args.overwrite
    )
    done = progress(iter_write_sample(request), quiet=True)
    print(
        f"Wrote a synthetic MicroCT scan {'x'.join(map(str, done.shape))} (seed {args.seed}, "
        f"voxel {done.spacing[2]:g} µm) with {done.n_fossils} fossils:\n"
        f"  scan   {done.scan}\n  truth  {done.truth} (classes: {', '.join(done.class_names)})\n"
        f"  fossil instances {done.instances}"
    )
    return 0
