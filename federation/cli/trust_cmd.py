"""`meshfed trust export`: the files a cluster's mesh or workloads need, on disk.

- istio: ca-cert.pem, ca-key.pem (0600), root-cert.pem, cert-chain.pem
  (GET /api/v1/clusters/C/ca?format=istio, admin token)
- linkerd: ca.crt, issuer.crt, issuer.key (0600) (GET .../ca?format=linkerd, admin token)
- spiffe: bundle.json (C's trust domain), federated-bundles.json (the others)
  (GET /api/v1/trust/bundles, public)
- pem: bundle.pem (GET /api/v1/trust/roots.pem, public)

Public files are written 0644, keys 0600 (through `trust_bundle.storage`, which
writes atomically); the output directory is created 0700 when it does not exist.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from federation.cli import args as types
from federation.cli.apiclient import Client, CliError, command, connect
from federation.cli.context import add_global_flags
from federation.cli.output import FORMATS, render
from trust_bundle import TrustError
from trust_bundle.exports import ExportFiles
from trust_bundle.spiffe_bundle import parse_bundle
from trust_bundle.storage import write_export

EXPORT_FORMATS = ("istio", "linkerd", "spiffe", "pem")
SECRET_FILES = frozenset({"ca-key.pem", "issuer.key"})


def register(sub: Any) -> None:
    p = sub.add_parser("trust", help="export trust material for meshes and workloads")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ex = actions.add_parser(
        "export", help="write a cluster's CA (istio, linkerd) or the trust bundles (spiffe, pem)"
    )
    ex.add_argument("--cluster", required=True, type=types.cluster_name, metavar="C")
    ex.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    ex.add_argument("--out", required=True, type=Path, metavar="DIR")
    ex.add_argument("-o", "--output", choices=FORMATS, default="table")
    ex.set_defaults(handler=_export)
    add_global_flags(ex, root=False)


def fetch_export(api: Client, cluster: str, fmt: str) -> ExportFiles:
    """The files of one export, checked before anything touches the disk."""
    if fmt in ("istio", "linkerd"):
        body = api.get(f"/api/v1/clusters/{cluster}/ca", format=fmt)
        files = {name: text.encode() for name, text in body["files"].items()}
    elif fmt == "pem":
        api.get(f"/api/v1/clusters/{cluster}")  # 404 for an unknown cluster, as for the others
        files = {"bundle.pem": api.text("/api/v1/trust/roots.pem").encode()}
    else:
        td = api.get(f"/api/v1/clusters/{cluster}")["trust_domain"]
        bundles: dict[str, Any] = api.get("/api/v1/trust/bundles")
        own_key = f"spiffe://{td}"
        if own_key not in bundles:
            raise CliError(f"the registry serves no bundle for trust domain {td}")
        for name, doc in bundles.items():
            try:
                parse_bundle(name.removeprefix("spiffe://"), json.dumps(doc).encode())
            except TrustError as exc:
                raise CliError(f"the registry's bundle for {name} is invalid: {exc}") from None
        others = {k: v for k, v in sorted(bundles.items()) if k != own_key}
        files = {
            "bundle.json": json.dumps(bundles[own_key], indent=2).encode() + b"\n",
            "federated-bundles.json": json.dumps(others, indent=2).encode() + b"\n",
        }
    return ExportFiles(tuple(sorted(files.items())), SECRET_FILES & files.keys())


@command
def _export(ns: argparse.Namespace) -> int:
    with connect(ns) as api:
        export = fetch_export(api, ns.cluster, ns.format)
    out: Path = ns.out
    try:
        if not out.exists():
            out.mkdir(parents=True, mode=0o700)
        written = write_export(out, export)
    except (OSError, TrustError) as exc:
        raise CliError(f"cannot write {out}: {exc}") from None
    rows = [
        {
            "file": str(path),
            "mode": f"{path.stat().st_mode & 0o777:04o}",
            "secret": path.name in export.secret,
        }
        for path in written
    ]
    if ns.output != "table":
        print(render({"cluster": ns.cluster, "format": ns.format, "files": rows}, ns.output))
        return 0
    print(f"{ns.format} trust files of cluster {ns.cluster} written to {out}:")
    for row in rows:
        note = "  (private key: keep it secret)" if row["secret"] else ""
        print(f"  {row['mode']}  {row['file']}{note}")
    return 0
