"""The pure cores: Watch projection, link health, identity rules, report planning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from federation.client.watch import WatchView, event_from_pb
from federation.controlplane import meshfed_pb2 as pb
from federation.controlplane.convert import gateway_from_pb, gateway_to_pb
from federation.controlplane.health import Probe, apply_probe, gateway_health, parse_directions
from federation.controlplane.identity import component_of, require
from federation.controlplane.projection import Projector, items, touched_by
from federation.controlplane.reports import plan_report
from federation.controlplane.status import status_of
from federation.controlplane.watch import delta_event, snapshot_event
from federation.errors import InvalidToken, NotFound, PermissionDenied, ValidationError
from federation.model import Endpoint, Gateway, Link, Port, ServiceExport, ServiceKey
from federation.store.typed import Change
from trust_bundle import agent_id

T0 = datetime(2026, 1, 1, tzinfo=UTC)
P = (Port(80),)


def export(cluster: str, name: str = "web", scope: tuple[str, ...] = ()) -> ServiceExport:
    return ServiceExport(cluster, "shop", name, T0, P, scope)


def ep(cluster: str, addr: str, name: str = "web") -> Endpoint:
    return Endpoint(cluster, "shop", name, addr, P, "z")


def put(record: object) -> Change:
    return Change("put", record.KIND, record.key, record)  # type: ignore[attr-defined]


def delete(record: object) -> Change:
    return Change("delete", record.KIND, record.key, None)  # type: ignore[attr-defined]


WEB = ServiceKey("shop", "web")


def test_projection_filters_by_link_and_scope() -> None:
    records = [
        Link("a", "b"),
        Link("c", "b", bidirectional=False),  # c imports b; a sees nothing of c
        export("b"),
        export("c"),
        export("b", "secret", scope=("c",)),
        ep("b", "10.0.0.1"),
        ep("c", "10.0.0.2"),
        Gateway("b", ("b:1",)),
        Gateway("c", ("c:1",)),
    ]
    view = Projector("a", records).view
    assert set(view.imports) == {WEB}
    assert view.imports[WEB].clusters == ("b",)
    assert [e.address for e in view.imports[WEB].endpoints] == ["10.0.0.1"]
    assert set(view.links) == {"a/b"} and set(view.gateways) == {"b"}


def test_projection_deltas() -> None:
    proj = Projector("a", [Link("a", "b"), export("b"), ep("b", "10.0.0.1")])
    delta = proj.apply([put(ep("b", "10.0.0.2"))])
    assert [e.address for e in delta.upserted.imports[WEB].endpoints] == ["10.0.0.1", "10.0.0.2"]
    assert not proj.apply([put(ep("c", "10.9.9.9"))])  # c is not linked: nothing for a
    delta = proj.apply([delete(export("b"))])
    assert delta.removed.imports == (WEB,)
    delta = proj.apply([delete(Link("a", "b"))])
    assert delta.removed.links == ("a/b",)


def test_catch_up_items_upsert_present_and_remove_absent() -> None:
    proj = Projector("a", [Link("a", "b"), export("b")])
    touched = touched_by([put(ep("b", "1.1.1.1")), delete(export("b", "old"))])
    delta = items(proj.view, touched)
    assert set(delta.upserted.imports) == {WEB}
    assert delta.removed.imports == (ServiceKey("shop", "old"),)
    assert touched_by([put(Link("a", "c"))]).links


def test_watch_messages_round_trip_into_the_client_view() -> None:
    proj = Projector("a", [Link("a", "b"), export("b"), ep("b", "10.0.0.1")])
    view = WatchView().apply(event_from_pb("a", snapshot_event(proj.view, 5)))
    assert view.revision == 5 and set(view.items.imports) == {WEB}
    delta = proj.apply([delete(export("b"))])
    view = view.apply(event_from_pb("a", delta_event(delta, 6)))
    assert view.revision == 6 and not view.items.imports
    assert set(view.items.links) == {"a/b"}


@pytest.mark.parametrize(
    "gateway",
    [
        Gateway("b", ("gw.b:15443",)),
        Gateway(
            "b",
            ("gw.b:15443", "10.0.0.9:443"),
            modes=("terminating",),
            healthy=False,
            region="eu-west-1",
            zone="eu-west-1c",
            trust_domain="b.meshfed.test",
        ),
    ],
)
def test_gateway_locality_and_trust_domain_cross_the_wire(gateway: Gateway) -> None:
    msg = gateway_to_pb(gateway)
    assert (msg.region, msg.zone, msg.trust_domain) == (
        gateway.region,
        gateway.zone,
        gateway.trust_domain,
    )
    assert gateway_from_pb(pb.Gateway.FromString(msg.SerializeToString())) == gateway
    # The Watch delivers them to the client view.
    proj = Projector("a", [Link("a", "b"), gateway])
    view = WatchView().apply(event_from_pb("a", snapshot_event(proj.view, 3)))
    assert view.items.gateways == {"b": gateway}


def test_gateway_field_errors_name_the_position() -> None:
    bad = pb.Gateway(cluster="b", addresses=["gw:1"], modes=["terminating"], zone="-bad")
    state = pb.WatchState(gateways=[bad])
    with pytest.raises(ValidationError) as err:
        event_from_pb("a", pb.WatchEvent(revision=1, snapshot=state))
    assert err.value.field == "gateways[0].zone"


def test_own_exports_carry_the_watchers_local_endpoints_for_its_gateway() -> None:
    """A gateway routes inbound traffic to its own cluster's endpoints: the Watch sends them."""
    proj = Projector(
        "b", [Link("a", "b"), export("b"), ep("b", "10.0.0.1"), export("a"), ep("a", "10.1.0.1")]
    )
    own = proj.view.exports[WEB]
    assert own.clusters == ("b",)
    assert [e.address for e in own.endpoints] == ["10.0.0.1"]  # never another cluster's
    assert proj.view.imports[WEB].clusters == ("a",)  # b also imports a's web
    delta = proj.apply([put(ep("b", "10.0.0.2"))])
    assert [e.address for e in delta.upserted.exports[WEB].endpoints] == ["10.0.0.1", "10.0.0.2"]
    assert not delta.upserted.imports  # a's side did not move
    view = WatchView().apply(event_from_pb("b", snapshot_event(proj.view, 7)))
    delta = proj.apply([delete(export("b"))])
    assert delta.removed.exports == (WEB,)
    view = view.apply(event_from_pb("b", delta_event(delta, 8)))
    assert not view.items.exports and set(view.items.imports) == {WEB}
    touched = touched_by([put(ep("b", "10.0.0.3"))])
    assert items(proj.view, touched).removed.exports == (WEB,)  # catch-up: gone


def test_link_conditions_keep_transition_time_and_both_directions() -> None:
    link = Link("a", "b")
    t1, t2, t3 = T0, T0 + timedelta(seconds=5), T0 + timedelta(seconds=9)
    link = apply_probe(link, Probe("a", "b", True), t1)
    assert link.condition("GatewayReachable").status == "True"  # type: ignore[union-attr]
    link = apply_probe(link, Probe("a", "b", True), t2)
    assert link.condition("Ready").last_transition_time == t1  # type: ignore[union-attr]
    link = apply_probe(link, Probe("b", "a", False, "ConnectRefused", "x; y"), t3)
    reach = link.condition("GatewayReachable")
    assert reach is not None and reach.status == "False" and reach.last_transition_time == t3
    assert parse_directions(reach.message)[("b", "a")].message == "x, y"
    assert link.condition("Ready").reason == "ConnectRefused"  # type: ignore[union-attr]
    assert gateway_health("a", [link]) is False and gateway_health("b", [link]) is True
    with pytest.raises(ValidationError):
        apply_probe(Link("a", "b", bidirectional=False), Probe("b", "a", True), t1)


def test_identity_rules() -> None:
    assert component_of(agent_id("td", "east")) == ("agent", "east")
    from trust_bundle import workload_id

    with pytest.raises(PermissionDenied):
        component_of(workload_id("td", "ns", "sa"))


def test_report_plan_refuses_other_clusters_and_names_fields() -> None:
    from federation.controlplane.convert import endpoint_to_pb, export_to_pb

    msg = pb.EndpointReport(
        full_state=True,
        services=[
            pb.ServiceState(
                export=export_to_pb(export("a")), endpoints=[endpoint_to_pb(ep("b", "1.1.1.1"))]
            )
        ],
    )
    with pytest.raises(PermissionDenied):
        plan_report("a", msg, first=True)
    msg.services[0].endpoints[0].cluster = "a"
    msg.services[0].endpoints[0].address = "not an address!"
    with pytest.raises(ValidationError) as err:
        plan_report("a", msg, first=True)
    assert err.value.field.startswith("services[0].endpoints[0].address")
    with pytest.raises(ValidationError):
        plan_report("a", pb.EndpointReport(), first=True)  # first must be full state


def test_status_table() -> None:
    import grpc

    assert status_of(NotFound("x")).code == grpc.StatusCode.NOT_FOUND  # type: ignore[union-attr]
    assert status_of(InvalidToken("x")).code == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[union-attr]
    st = status_of(ValidationError("f", "bad"))
    assert st is not None and st.code == grpc.StatusCode.INVALID_ARGUMENT and st.field == "f"
    assert status_of(RuntimeError("boom")) is None
    with pytest.raises(PermissionDenied):
        require(_caller("gateway", "east"), "east", ("agent",))


def _caller(component: str, cluster: str):  # type: ignore[no-untyped-def]
    from federation.controlplane.identity import Caller

    return Caller(agent_id("td", cluster), component, cluster, None)  # type: ignore[arg-type]
