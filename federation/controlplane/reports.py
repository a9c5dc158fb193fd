"""Checking a ReportEndpoints message against its sender, and planning its writes. Pure.

Why this module exists: "the agent of cluster X may write only X's records" is
the control plane's main write rule (issue 4, DESIGN data flow 1); here it is a
function from (caller's cluster, message) to a plan, or PermissionDenied, with
every field validated and named on the way. The stream shell in `service`
executes the plan against the store under the stream's lease.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from federation.controlplane import meshfed_pb2 as pb
from federation.controlplane.convert import at, endpoint_from_pb, export_from_pb, service_key
from federation.errors import PermissionDenied, ValidationError
from federation.model import Endpoint, ServiceExport, ServiceKey


@dataclass(frozen=True, slots=True)
class ServiceWrite:
    """One service's export and its complete endpoint set."""

    export: ServiceExport
    endpoints: tuple[Endpoint, ...]

    @property
    def service(self) -> ServiceKey:
        return self.export.service


@dataclass(frozen=True, slots=True)
class ReportPlan:
    full_state: bool
    writes: tuple[ServiceWrite, ...]
    removals: tuple[ServiceKey, ...]  # deltas only: a full state removes what it omits


def _own(cluster: str, record_cluster: str, where: str) -> None:
    if record_cluster != cluster:
        raise PermissionDenied(
            f"{where}: the agent of {cluster} may not report records of cluster {record_cluster}"
        )


def _service_write(cluster: str, msg: pb.ServiceState, where: str) -> ServiceWrite:
    if not msg.HasField("export"):
        raise ValidationError(f"{where}.export", "is required")
    export = at(f"{where}.export", partial(export_from_pb, msg.export))
    _own(cluster, export.cluster, f"{where}.export")
    endpoints: list[Endpoint] = []
    addresses: set[str] = set()
    for i, ep_msg in enumerate(msg.endpoints):
        field = f"{where}.endpoints[{i}]"
        ep = at(field, partial(endpoint_from_pb, ep_msg))
        _own(cluster, ep.cluster, field)
        if ep.service_key != export.service:
            raise ValidationError(
                f"{field}.service", f"belongs to {ep.service_key}, not {export.service}"
            )
        if ep.address in addresses:
            raise ValidationError(f"{field}.address", f"{ep.address} is listed twice")
        addresses.add(ep.address)
        endpoints.append(ep)
    return ServiceWrite(export, tuple(endpoints))


def plan_report(cluster: str, msg: pb.EndpointReport, first: bool) -> ReportPlan:
    """Validate one message from cluster `cluster`'s agent and say what to write."""
    if first and not msg.full_state:
        raise ValidationError("full_state", "the first report of a stream must be the full state")
    if not first and msg.full_state:
        raise ValidationError("full_state", "only the first report of a stream is the full state")
    writes = tuple(_service_write(cluster, s, f"services[{i}]") for i, s in enumerate(msg.services))
    removals = tuple(
        at(f"removed[{i}]", partial(service_key, r)) for i, r in enumerate(msg.removed)
    )
    seen: set[ServiceKey] = set()
    for i, key in enumerate([w.service for w in writes] + list(removals)):
        if key in seen:
            raise ValidationError(
                "services" if i < len(writes) else "removed", f"{key} appears twice in one report"
            )
        seen.add(key)
    if msg.full_state and removals:
        raise ValidationError("removed", "a full-state report lists what exists; nothing to remove")
    return ReportPlan(msg.full_state, writes, removals)
