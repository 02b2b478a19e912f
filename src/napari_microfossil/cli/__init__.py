"""The ``microfossil`` command line: the same engine as the napari plugin, headless.

Every user mistake ends in one line on stderr naming the file or option, and exit code
2; nothing half-written is left behind (all writes are atomic).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import InputError, os_error_line
from . import fossils, info, pyramid, sample, segment, suggest, train
from ._common import Parser, in_cli_terms, plain_warnings

__all__ = ["build_parser", "main"]


def build_parser() -> Parser:
    p = Parser(
        prog="microfossil", description="Find, measure and export microfossils in MicroCT scans."
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in (sample, segment, fossils, train, suggest, info, pyramid):
        command.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with plain_warnings(args.command, verbose=args.verbose):
            return int(args.func(args))
    except InputError as exc:
        message = in_cli_terms(str(exc), getattr(args, "options", {}))
        print(f"microfossil {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"microfossil {args.command}: cancelled; no output was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `microfossil info MODEL | head`
        sys.stderr.close()
        return 0
    except OSError as exc:
        # A full disk, an unwritable folder, a file gone: the user's machine, not a bug.
        # The writes are atomic, so nothing half-written is left under the user's name.
        print(f"microfossil {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
