"""`meshfed status`, `meshfed services`, `meshfed gateways`: what the federation looks like."""

from __future__ import annotations

import argparse
from typing import Any

from federation.cli import args as types
from federation.cli.apiclient import command, connect
from federation.cli.context import add_global_flags
from federation.cli.output import FORMATS, render
from federation.cli.verify import CONDITION_TYPES, condition, link_name


def register(sub: Any) -> None:
    st = sub.add_parser(
        "status", help="clusters, links with their conditions and credential expiry"
    )
    st.add_argument("-o", "--output", choices=FORMATS, default="table")
    st.set_defaults(handler=_status)

    sv = sub.add_parser(
        "services", help="exported services, the clusters exporting them, conflicts"
    )
    sv.add_argument("--cluster", type=types.cluster_name, metavar="C", help="only C's exports")
    sv.add_argument("--namespace", "-n", type=types.namespace_name, metavar="NS")
    sv.add_argument("-o", "--output", choices=FORMATS, default="table")
    sv.set_defaults(handler=_services)

    gw = sub.add_parser(
        "gateways", help="east-west gateways: addresses, modes, alive as peers see it"
    )
    gw.add_argument("-o", "--output", choices=FORMATS, default="table")
    gw.set_defaults(handler=_gateways)

    for parser in (st, sv, gw):
        add_global_flags(parser, root=False)


def _alive(healthy: bool | None) -> str:
    return "Unknown" if healthy is None else ("True" if healthy else "False")


def _ports(ports: list[dict[str, Any]]) -> str:
    return ",".join(f"{p['port']}/{p['protocol']}" for p in ports) or "<none>"


@command
def _status(ns: argparse.Namespace) -> int:
    with connect(ns) as api:
        ready = api.get("/readyz")
        clusters = api.list("/api/v1/clusters")
        links = api.list("/api/v1/links")
        gateways = {g["cluster"]: g for g in api.list("/api/v1/gateways")}
    cluster_rows = [
        {
            "name": c["name"],
            "region": c["region"],
            "zone": c["zone"],
            "network": c["network"],
            "trust_domain": c["trust_domain"],
            "gateway": _alive(gateways[c["name"]]["healthy"])
            if c["name"] in gateways
            else "<none>",
        }
        for c in clusters
    ]
    link_rows = []
    for link in links:
        row: dict[str, Any] = {
            "link": link_name(link),
            "mode": link["mode"],
            "namespaces": link["namespaces"] or ["*"],
        }
        for ctype in CONDITION_TYPES:
            cond = condition(link, ctype)
            row[ctype.lower()] = cond["status"] if cond else "Unknown"
        row["credential_expiry"] = link["credential_expiry"]
        link_rows.append(row)
    if ns.output != "table":
        data = {
            "registry": api.target.registry,
            "revision": ready.get("revision"),
            "clusters": clusters,
            "links": links,
        }
        print(render(data, ns.output))
        return 0
    print(f"registry {api.target.registry} (store revision {ready.get('revision')})\n")
    print("CLUSTERS")
    print(render(cluster_rows, "table"))
    print("\nLINKS")
    print(render(link_rows, "table"))
    return 0


@command
def _services(ns: argparse.Namespace) -> int:
    with connect(ns) as api:
        if ns.cluster:
            api.get(f"/api/v1/clusters/{ns.cluster}")  # an unknown cluster is an error, not []
        services = api.list("/api/v1/services", cluster=ns.cluster, namespace=ns.namespace)
    if ns.output != "table":
        print(render({"items": services}, ns.output))
        return 0
    rows = [
        {
            "namespace": s["namespace"],
            "name": s["name"],
            "clusters": s["clusters"],
            "ports": _ports(s["ports"]),
            "conflicts": "; ".join(s["conflicts"]) or "<none>",
        }
        for s in services
    ]
    print(render(rows, "table"))
    return 0


@command
def _gateways(ns: argparse.Namespace) -> int:
    with connect(ns) as api:
        gateways = api.list("/api/v1/gateways")
        services = api.list("/api/v1/services")
    exported: dict[str, int] = {}
    for svc in services:
        for cluster in svc["clusters"]:
            exported[cluster] = exported.get(cluster, 0) + 1
    rows = [
        {
            "cluster": g["cluster"],
            "alive": _alive(g["healthy"]),
            "num_svc": exported.get(g["cluster"], 0),
            "addresses": g["addresses"],
            "modes": g["modes"],
        }
        for g in gateways
    ]
    if ns.output != "table":
        print(render({"items": rows}, ns.output))
        return 0
    print(render(rows, "table"))
    return 0
