"""Command-line entry point: ``run(argv) -> int`` (wired into ``meshfed gateway``).

Why it exists: argument parsing and process lifetime (signals, exit codes) are
the outermost shell; everything below it is testable without a process.
Exit codes: 0 after a clean stop, 2 for bad arguments or a bad route file
(argparse's convention), 1 if the listeners cannot be opened.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from pathlib import Path

from eastwest_gateway.errors import ConfigError
from eastwest_gateway.gateway import Gateway
from eastwest_gateway.routefile import HostPort, parse_host_port
from eastwest_gateway.settings import GatewaySettings

DEFAULT_LISTEN = "0.0.0.0:15443"  # Istio's east-west (AUTO_PASSTHROUGH) port
DEFAULT_ADMIN = "127.0.0.1:15021"  # Istio's gateway status port
EXIT_USAGE = 2


def _host_port(text: str) -> HostPort:
    try:
        return parse_host_port(text, "address", allow_port_zero=True)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"invalid HOST:PORT {text!r}") from exc


def _cluster(text: str) -> str:
    # DESIGN.md: a cluster name is an RFC 1123 label.
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", text):
        raise argparse.ArgumentTypeError(f"invalid cluster name {text!r} (RFC 1123 label)")
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshfed gateway", description="meshfed east-west gateway")
    p.add_argument("--cluster", required=True, type=_cluster, help="this cluster's name")
    p.add_argument("--routes", required=True, type=Path, help="static route file (YAML)")
    p.add_argument("--listen", type=_host_port, default=DEFAULT_LISTEN, help="ingress address")
    p.add_argument("--admin", type=_host_port, default=None, help="admin HTTP address")
    p.add_argument(
        "--relay",
        choices=["auto", "splice", "asyncio"],
        default="auto",
        help="byte mover for passthrough (auto: os.splice where available)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def run(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the message naming the value
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = GatewaySettings(relay=args.relay)
        return asyncio.run(_serve(args.cluster, args.routes, args.listen, args.admin, settings))
    except ConfigError as exc:
        print(f"meshfed gateway: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"meshfed gateway: error: cannot listen: {exc}", file=sys.stderr)
        return 1


async def _serve(
    cluster: str,
    routes: Path,
    listen: HostPort,
    admin: HostPort | None,
    settings: GatewaySettings,
) -> int:
    gateway = Gateway(cluster, routes, settings)
    await gateway.start(listen, admin)
    gateway.install_signal_handlers()
    await gateway.wait_stopped()
    await gateway.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
