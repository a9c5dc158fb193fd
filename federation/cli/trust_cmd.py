"""`meshfed trust export | rotate | rotation`: trust files on disk, and the root rotation.

`rotate` runs one step of the staged root rotation (docs/trust.md, runbook) through
POST /api/v1/trust/rotation (admin token): the next one by default, or `--stage`;
`--wait` first waits, with progress, until the step's time condition holds
(propagation: 3 x refresh hint after prepare; retire: one SVID lifetime after
activate). `rotation` shows GET /api/v1/trust/rotation (any token).

Export formats:

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
import re
import sys
import time
from pathlib import Path
from typing import Any

from federation.cli import args as types
from federation.cli.apiclient import ApiError, Client, CliError, command, connect
from federation.cli.context import add_global_flags
from federation.cli.output import FORMATS, render, table
from federation.cli.ui import FAIL, PASS, WARN, human_times, progress, rfc3339
from trust_bundle import TrustError
from trust_bundle.exports import ExportFiles
from trust_bundle.spiffe_bundle import parse_bundle
from trust_bundle.storage import write_export

EXPORT_FORMATS = ("istio", "linkerd", "spiffe", "pem")
SECRET_FILES = frozenset({"ca-key.pem", "issuer.key"})
ROTATION = "/api/v1/trust/rotation"
STAGES = ("prepare", "activate", "retire", "abort")
# The checks that only time fixes: what `rotate --wait` waits for.
TIMED_CHECKS = frozenset({"propagation complete", "renewal window since activate elapsed"})
POLL_SECONDS = 5.0  # at most this long between status polls while waiting


def register(sub: Any) -> None:
    p = sub.add_parser("trust", help="export trust material for meshes and workloads")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ex = actions.add_parser(
        "export", help="write a cluster's CA (istio, linkerd) or the trust bundles (spiffe, pem)"
    )
    ex.add_argument("--cluster", required=True, type=types.cluster_name, metavar="C")
    ex.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    ex.add_argument("--out", required=True, type=types.directory, metavar="DIR")
    ex.add_argument("-o", "--output", choices=FORMATS, default="table")
    ex.set_defaults(handler=_export)
    add_global_flags(ex, root=False)

    ro = actions.add_parser(
        "rotate", help="run the next step of the federation root rotation (or --stage)"
    )
    ro.add_argument(
        "--stage",
        choices=STAGES,
        help="the step to run (default: the next one: prepare, activate or retire)",
    )
    ro.add_argument(
        "--wait",
        action="store_true",
        help="first wait, showing progress, until the step's waiting time has passed",
    )
    ro.add_argument(
        "--timeout",
        type=_duration,
        default=None,
        metavar="DURATION",
        help="with --wait: give up after DURATION (e.g. 20m, 1h; default: no limit)",
    )
    ro.add_argument(
        "--force",
        action="store_true",
        help="activate before propagation completes / retire before one SVID lifetime "
        "after activate (never skips retire's intermediate check)",
    )
    ro.add_argument("-o", "--output", choices=FORMATS, default="table")
    ro.set_defaults(handler=_rotate)
    add_global_flags(ro, root=False)

    st = actions.add_parser("rotation", help="show where the root rotation stands")
    st.add_argument("-o", "--output", choices=FORMATS, default="table")
    st.set_defaults(handler=_rotation)
    add_global_flags(st, root=False)


def _duration(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h)?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 20m or 1h")
    return float(m.group(1)) * {"s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2) or "s"]


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


# -- root rotation --------------------------------------------------------------------


def _short(root: dict[str, Any] | None) -> str:
    if root is None:
        return "<none>"
    return f"{root['fingerprint_sha256'][:16]}  expires {root['not_after'][:10]}"


def check_lines(status: dict[str, Any]) -> list[str]:
    """The status's checks as pass/fail lines, then the next step."""
    lines = [
        f"{PASS if c['ok'] else FAIL} {c['name']} ({human_times(c['detail'])})"
        for c in status["checks"]
    ]
    action = status["next_action"]
    lines.append(
        f"{PASS} next: meshfed trust rotate --stage {action}"
        if status["ready"]
        else f"{WARN} next: {action}, not yet (see the {FAIL} lines)"
    )
    return lines


def print_rotation(status: dict[str, Any]) -> None:
    print(
        f"root rotation: {status['stage']} since {rfc3339(status['stage_since'])} "
        f"(sequence {status['sequence']}, refresh hint {status['refresh_hint_seconds']}s)"
    )
    print(f"  current root  {_short(status['current_root'])}")
    print(f"  next root     {_short(status['next_root'])}")
    print(f"  signing root  {status['signing_root']}")
    pending = status["propagation"]["pending"]
    if status["stage"] == "propagating" and pending:
        print(f"  waiting for the gateways of {', '.join(pending)} to report both roots")
    print()
    print("bundles")
    rows = [
        {
            "trust_domain": b["trust_domain"],
            "sequence": b["sequence"],
            "roots": len(b["roots"]),
            "current": b["has_current"],
            "next": b["has_next"],
        }
        for b in status["bundles"]
    ]
    print(table(rows))
    print()
    print("intermediates")
    rows = [
        {
            "name": i["name"],
            "trust_domain": i["trust_domain"],
            "root": i["root"],
            "not_after": i["not_after"][:10],
        }
        for i in status["intermediates"]
    ]
    print(table(rows))
    print()
    for line in check_lines(status):
        print(line)


@command
def _rotation(ns: argparse.Namespace) -> int:
    with connect(ns) as api:
        status = api.get(ROTATION)
    if ns.output != "table":
        print(render(status, ns.output))
    else:
        print_rotation(status)
    return 0


def _blocking(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in status["checks"] if not c["ok"]]


def _wait(api: Client, stage: str, status: dict[str, Any], ns: argparse.Namespace) -> None:
    """Poll the status until the checks only time can fix hold (or fail on others)."""
    if stage != status["next_action"] or status["ready"]:
        return
    deadline = None if ns.timeout is None else time.monotonic() + ns.timeout
    table_mode = ns.output == "table"
    shown: set[str] = set()
    with progress(f"waiting to {stage}") as spinner:
        while not status["ready"]:
            blocking = _blocking(status)
            untimed = [c for c in blocking if c["name"] not in TIMED_CHECKS]
            if untimed:
                c = untimed[0]
                raise CliError(f"cannot {stage}: not {c['name']} ({human_times(c['detail'])})")
            for c in blocking:
                if table_mode and c["name"] not in shown:
                    print(f"{WARN} waiting: {c['name']} ({human_times(c['detail'])})", flush=True)
                    shown.add(c["name"])
                spinner.update(f"waiting to {stage}: {human_times(c['detail'])}")
            remaining = POLL_SECONDS
            if status["stage"] == "propagating":
                prop = status["propagation"]
                remaining = prop["required_seconds"] - prop["waited_seconds"]
            if deadline is not None:
                if time.monotonic() >= deadline:
                    raise CliError(f"gave up waiting to {stage} after --timeout")
                remaining = min(remaining, deadline - time.monotonic())
            time.sleep(min(POLL_SECONDS, max(0.5, remaining)))
            status = api.get(ROTATION)
    if table_mode:
        for name in sorted(shown):
            print(f"{PASS} {name}", flush=True)


@command
def _rotate(ns: argparse.Namespace) -> int:
    if ns.timeout is not None and not ns.wait:
        print("meshfed trust rotate: error: --timeout needs --wait", file=sys.stderr)
        return 2
    with connect(ns) as api:
        status = api.get(ROTATION)
        stage = ns.stage or status["next_action"]
        if ns.wait and not ns.force:
            _wait(api, stage, status, ns)
        with progress(f"rotation: {stage}"):
            try:
                result = api.post(ROTATION, {"action": stage, "force": ns.force})
            except ApiError as exc:
                if exc.status == 409:
                    raise CliError(f"{stage} refused: {human_times(exc.detail)}") from None
                raise
    if ns.output != "table":
        print(render(result, ns.output))
        return 0
    print(f"{PASS} {stage}: {human_times(result['message'])}")
    rotation = result["rotation"]
    print(f"  stage {rotation['stage']}, signing root {rotation['signing_root']}")
    for line in check_lines(rotation):
        print(line)
    return 0
