"""`meshfed link A B` and `meshfed unlink A B`: join and part two clusters.

`link` is idempotent: it checks both clusters are registered, that each
intermediate CA chains to the served bundle (and to the peer's bundle when the
trust domains differ), records the link unless an identical one exists
(`unchanged`), and reports the gateway probes both ways as the link's
conditions show them. Every step prints one pass / fail / warning line; exit 1 if any
failed. `unlink` deletes the link record (a missing link is not an error).

Given a kubeconfig (`--kubeconfig`, `--context-a`, `--context-b`, ...), `link` also
makes in each cluster what its agent needs (federation.cli.linkplan says which
objects; discovery_sync.kube.objects writes them, comparing before each write), and
`unlink` removes exactly that. `--rotate-credentials` replaces the join-token
Secrets, keeping the previous token beside the new one until it expires.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

from federation.cli import args as types
from federation.cli.apiclient import Client, command, connect
from federation.cli.cluster_cmd import existing_file, ttl_seconds
from federation.cli.context import add_global_flags
from federation.cli.link_kube import (
    apply_kube,
    check_kube_args,
    kube_targets,
    unlink_kube,
)
from federation.cli.output import FORMATS, render
from federation.cli.ui import Report, progress
from federation.cli.verify import TrustSource, condition, condition_line, gateway_line, trust_lines

SECTION_CLUSTERS = "clusters"
SECTION_TRUST = "trust"
SECTION_LINK = "link"
SECTION_GATEWAYS = "gateways"


def duration(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30s or 2m")
    value, unit = float(m.group(1)), m.group(2) or "s"
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def register(sub: Any) -> None:
    p = sub.add_parser("link", help="join two clusters: shared trust, link record, gateway probes")
    p.add_argument("a", type=types.cluster_name, metavar="CLUSTER_A")
    p.add_argument("b", type=types.cluster_name, metavar="CLUSTER_B")
    p.add_argument(
        "--one-way",
        action="store_true",
        help="CLUSTER_A imports CLUSTER_B's exports, not the other way round",
    )
    p.add_argument("--mode", choices=("terminating", "passthrough"), default="terminating")
    p.add_argument(
        "--namespaces",
        type=types.namespaces,
        default=[],
        metavar="NS1,NS2",
        help="only these namespaces (default: every namespace)",
    )
    p.add_argument(
        "--mesh",
        choices=("istio", "linkerd", "none"),
        default="none",
        help="the clusters' mesh (recorded for the Kubernetes side; see docs/cli.md)",
    )
    p.add_argument(
        "--wait",
        type=duration,
        default=0.0,
        metavar="DURATION",
        help="wait up to DURATION for the gateway probes to report (e.g. 30s)",
    )
    _kube_flags(p)
    p.add_argument(
        "--credential-ttl",
        type=ttl_seconds,
        default=3600,
        metavar="DURATION",
        help="lifetime of the join tokens written to the clusters (default 1h, at most 24h)",
    )
    p.add_argument(
        "--rotate-credentials",
        action="store_true",
        help="write new join tokens, keeping the previous ones beside them until they expire",
    )
    p.add_argument("-o", "--output", choices=FORMATS, default="table")
    p.set_defaults(handler=_link)
    add_global_flags(p, root=False)

    u = sub.add_parser(
        "unlink", help="part two clusters: remove the link record and what link made"
    )
    u.add_argument("a", type=types.cluster_name, metavar="CLUSTER_A")
    u.add_argument("b", type=types.cluster_name, metavar="CLUSTER_B")
    _kube_flags(u)
    u.set_defaults(handler=_unlink)
    add_global_flags(u, root=False)


def _kube_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "Kubernetes",
        "given any of these, the command also writes (link) or deletes (unlink) the "
        "agent's objects in both clusters; a cluster's context defaults to its name",
    )
    g.add_argument(
        "--kubeconfig",
        type=existing_file,
        metavar="FILE",
        help="kubeconfig of both clusters (default: $KUBECONFIG, then ~/.kube/config)",
    )
    g.add_argument("--kubeconfig-a", type=existing_file, metavar="FILE", help="CLUSTER_A's")
    g.add_argument("--kubeconfig-b", type=existing_file, metavar="FILE", help="CLUSTER_B's")
    g.add_argument("--context-a", type=types.context_name, metavar="CONTEXT")
    g.add_argument("--context-b", type=types.context_name, metavar="CONTEXT")


def _usage_error(ns: argparse.Namespace, message: str) -> int:
    print(f"meshfed {ns.command}: error: {message}", file=sys.stderr)
    return 2


def _differences(existing: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    out = []
    if existing["bidirectional"] != wanted["bidirectional"]:
        was = "both ways" if existing["bidirectional"] else "one-way"
        out.append(f"it is {was}")
    elif not wanted["bidirectional"] and (existing["a"], existing["b"]) != (
        wanted["a"],
        wanted["b"],
    ):
        out.append(f"it is one-way the other way round ({existing['a']} imports {existing['b']})")
    if existing["mode"] != wanted["mode"]:
        out.append(f"its mode is {existing['mode']}")
    if sorted(existing["namespaces"]) != sorted(wanted["namespaces"]):
        shown = ",".join(existing["namespaces"]) or "every namespace"
        out.append(f"its namespaces are {shown}")
    return out


def link(api: Client, ns: argparse.Namespace, report: Report) -> dict[str, Any] | None:
    """Do the link; returns the link record (or None when a prerequisite failed)."""
    clusters: dict[str, dict[str, Any]] = {}
    with progress(f"linking {ns.a} and {ns.b}") as status:
        for name in (ns.a, ns.b):
            status.update(f"looking up cluster {name}")
            found = api.find(f"/api/v1/clusters/{name}")
            if found is None:
                report.add(
                    SECTION_CLUSTERS,
                    f"cluster {name} registered",
                    "fail",
                    f"not found; register it with `meshfed cluster add {name} ...`",
                )
            else:
                clusters[name] = found
                report.add(
                    SECTION_CLUSTERS,
                    f"cluster {name} registered",
                    "pass",
                    f"{found['region']}/{found['zone']}, trust domain {found['trust_domain']}",
                )
        if len(clusters) < 2:
            return None

        status.update("verifying shared trust")
        trust = TrustSource(api)
        for name, peer in ((ns.a, ns.b), (ns.b, ns.a)):
            trust_lines(report, SECTION_TRUST, trust, clusters[name], clusters[peer])

        status.update("recording the link")
        wanted = {
            "a": ns.a,
            "b": ns.b,
            "bidirectional": not ns.one_way,
            "mode": ns.mode,
            "namespaces": sorted(set(ns.namespaces)),
        }
        existing = api.find(f"/api/v1/links/{ns.a}/{ns.b}")
        record: dict[str, Any]
        if existing is None:
            record = api.post("/api/v1/links", wanted)
            report.add(SECTION_LINK, "link recorded", "pass", f"created, {_describe(record)}")
        elif diff := _differences(existing, wanted):
            report.add(
                SECTION_LINK,
                "link recorded",
                "fail",
                f"a different link exists ({'; '.join(diff)}); "
                f"`meshfed unlink {ns.a} {ns.b}` first to change it",
            )
            return dict(existing)
        else:
            record = existing
            report.add(SECTION_LINK, "link recorded", "pass", f"unchanged, {_describe(record)}")

        targets = kube_targets(ns)
        if targets is not None:
            status.update("writing the agents' objects to the clusters")
            ns.credentials = apply_kube(api, ns, record, targets, report)
            if ns.credentials:  # the soonest of the two clusters' credentials
                record = api.patch(
                    f"/api/v1/links/{record['a']}/{record['b']}",
                    {"credential_expiry": min(ns.credentials.values())},
                )
        if ns.wait > 0:
            record = _wait_for_probes(api, record, ns.wait, status)
        status.update("reading gateway probes")
        gateways = {g["cluster"]: g for g in api.list("/api/v1/gateways")}
    if ns.mesh != "none" and targets is None:
        report.add(
            SECTION_LINK,
            f"{ns.mesh} trust material installed",
            "warn",
            "not applied: no kubeconfig given (--kubeconfig, --context-a, --context-b); "
            f"or use `meshfed trust export --cluster C --format {ns.mesh} --out DIR`",
        )
    for name in (ns.a, ns.b):
        gateway_line(report, SECTION_GATEWAYS, name, gateways)
    condition_line(report, SECTION_GATEWAYS, record, "GatewayReachable", "gateways reachable")
    condition_line(report, SECTION_GATEWAYS, record, "Ready", "ready")
    return record


def _describe(link: dict[str, Any]) -> str:
    nss = ",".join(link["namespaces"]) or "every namespace"
    way = "both ways" if link["bidirectional"] else f"{link['a']} imports from {link['b']}"
    return f"{way}, {link['mode']}, {nss}"


def _wait_for_probes(
    api: Client, record: dict[str, Any], timeout: float, status: Any
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        cond = condition(record, "GatewayReachable")
        if cond is not None and cond["status"] != "Unknown":
            return record
        left = deadline - time.monotonic()
        if left <= 0:
            return record
        status.update(f"waiting for gateway probes ({left:.0f}s left)")
        time.sleep(min(0.5, left))
        record = api.get(f"/api/v1/links/{record['a']}/{record['b']}")


@command
def _link(ns: argparse.Namespace) -> int:
    if ns.a == ns.b:
        print(f"error: cannot link cluster {ns.a!r} to itself", file=sys.stderr)
        return 2
    targets = kube_targets(ns)
    if ns.rotate_credentials and targets is None:
        return _usage_error(
            ns,
            "argument --rotate-credentials: needs the clusters' kubeconfig "
            "(--kubeconfig, --context-a, --context-b)",
        )
    if targets is not None and (problem := check_kube_args(ns, targets)):
        return _usage_error(ns, problem)
    ns.credentials = {}
    live = ns.output == "table"
    report = Report(live=live)
    if live:
        print(f"linking {ns.a} and {ns.b}\n")
    with connect(ns) as api:
        record = link(api, ns, report)
    if live:
        print()
        print(report.summary())
    else:
        out = {"link": record, **report.as_dict()}
        if targets is not None:
            out["credential_expiry"] = ns.credentials
        print(render(out, ns.output))
    return 0 if report.ok else 1


@command
def _unlink(ns: argparse.Namespace) -> int:
    targets = kube_targets(ns)
    if targets is not None and (problem := check_kube_args(ns, targets)):
        return _usage_error(ns, problem)
    ok = True
    with connect(ns) as api:
        if targets is not None:
            ok = unlink_kube(ns, targets, api)
        if api.find(f"/api/v1/links/{ns.a}/{ns.b}") is None:
            print(f"no link between {ns.a} and {ns.b} (unchanged)")
        else:
            api.delete(f"/api/v1/links/{ns.a}/{ns.b}")
            print(f"link between {ns.a} and {ns.b} removed")
    return 0 if ok else 1
