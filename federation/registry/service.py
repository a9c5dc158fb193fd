"""The registry's operations on the federation: clusters, links, services, topology.

Why this module exists: the REST API, the CLI and the control plane must apply
the same rules (which fields may change, what a new link's status is, what a
deleted cluster takes with it, what gets audited), so the rules live here, free
of any web framework. Every change is one store transaction that also writes its
audit event; every method takes the time and the acting principal's name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from federation.errors import AlreadyExists, Conflict, NotFound, StoreError, ValidationError
from federation.model import (
    ApiToken,
    AuditEvent,
    BundleReport,
    Cluster,
    Endpoint,
    Gateway,
    JoinToken,
    Link,
    ServiceExport,
    ServiceKey,
    endpoint_prefix,
    set_condition,
)
from federation.model.imports import ServiceImport, imports_for, merge_ports
from federation.registry import audit
from federation.registry.auth import TokenService
from federation.registry.records import (
    ExportState,
    ServiceSummary,
    Topology,
    credential_condition,
    delete_op,
    endpoint_ops,
    gateway_ops,
    initial_conditions,
    put_op,
    static_export,
)
from federation.registry.service_tokens import DEFAULT_JOIN_TTL as DEFAULT_JOIN_TTL
from federation.registry.service_tokens import MAX_JOIN_TTL as MAX_JOIN_TTL
from federation.registry.service_tokens import MAX_REUSABLE_JOIN_TTL as MAX_REUSABLE_JOIN_TTL
from federation.registry.service_tokens import RegistryJoinTokens
from federation.registry.trust import TrustService
from federation.store import Store, Versioned
from federation.store.backend import ABSENT, Op, Put, prefix_end

# Fields of a cluster that may change after creation. The name is its identity and
# the trust domain is baked into its CA and every SVID it holds: change those by
# deleting and re-creating the cluster.
MUTABLE_CLUSTER_FIELDS = ("region", "zone", "network", "gateway_addresses", "source", "labels")
# A PATCH whose gateway write lost a race with a health report is retried this often.
GATEWAY_CAS_ATTEMPTS = 5
# A static export write that lost a race with another writer of the same service is
# retried this often before the caller gets the Conflict.
EXPORT_CAS_ATTEMPTS = 5
# Exports read per store round trip while filling one page of services.
SERVICE_PAGE_CHUNK = 1000


class HeldByAgent(Conflict):
    """A static export write met records the cluster's agent holds under its lease.

    Static exports (VMs, static clusters) are written without a lease; an agent's
    are held under its ReportEndpoints lease and rewritten on every report, so a
    static write over them would only fight the agent. A 409 instead.
    """

    def __init__(self, key: str) -> None:
        StoreError.__init__(
            self,
            f"{key} is reported by the cluster's agent (records held under its lease); "
            "change it at the agent's source, or stop the agent first",
        )
        self.key, self.expected, self.actual = key, -1, None


class Registry(RegistryJoinTokens):
    """The federation's operations over one store."""

    def __init__(self, store: Store, trust: TrustService, tokens: TokenService) -> None:
        self.store = store
        self.trust = trust
        self.tokens = tokens

    async def _commit(
        self, ops: list[Op], actor: str, action: str, kind: str, target: str, now: datetime
    ) -> int:
        """Apply `ops` and record the audit event in the same transaction."""
        event = audit.event(now, actor, action, kind, target)
        return await self.store.commit([*ops, audit.put(event)])

    async def ping(self) -> int:
        """The store's revision: proof that it answers."""
        return await self.store.revision()

    # -- clusters -----------------------------------------------------------------

    async def list_clusters(self) -> list[Versioned[Cluster]]:
        return await self.store.clusters.list()

    async def get_cluster(self, name: str) -> Versioned[Cluster]:
        return await self.store.clusters.get(name)

    async def create_cluster(
        self, cluster: Cluster, actor: str, now: datetime
    ) -> Versioned[Cluster]:
        """Create the cluster and its Gateway record (if it has gateway addresses) in one
        transaction, then issue its intermediate CA (all undone if issuing fails)."""
        self.trust.check_cluster(cluster)
        # A gateway record without a cluster (left by an older registry) is replaced.
        held = await self.store.gateways.find(cluster.name)
        gw_ops = gateway_ops(cluster, held)
        rev = await self._commit(
            [put_op(cluster, ABSENT), *gw_ops], actor, "create", Cluster.KIND, cluster.key, now
        )
        try:
            await self.trust.issue_cluster_ca(cluster, now)
        except BaseException:
            undo: list[Op] = [delete_op(Cluster.KIND, cluster.key, rev)]
            if any(isinstance(op, Put) for op in gw_ops):
                undo.append(delete_op(Gateway.KIND, cluster.key, rev))
            await self.store.commit(undo)
            raise
        return Versioned(cluster, rev, rev)

    async def update_cluster(
        self,
        name: str,
        changes: Mapping[str, Any],
        revision: int | None,
        actor: str,
        now: datetime,
    ) -> Versioned[Cluster]:
        """Change mutable fields; Conflict if `revision` is given and stale.

        The cluster's Gateway record follows in the same transaction (created,
        updated or deleted with `gateway_addresses`; locality copied; `healthy` kept).
        """
        for attempt in range(GATEWAY_CAS_ATTEMPTS):
            current = await self.store.clusters.get(name)
            expect = revision if revision is not None else current.revision
            for fieldname, value in changes.items():
                if fieldname not in MUTABLE_CLUSTER_FIELDS:
                    held = getattr(current.record, fieldname, None)
                    if fieldname in ("name", "trust_domain") and value == held:
                        continue
                    raise ValidationError(fieldname, "cannot be changed after creation")
            data = {**current.record.to_dict(), **changes}
            updated = Cluster.from_dict(data)
            ops = [
                put_op(updated, expect),
                *gateway_ops(updated, await self.store.gateways.find(name)),
            ]
            try:
                rev = await self._commit(ops, actor, "update", Cluster.KIND, name, now)
            except Conflict:
                # Retry only a lost race on the gateway record (a health report wrote
                # it); a stale cluster revision is the caller's conflict.
                again = await self.store.clusters.find(name)
                if again is None or again.revision != expect or attempt + 1 == GATEWAY_CAS_ATTEMPTS:
                    raise
                continue
            return Versioned(updated, rev, current.create_revision)
        raise AssertionError("unreachable")

    async def delete_cluster(
        self, name: str, revision: int | None, actor: str, now: datetime
    ) -> None:
        """Delete the cluster with its links, gateway, exports, endpoints, join tokens and
        bundle report; then its CA."""
        current = await self.store.clusters.get(name)
        ops: list[Op] = [
            delete_op(Cluster.KIND, name, revision if revision is not None else current.revision)
        ]
        for link in await self.store.links.list():
            if name in (link.record.a, link.record.b):
                ops.append(delete_op(Link.KIND, link.record.key, link.revision))
        if (gw := await self.store.gateways.find(name)) is not None:
            ops.append(delete_op(Gateway.KIND, name, gw.revision))
        for export in await self.store.exports.list():
            if export.record.cluster == name:
                ops.append(delete_op(ServiceExport.KIND, export.record.key, export.revision))
        for ep in await self.store.endpoints.list():
            if ep.record.cluster == name:
                ops.append(delete_op(Endpoint.KIND, ep.record.key, ep.revision))
        # Unconditional and gone-is-fine: a join racing the delete (a reusable token's
        # redemption counted, a token revoked, a gateway's report) must not fail it.
        for token in await self.store.join_tokens.list():
            if token.record.cluster == name:
                ops.append(replace(delete_op(JoinToken.KIND, token.record.key), must_exist=False))
        for report in await self.store.bundle_reports.list(f"{name}/"):
            key = report.record.key
            ops.append(replace(delete_op(BundleReport.KIND, key), must_exist=False))
        await self._commit(ops, actor, "delete", Cluster.KIND, name, now)
        await self.trust.remove_cluster_ca(name)

    # -- links --------------------------------------------------------------------

    async def list_links(self) -> list[Versioned[Link]]:
        return await self.store.links.list()

    async def get_link(self, a: str, b: str) -> Versioned[Link]:
        """The link between `a` and `b`, named in either order."""
        found = await self.store.links.find(f"{a}/{b}")
        if found is None:
            reverse = await self.store.links.find(f"{b}/{a}")
            if reverse is None:
                raise NotFound(f"links/{a}/{b}")
            found = reverse
        return found

    async def create_link(self, link: Link, actor: str, now: datetime) -> Versioned[Link]:
        """Link two existing clusters; the new link's conditions start Unknown."""
        for fieldname in ("a", "b"):
            name = getattr(link, fieldname)
            if await self.store.clusters.find(name) is None:
                raise ValidationError(fieldname, f"cluster {name!r} does not exist")
        if await self.store.links.find(f"{link.b}/{link.a}") is not None:
            raise AlreadyExists(f"links/{link.b}/{link.a}")
        created = replace(link, conditions=initial_conditions(now), credential_expiry=None)
        rev = await self._commit(
            [put_op(created, ABSENT)], actor, "create", Link.KIND, created.key, now
        )
        return Versioned(created, rev, rev)

    async def set_link_credential(
        self,
        a: str,
        b: str,
        expiry: datetime | None,
        revision: int | None,
        actor: str,
        now: datetime,
    ) -> Versioned[Link]:
        """Record when the link's credential expires and whether it is valid now."""
        current = await self.get_link(a, b)
        if revision is not None and revision != current.revision:
            raise Conflict(f"links/{current.record.key}", revision, current.revision)
        updated = replace(
            current.record,
            credential_expiry=expiry,
            conditions=set_condition(current.record.conditions, credential_condition(expiry, now)),
        )
        if updated == current.record:
            return current
        rev = await self._commit(
            [put_op(updated, current.revision)], actor, "update", Link.KIND, updated.key, now
        )
        return Versioned(updated, rev, current.create_revision)

    async def delete_link(self, a: str, b: str, actor: str, now: datetime) -> None:
        current = await self.get_link(a, b)
        key = current.record.key
        await self._commit(
            [delete_op(Link.KIND, key, current.revision)], actor, "delete", Link.KIND, key, now
        )

    # -- services, imports, gateways, topology --------------------------------------

    async def list_services(
        self, cluster: str | None = None, namespace: str | None = None
    ) -> list[ServiceSummary]:
        grouped: dict[ServiceKey, list[ServiceExport]] = defaultdict(list)
        for v in await self.store.exports.list(f"{namespace}/" if namespace else ""):
            grouped[v.record.service].append(v.record)
        out = []
        for key, exports in grouped.items():
            if cluster is not None and all(e.cluster != cluster for e in exports):
                continue
            ports, conflicts = merge_ports(exports)
            ordered = tuple(sorted(exports, key=lambda e: (e.created, e.cluster)))
            out.append(ServiceSummary(key, ordered, ports, conflicts))
        return sorted(out, key=lambda s: str(s.service))

    async def list_services_page(
        self, cluster: str | None, namespace: str | None, after: str | None, limit: int
    ) -> tuple[list[ServiceSummary], bool]:
        """One page of `list_services`, read from the store as key ranges: at most
        `limit` services after service `after` (`ns/name`), and whether more follow.

        Services come in the store's key order (`<ns>/<name>/`), so a page costs
        about `limit` exports rather than every export in the federation; a `cluster`
        filter may read further to fill the page.
        """
        prefix = f"{namespace}/" if namespace else ""
        start = prefix_end(f"{after.rstrip('/')}/") if after else prefix
        chunk = min(max(2 * limit, 64), SERVICE_PAGE_CHUNK)
        out: list[ServiceSummary] = []
        group: list[ServiceExport] = []

        def close_group() -> None:
            if group and (cluster is None or any(e.cluster == cluster for e in group)):
                ports, conflicts = merge_ports(group)
                ordered = tuple(sorted(group, key=lambda e: (e.created, e.cluster)))
                out.append(ServiceSummary(group[0].service, ordered, ports, conflicts))
            group.clear()

        while len(out) <= limit:
            batch = await self.store.exports.list_page(prefix, start, chunk)
            for v in batch:
                e = v.record
                if group and (group[0].namespace, group[0].name) != (e.namespace, e.name):
                    close_group()
                    if len(out) > limit:
                        break
                group.append(e)
            if len(batch) < chunk:
                close_group()
                break
            start = f"{batch[-1].record.key}\0"
        return out[:limit], len(out) > limit

    async def get_service(self, namespace: str, name: str) -> ServiceSummary:
        key = ServiceKey(namespace, name)
        exports = [v.record for v in await self.store.exports.list(f"{namespace}/{name}/")]
        if not exports:
            raise NotFound(f"services/{key}")
        ports, conflicts = merge_ports(exports)
        endpoints = tuple(v.record for v in await self.store.endpoints.list(f"{namespace}/{name}/"))
        ordered = tuple(sorted(exports, key=lambda e: (e.created, e.cluster)))
        return ServiceSummary(key, ordered, ports, conflicts, endpoints)

    # -- static exports (VMs, static clusters): written without a lease ---------------

    async def _export_state(
        self, cluster: str, namespace: str, name: str
    ) -> tuple[Versioned[ServiceExport] | None, list[Versioned[Endpoint]]]:
        export = await self.store.exports.find(f"{namespace}/{name}/{cluster}")
        endpoints = await self.store.endpoints.list(endpoint_prefix(namespace, name, cluster))
        return export, endpoints

    async def get_export(self, cluster: str, namespace: str, name: str) -> ExportState:
        """`cluster`'s export of `namespace/name` with its endpoints (NotFound if either
        the cluster or the export does not exist)."""
        await self.store.clusters.get(cluster)
        export, endpoints = await self._export_state(cluster, namespace, name)
        if export is None:
            raise NotFound(f"exports/{namespace}/{name}/{cluster}")
        return ExportState(export, tuple(endpoints))

    async def put_export(
        self,
        cluster: str,
        namespace: str,
        name: str,
        spec: Mapping[str, Any],
        revision: int | None,
        actor: str,
        now: datetime,
    ) -> tuple[ExportState, bool]:
        """Create or replace a static export and its whole endpoint set, in one
        transaction with its audit event; (the new state, whether it was created).

        Records are written without a lease. HeldByAgent (409) if the cluster's agent
        holds the export or any endpoint of it under its lease; Conflict if `revision`
        is given and is not the export's. A re-created export keeps its `created`
        (the oldest export wins a port conflict). Nothing is written when nothing changes.
        """
        held_cluster = (await self.store.clusters.get(cluster)).record
        static_export(held_cluster, namespace, name, spec, now)  # 422s before any lease check
        key = f"{namespace}/{name}/{cluster}"
        for attempt in range(EXPORT_CAS_ATTEMPTS):
            current, held = await self._export_state(cluster, namespace, name)
            if (current is not None and current.lease) or any(ep.lease for ep in held):
                raise HeldByAgent(f"exports/{key}")
            if revision is not None and (current is None or current.revision != revision):
                raise Conflict(f"exports/{key}", revision, current.revision if current else None)
            created = current.record.created if current is not None else now
            export, endpoints = static_export(held_cluster, namespace, name, spec, created)
            ep_ops = endpoint_ops(held, endpoints)
            if current is not None and current.record == export and not ep_ops:
                return ExportState(current, tuple(held)), False
            # The export is rewritten on any change, so its revision (the ETag) moves
            # with its endpoints too.
            ops = [put_op(export, current.revision if current is not None else ABSENT), *ep_ops]
            action = "create" if current is None else "update"
            try:
                rev = await self._commit(ops, actor, action, ServiceExport.KIND, key, now)
            except (Conflict, AlreadyExists, NotFound):
                if revision is not None or attempt + 1 == EXPORT_CAS_ATTEMPTS:
                    raise
                continue  # another writer moved the export or an endpoint: re-read, retry
            create_rev = current.create_revision if current is not None else rev
            unchanged = {ep.record.address: ep for ep in held}
            versioned = tuple(
                unchanged[ep.address]
                if ep.address in unchanged and unchanged[ep.address].record == ep
                else Versioned(ep, rev, rev)
                for ep in endpoints
            )
            state = ExportState(Versioned(export, rev, create_rev), versioned)
            return state, current is None
        raise AssertionError("unreachable")

    async def delete_export(
        self,
        cluster: str,
        namespace: str,
        name: str,
        revision: int | None,
        actor: str,
        now: datetime,
    ) -> None:
        """Delete a static export with all its endpoints (one transaction, audited).
        HeldByAgent (409) for an agent's export: the agent would only report it again."""
        state = await self.get_export(cluster, namespace, name)
        key = state.export.record.key
        if state.leased:
            raise HeldByAgent(f"exports/{key}")
        expect = revision if revision is not None else state.export.revision
        ops: list[Op] = [delete_op(ServiceExport.KIND, key, expect)]
        ops += [delete_op(Endpoint.KIND, ep.record.key, ep.revision) for ep in state.endpoints]
        await self._commit(ops, actor, "delete", ServiceExport.KIND, key, now)

    async def imports(self, cluster: str) -> list[ServiceImport]:
        await self.store.clusters.get(cluster)
        links = [v.record for v in await self.store.links.list()]
        exports = [v.record for v in await self.store.exports.list()]
        endpoints = [v.record for v in await self.store.endpoints.list()]
        return list(imports_for(cluster, links, exports, endpoints).values())

    async def list_gateways(self) -> list[Versioned[Gateway]]:
        return await self.store.gateways.list()

    async def topology(self) -> Topology:
        return Topology(
            clusters=tuple(v.record for v in await self.store.clusters.list()),
            links=tuple(v.record for v in await self.store.links.list()),
            gateways={v.record.cluster: v.record for v in await self.store.gateways.list()},
        )

    async def endpoints_by_cluster(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for v in await self.store.endpoints.list():
            counts[v.record.cluster] += 1
        return dict(counts)

    # -- audit and tokens -------------------------------------------------------------

    async def list_events(self) -> list[AuditEvent]:
        return [v.record for v in await self.store.events.list()]

    async def create_token(
        self, name: str, role: str, ttl: timedelta | None, actor: str, now: datetime
    ) -> tuple[ApiToken, str]:
        """A new API token; the bearer string is returned once and never stored."""
        record, bearer = self.tokens.new_token(name, role, now, ttl)
        await self._commit([put_op(record, ABSENT)], actor, "create", ApiToken.KIND, name, now)
        return record, bearer

    async def list_tokens(self) -> list[ApiToken]:
        return [v.record for v in await self.store.tokens.list()]

    async def delete_token(self, name: str, actor: str, now: datetime) -> None:
        current = await self.store.tokens.get(name)
        await self._commit(
            [delete_op(ApiToken.KIND, name, current.revision)],
            actor,
            "delete",
            ApiToken.KIND,
            name,
            now,
        )

    async def bootstrap_admin(self, now: datetime) -> str | None:
        """On an empty federation, the first admin token; None if any token exists."""
        if await self.store.tokens.list():
            return None
        try:
            _, bearer = await self.create_token("admin", "admin", None, "meshfed-serve", now)
        except AlreadyExists:
            return None  # another replica bootstrapped first
        return bearer
