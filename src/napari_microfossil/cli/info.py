"""``microfossil info``: describe a model file or a scan."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    s = sub.add_parser("info", help="describe a model file or a scan")
    s.add_argument("path", metavar="MODEL|SCAN")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if args.path == "default" or path.suffix == ".safetensors":
        from ..model import describe, read_spec, resolve_model_path

        spec = read_spec(args.path)
        from ..workflows.train import rounds_report

        print(f"model {resolve_model_path(args.path)}")
        print(describe(spec))
        for line in rounds_report(spec):
            print(f"correction {line}")
        return 0
    from ..io import volume_info

    info = volume_info(args.path)
    for key, value in info.items():
        print(f"{key:14s} {value}")
    return 0
