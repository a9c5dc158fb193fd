"""`meshfed serve`: run the registry (dashboard REST API and gRPC control plane)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from federation.cli import args as types
from federation.cli.store_cmd import default_data_dir, default_store_url, store_url
from federation.errors import FederationError
from trust_bundle import TrustError

if TYPE_CHECKING:
    from federation.registry.auth import Bearer

DEFAULT_API = "127.0.0.1:9470"  # issue 4
DEFAULT_GRPC = "127.0.0.1:9471"  # issue 4


def host_port(text: str) -> tuple[str, int]:
    """argparse type for HOST:PORT ([v6]:PORT too); bad values are usage errors."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the registry: REST API and gRPC control plane")
    p.add_argument("--store", type=store_url, default=None, help="default: SQLite in the data dir")
    p.add_argument(
        "--data-dir", type=types.directory, default=None, help="default: $MESHFED_DATA_DIR"
    )
    p.add_argument("--api", type=host_port, default=host_port(DEFAULT_API), metavar="HOST:PORT")
    p.add_argument(
        "--grpc",
        type=host_port,
        default=host_port(DEFAULT_GRPC),
        metavar="HOST:PORT",
        help="gRPC control plane (mTLS); the Join service listens on PORT+1",
    )
    p.add_argument(
        "--server-name",
        action="append",
        default=[],
        metavar="NAME",
        help="a DNS name or IP agents and gateways dial (e.g. a Service or load balancer); "
        "put in the control plane's certificate (repeatable)",
    )
    p.add_argument(
        "--root-ca",
        type=Path,
        default=None,
        metavar="DIR",
        help="adopt the federation root in DIR (root.pem, root-key.pem; made by "
        "`meshfed install --store etcd`) on first start; refuses a store with another root",
    )
    p.add_argument(
        "--admin-token-file",
        type=admin_token_file,
        default=None,
        metavar="FILE",
        help="an API token <name>.<secret> (`meshfed install`'s Secret "
        "meshfed-admin-token) stored as an admin token at every start, instead of "
        "writing <data-dir>/admin.token; replicas given the same file agree",
    )
    p.add_argument(
        "--lease-ttl",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="how long a vanished agent's endpoints outlive its stream (default 15)",
    )
    p.set_defaults(handler=_serve)


def admin_token_file(text: str) -> Bearer:
    """argparse type: the token in FILE; unreadable or malformed files are usage errors
    that name the file, never its content."""
    from federation.registry.auth import parse_bearer  # heavy imports only for `serve`

    try:
        content = Path(text).read_text(encoding="utf-8")
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise argparse.ArgumentTypeError(f"{text} is not a text file") from None
    try:
        return parse_bearer(content)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text} {exc}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 1 <= value <= 3600:  # below 1 s keepalives would flood; above 1 h endpoints linger
        raise argparse.ArgumentTypeError(f"{text!r} is outside 1-3600 seconds")
    return value


def _serve(args: argparse.Namespace) -> int:
    from federation.registry.serve import ServeConfig, run  # heavy imports only for `serve`

    data_dir = args.data_dir
    if data_dir is None:
        data_dir = default_data_dir()
        try:
            types.directory(str(data_dir))
        except argparse.ArgumentTypeError as exc:
            print(f"meshfed serve: error: data dir {exc}", file=sys.stderr)
            return 2
    config = ServeConfig(
        store_url=args.store or default_store_url(data_dir),
        data_dir=data_dir,
        api_host=args.api[0],
        api_port=args.api[1],
        grpc_host=args.grpc[0],
        grpc_port=args.grpc[1],
        server_names=tuple(args.server_name),
        root_ca=args.root_ca,
        admin_token=args.admin_token_file,
        **({"lease_ttl": args.lease_ttl} if args.lease_ttl is not None else {}),
    )
    try:
        return run(config)
    except (FederationError, TrustError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # an unwritable data dir, a port in use: one line, not a traceback
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
