"""`meshfed agent`: the command line of the sync agent (see `agent`).

    meshfed agent --cluster X --registry HOST:PORT --join-token-file F \\
        --trust-domain TD --registry-ca roots.pem \\
        (--kubeconfig F [--context C] | --in-cluster | --static FILE) \\
        [--imports-file F] [--dns HOST:PORT] [--admin-address HOST:PORT|off] \\
        [--[no-]leader-elect] [--lease-namespace NS] [--identity ID]

`--admin-address` (default 0.0.0.0:9474) serves /healthz, /readyz and /metrics over
HTTP (`discovery_sync.admin`); `off` disables it.

With Kubernetes, leader election is on by default: replicas of one cluster's agent
share the Lease `meshfed-agent-<cluster>` in `--lease-namespace` and only its holder
writes. With `--static` it is off (and cannot be turned on: the Lease lives in
Kubernetes); run one static agent per cluster.

Exit status: 0 when stopped by SIGTERM/SIGINT, 1 when the agent cannot go on
(a join token the registry refuses, an unreadable source, the admin or DNS port
taken), 2 for bad usage (a malformed join token included), naming the value -- as
`meshfed gateway`.
The join token is read from `--join-token-file`, `--join-token` or
`$MESHFED_JOIN_TOKEN`, first to last (`federation.client.cli_args`, shared with the
gateway); the file and the variable do not show in the process list.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from discovery_sync import cli_common
from discovery_sync.admin import DEFAULT_PORT as ADMIN_PORT
from discovery_sync.admin import AdminServer
from discovery_sync.agent import Agent, AgentConfig, read_ca
from discovery_sync.errors import DiscoveryError
from discovery_sync.ipam import DEFAULT_CIDR, parse_cidr
from discovery_sync.kube.lease import DEFAULT_NAMESPACE, default_identity
from discovery_sync.leader import LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD, Timing
from discovery_sync.sources.kube import NamespaceFilter
from discovery_sync.types import Locality
from federation.client import Identity, cli_args
from federation.errors import FederationError, InvalidToken, PermissionDenied

log = logging.getLogger("meshfed.agent")


def admin_address(text: str) -> tuple[str, int] | None:
    """`--admin-address`: HOST:PORT, or `off`."""
    if text.strip().lower() == "off":
        return None
    return cli_common.host_port(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="meshfed agent", description="Sync one cluster's services with the registry."
    )
    p.add_argument("--cluster", required=True, type=cli_common.label, help="this cluster's name")
    p.add_argument(
        "--registry",
        required=True,
        type=cli_args.registry_address,
        metavar="HOST:PORT",
        help=cli_args.REGISTRY_HELP,
    )
    p.add_argument(
        "--join",
        type=cli_common.host_port_text,
        metavar="HOST:PORT",
        help="the registry's join port (default: control plane port + 1)",
    )
    p.add_argument("--join-token", metavar="TOKEN", help=cli_args.JOIN_TOKEN_HELP)
    p.add_argument("--join-token-file", metavar="FILE", help=cli_args.JOIN_TOKEN_FILE_HELP)
    p.add_argument("--trust-domain", required=True, help="this cluster's SPIFFE trust domain")
    p.add_argument(
        "--registry-ca",
        required=True,
        metavar="FILE",
        help="federation root certificates (PEM) that verify the registry",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--kubeconfig", metavar="FILE", help="read Services from this cluster")
    src.add_argument("--in-cluster", action="store_true", help="use the pod's service account")
    src.add_argument("--static", metavar="FILE", help="read services from a YAML file")
    p.add_argument("--context", help="kubeconfig context (with --kubeconfig)")
    p.add_argument("--imports-file", metavar="FILE", help="also write the imports here")
    p.add_argument(
        "--dns",
        type=cli_common.host_port,
        metavar="HOST:PORT",
        help="serve clusterset.local DNS here (UDP and TCP)",
    )
    p.add_argument(
        "--admin-address",
        type=admin_address,
        default=("0.0.0.0", ADMIN_PORT),
        metavar="HOST:PORT|off",
        help=f"serve /healthz, /readyz and /metrics over HTTP here "
        f"(default 0.0.0.0:{ADMIN_PORT}; off: no admin endpoint)",
    )
    p.add_argument("--region", type=cli_common.label_value, default=None)
    p.add_argument("--zone", type=cli_common.label_value, default=None)
    p.add_argument(
        "--namespace",
        action="append",
        type=cli_common.label,
        default=[],
        help="export only from these namespaces (repeatable; default all)",
    )
    p.add_argument(
        "--exclude-namespace",
        action="append",
        type=cli_common.label,
        default=[],
        help="never export from these namespaces (repeatable)",
    )
    p.add_argument(
        "--egress-address",
        action="append",
        type=cli_common.ip_address,
        default=[],
        help="the local gateway's egress IP: imported EndpointSlices point here",
    )
    p.add_argument(
        "--clusterset-cidr",
        default=DEFAULT_CIDR,
        help=f"cluster-set IPs are allocated here (default {DEFAULT_CIDR})",
    )
    p.add_argument(
        "--no-kube-sink",
        action="store_true",
        help="with --kubeconfig: export only, write no ServiceImports",
    )
    le = p.add_argument_group("leader election (Kubernetes; client-go's defaults)")
    le.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="elect one writing replica per cluster through a Lease "
        "(default: on with --kubeconfig/--in-cluster, off with --static)",
    )
    le.add_argument(
        "--lease-namespace",
        type=cli_common.label,
        default=DEFAULT_NAMESPACE,
        help=f"namespace of the Lease meshfed-agent-<cluster> (default {DEFAULT_NAMESPACE})",
    )
    le.add_argument(
        "--identity",
        default=None,
        help="this replica's holderIdentity (default <hostname>_<pid>)",
    )
    le.add_argument(
        "--leader-elect-lease-duration",
        type=int,
        default=LEASE_DURATION,
        metavar="SECONDS",
        help=f"how long followers wait before taking an unrenewed lease ({LEASE_DURATION})",
    )
    le.add_argument(
        "--leader-elect-renew-deadline",
        type=float,
        default=RENEW_DEADLINE,
        metavar="SECONDS",
        help=f"how long the leader may fail to renew before it stops ({RENEW_DEADLINE:g})",
    )
    le.add_argument(
        "--leader-elect-retry-period",
        type=float,
        default=RETRY_PERIOD,
        metavar="SECONDS",
        help=f"how often replicas read and renew the lease ({RETRY_PERIOD:g})",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def join_token(args: argparse.Namespace, p: argparse.ArgumentParser) -> cli_args.JoinToken:
    try:
        return cli_args.join_token(args.join_token, args.join_token_file, os.environ)
    except cli_args.JoinTokenError as err:
        p.error(str(err))


def config_from(
    args: argparse.Namespace, p: argparse.ArgumentParser, token: cli_args.JoinToken | None = None
) -> AgentConfig:
    token = token or join_token(args, p)
    if args.context and not args.kubeconfig:
        p.error("--context: only with --kubeconfig")
    if args.static and not os.path.exists(args.static):
        p.error(f"--static: {args.static} does not exist")
    if args.kubeconfig and not os.path.exists(args.kubeconfig):
        p.error(f"--kubeconfig: {args.kubeconfig} does not exist")
    if args.static and args.leader_elect:
        p.error("--leader-elect: needs --kubeconfig or --in-cluster (the Lease lives there)")
    leader_elect = not args.static if args.leader_elect is None else args.leader_elect
    if args.identity is not None and not args.identity.strip():
        p.error("--identity: must not be empty")
    try:
        timing = Timing(
            args.leader_elect_lease_duration,
            args.leader_elect_renew_deadline,
            args.leader_elect_retry_period,
        )
    except ValueError as err:
        p.error(f"--leader-elect-lease-duration/--renew-deadline/--retry-period: {err}")
    try:
        parse_cidr(args.clusterset_cidr)
        ca = read_ca(args.registry_ca)
    except DiscoveryError as err:
        p.error(str(err))
    return AgentConfig(
        cluster=args.cluster,
        registry=args.registry,
        join_token=token.value,
        trust_domain=args.trust_domain,
        registry_ca=ca,
        join_address=args.join or "",
        kubeconfig=args.kubeconfig,
        context=args.context,
        in_cluster=args.in_cluster,
        static_file=args.static,
        imports_file=args.imports_file,
        dns_listen=args.dns,
        locality=Locality(args.region or "", args.zone or ""),
        namespaces=NamespaceFilter(frozenset(args.namespace), frozenset(args.exclude_namespace)),
        egress_addresses=tuple(args.egress_address),
        clusterset_cidr=args.clusterset_cidr,
        kube_sink=not args.no_kube_sink,
        leader_elect=leader_elect,
        lease_namespace=args.lease_namespace,
        identity=args.identity or default_identity(),
        lease_timing=timing,
    )


class JoinRefused(DiscoveryError):
    """The registry refused the join token: the operator must supply a new one."""


class CliAgent(Agent):
    """`Agent` as the command runs it: a token the registry refuses names the flag
    (or variable) that held it and ends the command with exit code 1."""

    def __init__(self, config: AgentConfig, token_source: str) -> None:
        super().__init__(config)
        self.token_source = token_source

    async def _join(self) -> Identity:
        try:
            identity = await super()._join()
        except (InvalidToken, PermissionDenied) as err:
            raise JoinRefused(cli_args.join_refused(self.token_source, err)) from err
        return identity


def run(argv: Sequence[str]) -> int:
    p = parser()
    args = p.parse_args(list(argv))
    token = join_token(args, p)
    config = config_from(args, p, token)
    logging.basicConfig(  # INFO by default: the admin address, "joined as ..."
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )

    async def main() -> int:
        agent = CliAgent(config, token.source)
        admin = None
        if args.admin_address is not None:
            admin = AdminServer.for_agent(agent)
            await admin.start(*args.admin_address)
            host, port = admin.address
            shown = f"[{host}]" if ":" in host else host
            log.info("admin endpoint on http://%s:%d (/healthz /readyz /metrics)", shown, port)
        try:
            await agent.run()
        finally:
            if admin is not None:
                await admin.close()
        return 0

    try:
        return cli_common.run_until_signal(main())
    except (DiscoveryError, FederationError) as err:
        print(f"meshfed agent: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
