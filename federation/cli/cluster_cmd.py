"""`meshfed cluster add|list|show|remove`: the clusters of the federation.

Their join tokens (`join-token`, `join-tokens`, `revoke-token`) are registered
here from cluster_tokens_cmd.py; `cluster add` mints the first one with its types.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from federation.cli import args as types
from federation.cli.apiclient import Client, CliError, command, connect
from federation.cli.cluster_tokens_cmd import (
    DEFAULT_TOKEN_TTL,
    discard_token,
    duration_seconds,
    register_tokens,
    token_ttl,
    ttl_problem,
    usage_error,
    write_secret,
)
from federation.cli.context import add_global_flags
from federation.cli.output import FORMATS, render

LIST_COLUMNS = ("name", "region", "zone", "network", "trust_domain", "source", "gateway_addresses")


def existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a readable file")
    return text


def label_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def ttl_seconds(text: str) -> int:
    """A token lifetime of at most a day (link credentials), with its unit: `90s`, `2h`."""
    return duration_seconds(text, 24 * 3600, "24h")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "cluster", help="add, list, show and remove clusters; mint, list and revoke join tokens"
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    add = actions.add_parser(
        "add", help="register a cluster, issue its intermediate CA, print a join token"
    )
    add.add_argument("name", type=types.cluster_name, metavar="NAME")
    add.add_argument("--region", required=True, type=types.label_value)
    add.add_argument("--zone", required=True, type=types.label_value)
    add.add_argument("--network", type=types.label_value, default="default")
    add.add_argument(
        "--trust-domain",
        type=types.trust_domain,
        metavar="TD",
        help="the SPIFFE trust domain the cluster's mesh uses (default: NAME.local)",
    )
    add.add_argument(
        "--gateway-address",
        type=types.gateway_address,
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="east-west gateway address peers dial (repeatable)",
    )
    add.add_argument("--label", type=label_pair, action="append", default=[], metavar="KEY=VALUE")
    source = add.add_mutually_exclusive_group()
    source.add_argument(
        "--static", type=existing_file, metavar="FILE", help="the agent reads services from FILE"
    )
    source.add_argument(
        "--kubeconfig", type=existing_file, metavar="FILE", help="the agent reads a Kubernetes API"
    )
    add.add_argument("--kube-context", metavar="C", help="kubeconfig context (with --kubeconfig)")
    add.add_argument(
        "--join-token-file",
        type=types.new_file,
        metavar="FILE",
        help="write the join token to FILE (0600; its directory must exist) instead of printing it",
    )
    add.add_argument(
        "--join-token-ttl",
        type=token_ttl,
        default=DEFAULT_TOKEN_TTL,
        metavar="DURATION",
        help="the join token's lifetime (default 1h; at most 24h, or 365d with --reusable)",
    )
    add.add_argument(
        "--reusable",
        action="store_true",
        help="a reusable join token: every agent start and gateway replica joins with it",
    )
    add.add_argument("-o", "--output", choices=FORMATS, default="table")
    add.set_defaults(handler=_add)

    ls = actions.add_parser("list", help="list clusters")
    ls.add_argument("-o", "--output", choices=FORMATS, default="table")
    ls.set_defaults(handler=_list)

    show = actions.add_parser("show", help="one cluster, with its gateway and links")
    show.add_argument("name", type=types.cluster_name, metavar="NAME")
    show.add_argument("-o", "--output", choices=FORMATS, default="table")
    show.set_defaults(handler=_show)

    rm = actions.add_parser(
        "remove", help="delete a cluster with its links, gateway, exports and CA"
    )
    rm.add_argument("name", type=types.cluster_name, metavar="NAME")
    rm.add_argument("--ignore-not-found", action="store_true")
    rm.set_defaults(handler=_remove)

    tokens = register_tokens(actions)

    for parser in (add, ls, show, rm, *tokens):
        add_global_flags(parser, root=False)


@command
def _add(ns: argparse.Namespace) -> int:
    if problem := ttl_problem("--join-token-ttl", ns.join_token_ttl, ns.reusable):
        return usage_error(ns, problem)
    if ns.kube_context and not ns.kubeconfig:
        ns.kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    body: dict[str, Any] = {
        "name": ns.name,
        "region": ns.region,
        "zone": ns.zone,
        "network": ns.network,
        "trust_domain": ns.trust_domain or f"{ns.name}.local",
        "gateway_addresses": ns.gateway_address,
        "source": "kubernetes" if ns.kubeconfig else "static",
        "labels": dict(ns.label),
    }
    with connect(ns) as api:
        cluster = api.post("/api/v1/clusters", body)
        token = api.post(
            f"/api/v1/clusters/{ns.name}/join-tokens",
            {"ttl_seconds": ns.join_token_ttl, "reusable": ns.reusable},
        )
        if ns.join_token_file and (
            problem := write_secret(ns.join_token_file, token["token"] + "\n")
        ):
            fate = discard_token(api, ns.name, token["id"])
            raise CliError(
                f'cluster "{ns.name}" registered, but cannot write {ns.join_token_file}: '
                f"{problem} ({fate}); mint one with `meshfed cluster join-token {ns.name}"
                f"{' --reusable' if ns.reusable else ''} --file FILE`"
            )
    if ns.output != "table":
        shown = dict(token)
        if ns.join_token_file:
            shown["token"] = None
            shown["token_file"] = str(ns.join_token_file)
        print(render({"cluster": cluster, "join_token": shown}, ns.output))
        return 0
    print(
        f'cluster "{ns.name}" registered (trust domain {cluster["trust_domain"]}, '
        "intermediate CA issued)"
    )
    use = "reusable" if ns.reusable else "single use"
    if ns.join_token_file:
        print(f"join token written to {ns.join_token_file} ({use}, expires {token['expires']})")
        token_arg = f"--join-token-file {ns.join_token_file}"
    else:
        print(f"join token ({use}, expires {token['expires']}):")
        print(f"  {token['token']}")
        token_arg = "--join-token-file <file holding the token>"
    if ns.static:
        source = f"--static {ns.static}"
    elif ns.kubeconfig:
        source = f"--kubeconfig {ns.kubeconfig}"
        if ns.kube_context:
            source += f" --context {ns.kube_context}"
    else:
        source = "--static <services.yaml>"
    host = urlsplit(api.target.registry).hostname or "127.0.0.1"
    print("start its agent with:")
    print(
        f"  meshfed agent --cluster {ns.name} --registry {host}:9471 {token_arg} "
        f"--trust-domain {cluster['trust_domain']} --registry-ca roots.pem {source}"
    )
    print(f"  (roots.pem: meshfed trust export --cluster {ns.name} --format pem --out DIR)")
    return 0


@command
def _list(ns: argparse.Namespace) -> int:
    with connect(ns) as api:
        clusters = api.list("/api/v1/clusters")
    if ns.output == "table":
        print(render(clusters, "table", LIST_COLUMNS))
    else:
        print(render({"items": clusters}, ns.output))
    return 0


def cluster_details(api: Client, name: str) -> dict[str, Any]:
    cluster = api.get(f"/api/v1/clusters/{name}")
    gateways = {g["cluster"]: g for g in api.list("/api/v1/gateways")}
    links = [link for link in api.list("/api/v1/links") if name in (link["a"], link["b"])]
    gw = gateways.get(name)
    return {
        **cluster,
        "gateway": None
        if gw is None
        else {"addresses": gw["addresses"], "modes": gw["modes"], "healthy": gw["healthy"]},
        "links": [
            {
                "peer": link["b"] if link["a"] == name else link["a"],
                "direction": _direction(link, name),
                "mode": link["mode"],
                "ready": _status_of(link, "Ready"),
            }
            for link in links
        ],
    }


def _direction(link: dict[str, Any], name: str) -> str:
    if link["bidirectional"]:
        return "both"
    return "imports" if link["a"] == name else "exports"


def _status_of(link: dict[str, Any], ctype: str) -> str:
    for cond in link.get("conditions", []):
        if cond["type"] == ctype:
            return str(cond["status"])
    return "Unknown"


@command
def _show(ns: argparse.Namespace) -> int:
    with connect(ns) as api:
        details = cluster_details(api, ns.name)
    if ns.output != "table":
        print(render(details, ns.output))
        return 0
    rows = [(k, v) for k, v in details.items() if k not in ("gateway", "links")]
    gw = details["gateway"]
    rows.append(
        (
            "gateway",
            "<none reported>"
            if gw is None
            else f"{','.join(gw['addresses'])} healthy={_health(gw['healthy'])}",
        )
    )
    width = max(len(k) for k, _ in rows) + 1
    for key, value in rows:
        cell = render([{"v": value}], "table", ["v"]).splitlines()[1]
        print(f"{(key + ':').ljust(width)}  {cell}")
    print("links:")
    if not details["links"]:
        print("  <none>")
    for link in details["links"]:
        print(
            f"  {link['peer']}  direction={link['direction']} mode={link['mode']} "
            f"ready={link['ready']}"
        )
    return 0


def _health(value: bool | None) -> str:
    return "Unknown" if value is None else str(value)


@command
def _remove(ns: argparse.Namespace) -> int:
    with connect(ns) as api:
        if ns.ignore_not_found and api.find(f"/api/v1/clusters/{ns.name}") is None:
            print(f'cluster "{ns.name}" not found (nothing to do)')
            return 0
        api.delete(f"/api/v1/clusters/{ns.name}")
    print(f'cluster "{ns.name}" removed (with its links, gateway, exports and CA)')
    return 0
