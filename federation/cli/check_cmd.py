"""`meshfed check`: is the federation healthy? One pass / fail / warning line per property.

Like `linkerd check`: sections run in order, a failed prerequisite (the registry
does not answer) stops the rest, exit 1 if any line failed. ‼ marks what cannot
be judged yet (a link whose gateways have not reported) and does not fail.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from federation.cli import args as types
from federation.cli.apiclient import ApiError, Client, Unreachable, command, connect
from federation.cli.context import add_global_flags
from federation.cli.output import FORMATS, render
from federation.cli.trustcheck import EXPIRY_WARNING
from federation.cli.ui import Report, progress
from federation.cli.verify import (
    TrustSource,
    condition_line,
    credential_line,
    gateway_line,
    trust_lines,
)


def register(sub: Any) -> None:
    p = sub.add_parser("check", help="check the registry, trust, links, gateways and exports")
    p.add_argument(
        "--expiry-days",
        type=types.positive_days,
        default=EXPIRY_WARNING.days,
        metavar="N",
        help="fail when a CA expires within N days (default 30)",
    )
    p.add_argument("-o", "--output", choices=FORMATS, default="table")
    p.set_defaults(handler=_check)
    add_global_flags(p, root=False)


def run_checks(api: Client, report: Report, within: timedelta) -> None:
    now = datetime.now(UTC)
    with progress("checking the federation") as status:
        status.update("contacting the registry")
        started = time.perf_counter()
        try:
            api.get("/healthz")
        except Unreachable as exc:
            report.add("registry", "registry reachable", "fail", str(exc))
            return
        except ApiError as exc:
            report.add("registry", "registry reachable", "fail", str(exc))
            return
        elapsed = (time.perf_counter() - started) * 1000
        report.add(
            "registry", "registry reachable", "pass", f"{api.target.registry}, {elapsed:.0f} ms"
        )
        try:
            ready = api.get("/readyz")
            report.add("registry", "store healthy", "pass", f"revision {ready.get('revision')}")
        except ApiError as exc:
            report.add("registry", "store healthy", "fail", str(exc))
            return
        try:
            clusters = api.list("/api/v1/clusters")
        except ApiError as exc:
            report.add("registry", "API token accepted", "fail", str(exc))
            return
        report.add("registry", "API token accepted", "pass", f"{len(clusters)} clusters")

        status.update("checking trust")
        trust = TrustSource(api)
        roots = trust.roots()
        if not roots:
            report.add("trust", "trust bundle served", "fail", "roots.pem holds no certificate")
        else:
            soonest = min(r.not_valid_after_utc for r in roots)
            left = soonest - now
            report.add(
                "trust",
                "trust bundle served",
                "pass" if left >= within else "fail",
                f"{len(roots)} root{'s' if len(roots) != 1 else ''}, "
                f"the first expires in {left.days} days",
            )
        for cluster in clusters:
            status.update(f"checking the CA of {cluster['name']}")
            trust_lines(report, "trust", trust, cluster, now=now, within=within)

        status.update("checking links")
        links = api.list("/api/v1/links")
        if not links:
            report.add("links", "links", "warn", "no links yet: `meshfed link A B`")
        for link in links:
            condition_line(
                report, "links", link, "GatewayReachable", "gateways reachable both ways"
            )
            condition_line(report, "links", link, "Synced", "agents synced")
            credential_line(report, "links", link, now)
            condition_line(report, "links", link, "Ready", "ready")

        status.update("checking gateways")
        gateways = {g["cluster"]: g for g in api.list("/api/v1/gateways")}
        linked = sorted({c for link in links for c in (link["a"], link["b"])})
        for name in linked:
            gateway_line(report, "gateways", name, gateways)

        status.update("checking exports")
        services = api.list("/api/v1/services")
        conflicted = [s for s in services if s["conflicts"]]
        if not conflicted:
            report.add("exports", "no export conflicts", "pass", f"{len(services)} services")
        for svc in conflicted:
            report.add(
                "exports",
                f"export {svc['namespace']}/{svc['name']} without conflicts",
                "fail",
                "; ".join(svc["conflicts"]),
            )


@command
def _check(ns: argparse.Namespace) -> int:
    live = ns.output == "table"
    report = Report(live=live)
    with connect(ns) as api:
        run_checks(api, report, timedelta(days=ns.expiry_days))
    if live:
        print()
        print(report.summary())
    else:
        print(render(report.as_dict(), ns.output))
    return 0 if report.ok else 1
