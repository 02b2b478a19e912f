"""``microfossil suggest``: the next slices to correct, by the Review panel's rule."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import progress


def add_parser(sub: Any) -> None:
    s = sub.add_parser(
        "suggest",
        help="print the next slices to correct: the least confident unreviewed ones",
        description="Print the slices most worth correcting next (least mean confidence, "
        "spread out), e.g. 'z:34,62,88', ready for `train --slices`. The Review panel's "
        "'Next slice to review' uses the same rule.",
    )
    s.add_argument("confidence", metavar="CONFIDENCE", help="from `segment --confidence`")
    s.add_argument(
        "--reviewed", metavar="SLICES", help="slices already corrected, e.g. 'z:20,48,76'"
    )
    s.add_argument("-n", type=int, default=3, help="how many slices (default 3)")
    s.add_argument(
        "--axis", choices=("z", "y", "x"), help="default: the axis of --reviewed, else z"
    )
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar or explanation")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..workflows.suggest import SuggestRequest, iter_suggest

    request = SuggestRequest(args.confidence, reviewed=args.reviewed, n=args.n, axis=args.axis)
    result = progress(iter_suggest(request), quiet=args.quiet)
    if not result.slices:
        print(f"every {result.axis}-slice is reviewed; nothing to suggest", file=sys.stderr)
        return 0
    print(result.spec)
    if not args.quiet:
        scores = ", ".join(f"{s:.0f}" for s in result.scores)
        print(
            f"mean confidence {scores}; {len(result.reviewed)} of {result.n_slices} "
            f"{result.axis}-slices reviewed before",
            file=sys.stderr,
        )
    return 0
