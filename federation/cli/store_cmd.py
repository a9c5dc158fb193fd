"""`meshfed store check|status`: look at and verify the registry's store."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from federation.cli.checks import CheckResult, run_checks
from federation.cli.output import FORMATS, render
from federation.errors import BadStoreURL, FederationError
from federation.model import RECORD_KINDS
from federation.store import open_backend, url_scheme
from federation.store.typed import ROOT

PASS, FAIL = "\u221a", "\u00d7"  # the marks `linkerd check` prints


def default_data_dir() -> Path:
    if env := os.environ.get("MESHFED_DATA_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "meshfed"


def default_store_url(data_dir: Path | None = None) -> str:
    if env := os.environ.get("MESHFED_STORE"):
        return env
    return f"sqlite:///{(data_dir or default_data_dir()) / 'registry.db'}"


def register(sub: Any) -> None:
    store = sub.add_parser("store", help="inspect and verify the registry's store")
    actions = store.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, handler, helptext in (
        ("check", _check, "verify the store works (pass/fail per property)"),
        ("status", _status, "show the store's revision and record counts"),
    ):
        p = actions.add_parser(name, help=helptext)
        p.add_argument(
            "--store",
            type=store_url,
            default=None,
            help="store URL: sqlite:///F, postgresql://..., etcd://h:p[,h:p] "
            "(default: $MESHFED_STORE or SQLite in the data dir)",
        )
        p.add_argument("--data-dir", type=Path, default=None, help="default: $MESHFED_DATA_DIR")
        if name == "status":
            p.add_argument("-o", "--output", choices=FORMATS, default="table")
        p.set_defaults(handler=handler)


def store_url(text: str) -> str:
    """argparse type: reject an unknown store URL scheme as bad usage (exit 2)."""
    try:
        url_scheme(text)
    except BadStoreURL as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _url(args: argparse.Namespace) -> str:
    return str(args.store or default_store_url(args.data_dir))


def _check(args: argparse.Namespace) -> int:
    url = _url(args)
    print(f"checking store {_safe(url)}")

    def report(result: CheckResult) -> None:
        mark = PASS if result.ok else FAIL
        detail = f" ({result.detail})" if result.detail else ""
        print(f"{mark} {result.name}{detail}", flush=True)

    ok = asyncio.run(run_checks(url, report))
    print("Status check results are " + (PASS if ok else FAIL))
    return 0 if ok else 1


def _status(args: argparse.Namespace) -> int:
    url = _url(args)
    try:
        data = asyncio.run(_gather_status(url))
    except FederationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(render(data, args.output))
    return 0


async def _gather_status(url: str) -> dict[str, Any]:
    backend = await open_backend(url)
    try:
        counts = {}
        for kind in RECORD_KINDS:
            items, revision = await backend.list(f"{ROOT}{kind.KIND}/")
            counts[kind.KIND] = len(items)
        return {"store": _safe(url), "revision": revision, **counts}
    finally:
        await backend.close()


def _safe(url: str) -> str:
    """The URL with any password masked, for printing."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        user = creds.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{host}"
    return url
