"""The `meshfed` command line: the composition root that may import every package.

Exit codes, as kubectl/istioctl users expect: 0 success, 1 a check or operation
failed, 2 bad usage (argparse names the bad value).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from federation.cli import store_cmd

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshfed",
        description="Federate service meshes across clusters and clouds.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    store_cmd.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130  # 128 + SIGINT, the shell convention
    return code


if __name__ == "__main__":
    sys.exit(main())
