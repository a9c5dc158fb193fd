"""Command-line entry point: ``run(argv) -> int`` (wired into ``meshfed gateway``).

Why it exists: argument parsing and process lifetime (signals, exit codes) are
the outermost shell; everything below it is testable without a process.
Exit codes: 0 after a clean stop, 2 for bad arguments (a malformed join token
included) or a bad route file (argparse's convention), 1 if the listeners cannot be
opened or the registry refuses the join token -- as ``meshfed agent``.

Two ways to configure a gateway, mutually exclusive: ``--routes FILE`` (static)
or ``--registry HOST:PORT`` with a join token, ``--trust-domain`` and
``--registry-ca`` (:mod:`eastwest_gateway.registry_mode`). The join token is read,
like the agent's (:mod:`federation.client.cli_args`), from ``--join-token-file``,
``--join-token`` or ``$MESHFED_JOIN_TOKEN``; only the flag shows in ``ps``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import math
import os
import re
import sys
from pathlib import Path

from eastwest_gateway.errors import ConfigError
from eastwest_gateway.gateway import Gateway
from eastwest_gateway.registry_mode import JoinRefused, RegistryOptions
from eastwest_gateway.registry_mode import serve as serve_registry
from eastwest_gateway.routefile import MAX_PORT, HostPort, Locality, parse_host_port
from eastwest_gateway.settings import GatewaySettings
from federation.client import cli_args
from federation.errors import FederationError, ValidationError
from federation.model import validation

DEFAULT_LISTEN = "0.0.0.0:15443"  # Istio's east-west (AUTO_PASSTHROUGH) port
DEFAULT_ADMIN = "127.0.0.1:15021"  # Istio's gateway status port
EXIT_USAGE = 2
MAX_TIMEOUT = 300.0


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


def _destination(text: str) -> str:
    try:
        parse_host_port(text, "address")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"invalid HOST:PORT {text!r}") from exc
    return text


def _trust_domain(text: str) -> str:
    try:
        return validation.trust_domain("trust-domain", text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(f"invalid trust domain {text!r}") from exc


def _label(text: str) -> str:
    try:
        return validation.label_value("locality", text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(f"invalid region/zone {text!r}") from exc


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid IP address {text!r}") from exc


def _offset(text: str) -> int:
    if not text.lstrip("-").isdigit() or not -MAX_PORT < int(text) < MAX_PORT:
        raise argparse.ArgumentTypeError(f"invalid port offset {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_TIMEOUT:  # also refuses nan
        raise argparse.ArgumentTypeError(f"invalid seconds {text!r} (0 < s <= {MAX_TIMEOUT:g})")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshfed gateway", description="meshfed east-west gateway")
    p.add_argument("--cluster", required=True, type=_cluster, help="this cluster's name")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--routes", type=Path, help="static route file (YAML)")
    source.add_argument(
        "--registry",
        type=cli_args.registry_address,
        metavar="HOST:PORT",
        help=cli_args.REGISTRY_HELP + " (mTLS)",
    )
    reg = p.add_argument_group("registry mode (--registry)")
    reg.add_argument("--join-token", metavar="TOKEN", help=cli_args.JOIN_TOKEN_HELP)
    reg.add_argument("--join-token-file", metavar="FILE", help=cli_args.JOIN_TOKEN_FILE_HELP)
    reg.add_argument("--trust-domain", type=_trust_domain, help="this cluster's trust domain")
    reg.add_argument(
        "--registry-ca", type=Path, help="PEM roots that verify the registry (federation roots)"
    )
    reg.add_argument(
        "--join-address", type=_destination, help="Join port HOST:PORT (default: registry port+1)"
    )
    reg.add_argument(
        "--state-dir", type=Path, help="keeps the SVID and the last registry view across restarts"
    )
    reg.add_argument(
        "--local-routes",
        type=Path,
        help="YAML with ingress routes for this cluster's exports and its locality",
    )
    reg.add_argument("--region", type=_label, help="this cluster's region (egress ranking)")
    reg.add_argument("--zone", type=_label, help="this cluster's zone (egress ranking)")
    reg.add_argument(
        "--egress-address",
        type=_ip,
        default="127.0.0.1",
        help="IP the egress listeners bind (one per imported service port)",
    )
    reg.add_argument(
        "--egress-port-offset",
        type=_offset,
        default=0,
        help="egress listener port = service port + offset",
    )
    p.add_argument(
        "--listen",
        type=_host_port,
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"ingress address (default {DEFAULT_LISTEN})",
    )
    p.add_argument(
        "--admin",
        type=_host_port,
        default=None,
        metavar="HOST:PORT",
        help="admin HTTP address: /ready, /metrics, /config (default: none, no admin"
        f" endpoint; the manifests use 0.0.0.0:{DEFAULT_ADMIN.rpartition(':')[2]})",
    )
    p.add_argument(
        "--relay",
        choices=["auto", "splice", "asyncio"],
        default="auto",
        help="byte mover for passthrough (auto: os.splice where available)",
    )
    p.add_argument(
        "--peer-connect-timeout",
        type=_seconds,
        default=GatewaySettings().peer_connect_timeout,
        metavar="SECONDS",
        help="egress TCP connect (and probe) to a peer gateway before the next cluster is"
        " tried (default: %(default)s; docs/gateway.md)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def run(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the message naming the value
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    registry_only = [
        name
        for name in (
            "join_token",
            "join_token_file",
            "trust_domain",
            "registry_ca",
            "join_address",
            "state_dir",
            "local_routes",
            "region",
            "zone",
        )
        if getattr(args, name) is not None
    ]
    if args.routes is not None and registry_only:
        flag = "--" + registry_only[0].replace("_", "-")
        return _usage(parser, f"argument {flag}: only with --registry, not with --routes")
    token: cli_args.JoinToken | None = None
    if args.registry is not None:
        try:
            token = cli_args.join_token(args.join_token, args.join_token_file, os.environ)
        except cli_args.JoinTokenError as exc:
            return _usage(parser, str(exc))
        for name in ("trust_domain", "registry_ca"):
            if getattr(args, name) is None:
                flag = "--" + name.replace("_", "-")
                return _usage(parser, f"argument {flag}: required with --registry")
        if (args.region is None) != (args.zone is None):
            return _usage(parser, "arguments --region and --zone: give both or neither")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = GatewaySettings(relay=args.relay, peer_connect_timeout=args.peer_connect_timeout)
        if token is not None:
            options = _registry_options(args, token.value, settings)
            return asyncio.run(serve_registry(options, args.listen, args.admin))
        return asyncio.run(_serve(args.cluster, args.routes, args.listen, args.admin, settings))
    except JoinRefused as exc:
        assert token is not None
        cause = exc.__cause__
        reason = cause if isinstance(cause, FederationError) else FederationError(str(exc))
        print(
            f"meshfed gateway: error: {cli_args.join_refused(token.source, reason)}",
            file=sys.stderr,
        )
        return 1
    except ConfigError as exc:
        print(f"meshfed gateway: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"meshfed gateway: error: cannot listen: {exc}", file=sys.stderr)
        return 1


def _usage(parser: argparse.ArgumentParser, message: str) -> int:
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _registry_options(
    args: argparse.Namespace, token: str, settings: GatewaySettings
) -> RegistryOptions:
    try:
        ca = args.registry_ca.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--registry-ca: cannot read {args.registry_ca}: {exc.strerror}") from exc
    if b"-----BEGIN CERTIFICATE-----" not in ca:
        raise ConfigError(f"--registry-ca: {args.registry_ca} holds no PEM certificate")
    return RegistryOptions(
        cluster=args.cluster,
        registry=args.registry,
        join_token=token,
        trust_domain=args.trust_domain,
        registry_ca=ca,
        join_address=args.join_address or "",
        state_dir=args.state_dir,
        local_routes=args.local_routes,
        locality=Locality(args.region, args.zone) if args.region is not None else None,
        egress_host=args.egress_address,
        egress_port_offset=args.egress_port_offset,
        settings=settings,
        report_interval=settings.probe_interval,
    )


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
