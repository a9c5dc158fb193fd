"""The `meshfed` command line: the composition root that may import every package.

Exit codes, as kubectl/istioctl users expect: 0 success, 1 a check or operation
failed, 2 bad usage (argparse names the bad value).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from federation.cli import (
    check_cmd,
    cluster_cmd,
    context,
    demo,
    install_cmd,
    link_cmd,
    serve_cmd,
    status_cmd,
    store_cmd,
    trust_cmd,
)
from federation.cli.context import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what git and Go tools return when the reader left

# Components with their own argument parsers: `meshfed <name> ...` hands the rest of
# the command line to `<module>.run(argv)`. Imported lazily so `meshfed store`
# never pays for the data plane's imports.
DELEGATED: dict[str, tuple[str, str]] = {
    "gateway": ("eastwest_gateway.main", "run the east-west gateway of one cluster"),
    "agent": ("discovery_sync.main", "run the sync agent of one cluster (exports, imports, DNS)"),
    "dns": ("discovery_sync.dns_main", "serve clusterset.local DNS from an imports file"),
}


def _delegate(name: str) -> Callable[[list[str]], int]:
    module = importlib.import_module(DELEGATED[name][0])
    run: Callable[[list[str]], int] = module.run
    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshfed",
        description="Federate service meshes across clusters and clouds.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    store_cmd.register(sub)
    serve_cmd.register(sub)
    context.add_global_flags(parser, root=True)
    context.register(sub)
    cluster_cmd.register(sub)
    link_cmd.register(sub)
    check_cmd.register(sub)
    status_cmd.register(sub)
    trust_cmd.register(sub)
    demo.register(sub)
    install_cmd.register(sub)
    for name, (_, helptext) in DELEGATED.items():
        sub.add_parser(name, help=helptext, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        return _delegate(argv[0])(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # inside the try: a reader gone by now is a broken pipe too
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130  # 128 + SIGINT, the shell convention
    except ConfigError as exc:  # commands outside `apiclient.command` (meshfed config ...)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, context.UsageError) else EXIT_FAILED
    except BrokenPipeError:
        # `meshfed ... | head -1`: the reader left. Point stdout at devnull so the
        # interpreter's final flush does not fail again, and exit as SIGPIPE would
        # (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
