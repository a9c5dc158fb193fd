"""The Kubernetes side of `meshfed link` / `unlink`: which clusters, and writing to them.

Why this module exists: link_cmd.py is about the registry (clusters, trust, the
link record, probes); this module writes what each cluster's agent needs
(federation.cli.linkplan says which objects; discovery_sync.kube.objects writes
them, comparing before each write) and removes exactly that again.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from discovery_sync.errors import DiscoveryError
from federation.cli import linkplan as plan
from federation.cli.apiclient import ApiError, Client
from federation.cli.ui import Report

SECTION_KUBE = "kubernetes"

if TYPE_CHECKING:
    from discovery_sync.kube import objects as kube

# discovery_sync.kube.objects is imported inside the functions that talk to a
# cluster: the Kubernetes client takes most of a second to import, and every other
# `meshfed` command would pay for it.
RENEW_MARGIN = timedelta(minutes=1)  # a token closer than this to expiry counts as expired


@dataclass(frozen=True)
class KubeTarget:
    kubeconfig: str
    context: str


def kube_targets(ns: argparse.Namespace) -> dict[str, KubeTarget] | None:
    """Each cluster's kubeconfig and context, or None when no Kubernetes flag was given."""
    given = (ns.kubeconfig, ns.kubeconfig_a, ns.kubeconfig_b, ns.context_a, ns.context_b)
    if not any(given):
        return None
    default = (
        ns.kubeconfig
        or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        or str(Path.home() / ".kube" / "config")
    )
    return {
        ns.a: KubeTarget(ns.kubeconfig_a or default, ns.context_a or ns.a),
        ns.b: KubeTarget(ns.kubeconfig_b or default, ns.context_b or ns.b),
    }


def check_kube_args(ns: argparse.Namespace, targets: dict[str, KubeTarget]) -> str | None:
    """The bad-usage message for a kubeconfig or context that does not exist, or None."""
    from discovery_sync.kube import objects as kube

    for name, side in ((ns.a, "a"), (ns.b, "b")):
        target = targets[name]
        flag = f"--kubeconfig-{side}" if getattr(ns, f"kubeconfig_{side}") else "--kubeconfig"
        if not Path(target.kubeconfig).is_file():
            return f"argument {flag}: {target.kubeconfig!r} is not a readable file"
        try:
            known = kube.contexts(target.kubeconfig)
        except DiscoveryError as err:
            return f"argument {flag}: {err}"
        if target.context not in known:
            explicit = getattr(ns, f"context_{side}")
            arg = f"--context-{side}" if explicit else f"CLUSTER_{side.upper()}"
            hint = "" if explicit else f" (name it with --context-{side})"
            return (
                f"argument {arg}: context {target.context!r} not found in "
                f"{target.kubeconfig} (contexts: {', '.join(known) or 'none'}){hint}"
            )
    return None


def apply_kube(
    api: Client,
    ns: argparse.Namespace,
    record: dict[str, Any],
    targets: dict[str, KubeTarget],
    report: Report,
) -> dict[str, str]:
    """Write what each cluster's agent needs; returns each cluster's credential expiry."""
    from discovery_sync.kube import objects as kube

    lid = plan.link_id(record["a"], record["b"])
    expiries: dict[str, str] = {}
    for name, peer in ((ns.a, ns.b), (ns.b, ns.a)):
        files = None
        if ns.mesh != "none":
            files = api.get(f"/api/v1/clusters/{name}/ca", format=ns.mesh)["files"]
        target = targets[name]
        try:
            with kube.Objects.connect(target.kubeconfig, target.context) as objs:
                expiry = _apply_cluster(api, objs, ns, name, peer, lid, files, report)
        except DiscoveryError as err:
            report.add(SECTION_KUBE, f"{name}: objects written", "fail", str(err))
            continue
        if expiry is not None:
            expiries[name] = plan.timestamp(expiry)
    return expiries


def _apply_cluster(
    api: Client,
    objs: kube.Objects,
    ns: argparse.Namespace,
    name: str,
    peer: str,
    lid: str,
    files: dict[str, str] | None,
    report: Report,
) -> datetime | None:
    from discovery_sync.kube import objects as kube

    for obj in plan.shared_objects(ns.mesh, files):
        outcome = objs.ensure_shared(obj, lid)
        if outcome != "foreign":
            report.add(SECTION_KUBE, f"{name}: {kube.describe(obj)}", "pass", outcome)
        elif obj["kind"] == "Namespace":
            report.add(
                SECTION_KUBE, f"{name}: {kube.describe(obj)}", "pass", "exists, not meshfed's"
            )
        else:
            report.add(
                SECTION_KUBE,
                f"{name}: {kube.describe(obj)}",
                "fail",
                "exists and is not managed by meshfed: left as it is; delete it, or leave "
                "out --mesh and install the CA yourself",
            )
    for obj in plan.link_rbac(name, lid, ns.namespaces):
        try:
            outcome = objs.ensure(obj)
        except DiscoveryError as err:
            report.add(SECTION_KUBE, f"{name}: {kube.describe(obj)}", "fail", str(err))
            continue
        report.add(SECTION_KUBE, f"{name}: {kube.describe(obj)}", "pass", outcome)
    return _credential(api, objs, ns, name, peer, lid, report)


def _credential(
    api: Client,
    objs: kube.Objects,
    ns: argparse.Namespace,
    name: str,
    peer: str,
    lid: str,
    report: Report,
) -> datetime | None:
    """Keep a valid join token in the cluster; mint one when missing, expired or rotating.

    The token is reusable: the agent joins on every start, so a restarted or
    rescheduled agent pod (and a second replica) joins with the same Secret until
    the token expires. Rotation keeps the previous token beside the new one.
    """
    from discovery_sync.kube import objects as kube

    secret_name = plan.credential_name(peer)
    line = f"{name}: join token Secret {plan.SYSTEM_NAMESPACE}/{secret_name}"
    live = objs.get(kube.SECRET, plan.SYSTEM_NAMESPACE, secret_name)
    if live is not None and not kube.managed(live):
        report.add(SECTION_KUBE, line, "fail", "exists and is not managed by meshfed")
        return None
    now = datetime.now(UTC)
    held = plan.credential_of(live) if live is not None else None
    valid = held is not None and held[1] > now + RENEW_MARGIN
    if valid and not ns.rotate_credentials:
        assert held is not None
        report.add(SECTION_KUBE, line, "pass", f"unchanged, expires {_until(held[1], now)}")
        return held[1]
    token = api.post(
        f"/api/v1/clusters/{name}/join-tokens",
        {"ttl_seconds": ns.credential_ttl, "reusable": True},
    )
    expires = plan.parse_time(str(token["expires"]))
    assert expires is not None
    previous = held if valid else None
    objs.ensure(plan.credential_secret(name, peer, lid, token["token"], expires, previous))
    kept = {token["token"], *([previous[0]] if previous is not None else [])}
    dropped = [t for t in (plan.tokens_of(live) if live is not None else ()) if t not in kept]
    revoked = revoke_tokens(api, name, dropped)  # reusable: would join until they expire
    if previous is not None:
        detail = (
            f"rotated, expires {_until(expires, now)}; the previous token stays until "
            f"{plan.timestamp(previous[1])}"
        )
    elif held is not None:
        detail = f"renewed (the previous one expired), expires {_until(expires, now)}"
    else:
        detail = f"created, expires {_until(expires, now)}"
    if revoked:
        detail += f"; revoked {revoked} token(s) no longer in the Secret"
    report.add(SECTION_KUBE, line, "pass", detail)
    return expires


def revoke_tokens(api: Client, cluster: str, tokens: Iterable[str]) -> int:
    """Revoke `cluster`'s join tokens by their `<id>.` prefix; gone already is fine.
    Returns how many the registry still held."""
    count = 0
    for token in tokens:
        try:
            api.delete(f"/api/v1/clusters/{cluster}/join-tokens/{token.split('.', 1)[0]}")
            count += 1
        except ApiError as exc:
            if exc.status != 404:
                raise
    return count


def _until(when: datetime, now: datetime) -> str:
    minutes = max(0, int((when - now).total_seconds() // 60))
    left = f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
    return f"{plan.timestamp(when)} (in {left})"


def unlink_kube(ns: argparse.Namespace, targets: dict[str, KubeTarget], api: Client) -> bool:
    """Delete this link's objects from both clusters and release the shared ones; the
    join tokens in the deleted Secrets are revoked (reusable ones would still join)."""
    from discovery_sync.kube import objects as kube

    ok = True
    ids = plan.link_ids(ns.a, ns.b)
    selector = plan.selector(ns.a, ns.b)
    for name in (ns.a, ns.b):
        target = targets[name]
        try:
            with kube.Objects.connect(target.kubeconfig, target.context) as objs:
                for kind, where in (
                    (kube.ROLE_BINDING, None),
                    (kube.ROLE, None),
                    (kube.CLUSTER_ROLE_BINDING, None),
                    (kube.CLUSTER_ROLE, None),
                    (kube.SECRET, plan.SYSTEM_NAMESPACE),
                ):
                    for obj in objs.list(kind, where, selector):
                        meta = obj["metadata"]
                        if kind == kube.SECRET and revoke_tokens(api, name, plan.tokens_of(obj)):
                            print(f"{name}: revoked the join tokens of {kube.describe(obj)}")
                        if objs.delete(kind, meta.get("namespace"), meta["name"]):
                            print(f"{name}: deleted {kube.describe(obj)}")
                for kind_name, namespace, obj_name in plan.shared_candidates():
                    kind = kube.KINDS[kind_name]
                    outcome = objs.release(kind, namespace, obj_name, ids)
                    shown = f"{kind_name} {namespace + '/' if namespace else ''}{obj_name}"
                    if outcome == "deleted":
                        print(f"{name}: deleted {shown}")
                    elif outcome == "released":
                        print(f"{name}: kept {shown} (other links use it)")
                    elif outcome == "kept":
                        print(f"{name}: kept {shown} (not empty)")
        except DiscoveryError as err:
            print(f"error: {name}: {err}", file=sys.stderr)
            ok = False
    return ok
