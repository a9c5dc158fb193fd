"""Static exports (`/api/v1/clusters/{cluster}/exports/{namespace}/{name}`) over real HTTP.

What a Terraform `meshfed_service_export` (or curl) relies on: PUT creates then
replaces the whole state (endpoints not listed go, in one transaction with the
audit event), records carry no lease, errors name the field, an unknown cluster
is 404, and records an agent holds under its lease are refused with 409.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from federation.model import Endpoint, Port, ServiceExport
from federation.store import Versioned
from tests.api.conftest import Api, cluster_body
from tests.api.test_rest_access import assert_problem

URL = "/api/v1/clusters/{}/exports/{}/{}"


def url(cluster: str, namespace: str = "shop", name: str = "cart") -> str:
    return URL.format(cluster, namespace, name)


def make_cluster(api: Api, name: str) -> None:
    with api.as_role("editor") as c:
        r = c.post("/api/v1/clusters", json=cluster_body(name, zone="eu-west-1c"))
        assert r.status_code == 201, r.text


def stored(api: Api, cluster: str, namespace: str, name: str) -> tuple[Any, list[Any]]:
    """(export, endpoints) as the store holds them, with revisions and leases."""

    async def read() -> tuple[Versioned[ServiceExport] | None, list[Versioned[Endpoint]]]:
        store = api.registry.store
        export = await store.exports.find(f"{namespace}/{name}/{cluster}")
        return export, await store.endpoints.list(f"{namespace}/{name}/{cluster}/")

    return api.run(read())  # type: ignore[return-value]


BODY: dict[str, Any] = {
    "ports": [{"port": 8080, "name": "http", "app_protocol": "http"}],
    "scope": ["ex-peer"],
    "endpoints": [
        {"address": "10.1.0.1", "port": 9000, "zone": "z1"},
        {"address": "10.1.0.2", "ports": [{"name": "http", "port": 9001}], "weight": 3},
        {"address": "vm-3.example.internal", "ready": False},
    ],
}


def test_put_creates_replaces_and_delete_removes(api: Api) -> None:
    make_cluster(api, "ex-vm")
    with api.as_role("editor") as c:
        r = c.put(url("ex-vm"), json=BODY)
        assert r.status_code == 201, r.text
        assert r.headers["location"] == url("ex-vm")
        created = r.json()
        assert r.headers["etag"] == f'"{created["revision"]}"'
        assert created["managed_by"] == "static"
        assert created["scope"] == ["ex-peer"]
        assert created["ports"] == [
            {"port": 8080, "protocol": "TCP", "name": "http", "app_protocol": "http"}
        ]
        eps = {e["address"]: e for e in created["endpoints"]}
        assert eps["10.1.0.1"]["ports"][0]["port"] == 9000 and eps["10.1.0.1"]["zone"] == "z1"
        assert eps["10.1.0.2"]["weight"] == 3
        assert eps["10.1.0.2"]["zone"] == "eu-west-1c"  # the cluster's zone by default
        assert eps["vm-3.example.internal"]["ready"] is False
        assert eps["vm-3.example.internal"]["ports"][0]["port"] == 8080  # the service's ports
        assert c.get(url("ex-vm")).json() == created

        # Written without a lease, the export and its endpoints in one transaction.
        export, endpoints = stored(api, "ex-vm", "shop", "cart")
        assert export.lease == 0 and all(ep.lease == 0 for ep in endpoints)
        assert {ep.revision for ep in endpoints} == {export.revision}

        # The services views see it like an agent's export.
        listed = c.get("/api/v1/services", params={"cluster": "ex-vm"}).json()["items"]
        assert [(s["namespace"], s["name"]) for s in listed] == [("shop", "cart")]
        detail = c.get("/api/v1/services/shop/cart").json()
        assert detail["health"]["ex-vm"] == {"ready": 2, "total": 3}

        # The same PUT again changes nothing, not even the revision.
        again = c.put(url("ex-vm"), json=BODY)
        assert again.status_code == 200 and again.json()["revision"] == created["revision"]

        # Replace: endpoints not listed are removed, atomically; `created` is kept.
        body = {**BODY, "scope": [], "endpoints": [{"address": "10.1.0.9", "port": 9009}]}
        r = c.put(url("ex-vm"), json=body, headers={"If-Match": f'"{created["revision"]}"'})
        assert r.status_code == 200, r.text
        replaced = r.json()
        assert [e["address"] for e in replaced["endpoints"]] == ["10.1.0.9"]
        assert replaced["created"] == created["created"]
        assert replaced["revision"] > created["revision"]
        export, endpoints = stored(api, "ex-vm", "shop", "cart")
        assert [ep.record.address for ep in endpoints] == ["10.1.0.9"]
        assert export.revision == replaced["revision"]

        # A stale revision is a conflict and writes nothing.
        stale = {"If-Match": f'"{created["revision"]}"'}
        assert_problem(c.put(url("ex-vm"), json=BODY, headers=stale), 409, "Conflict")
        assert_problem(c.delete(url("ex-vm"), headers=stale), 409, "Conflict")
        assert c.get(url("ex-vm")).json() == replaced

        assert c.delete(url("ex-vm")).status_code == 204
        assert_problem(c.get(url("ex-vm")), 404, "NotFound")
        assert_problem(c.delete(url("ex-vm")), 404, "NotFound")
        assert stored(api, "ex-vm", "shop", "cart") == (None, [])
        events = [
            (e["actor"], e["action"], e["target"])
            for e in c.get("/api/v1/events", params={"limit": 500}).json()["items"]
            if e["target_kind"] == "exports"
        ]
    assert events == [
        ("editor-bot", "create", "shop/cart/ex-vm"),
        ("editor-bot", "update", "shop/cart/ex-vm"),
        ("editor-bot", "delete", "shop/cart/ex-vm"),
    ]


def test_invalid_fields_are_422_naming_the_field(api: Api) -> None:
    make_cluster(api, "ex-bad")
    two_ports = [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]
    cases: list[tuple[str, dict[str, Any], str]] = [
        (url("ex-bad"), {"scope": []}, "ports"),
        (url("ex-bad"), {"ports": []}, "ports"),
        (url("ex-bad"), {"ports": [{"port": 0}]}, "ports[0].port"),
        (url("ex-bad"), {"ports": [{"port": 80, "name": "Bad_Name"}]}, "ports[0].name"),
        (url("ex-bad"), {"ports": [{"port": 80}, {"port": 80}]}, "ports"),
        (url("ex-bad"), {"ports": [{"port": 80}], "scope": ["NOT A CLUSTER"]}, "scope[0]"),
        (url("ex-bad"), {"ports": [{"port": 80}], "extra": 1}, "extra"),
        (url("ex-bad", name="9lives"), {"ports": [{"port": 80}]}, "name"),
        (url("ex-bad", namespace="x" * 64), {"ports": [{"port": 80}]}, "namespace"),
        (
            url("ex-bad"),
            {"ports": [{"port": 80}], "endpoints": [{"address": "not an address", "port": 1}]},
            "endpoints[0].address",
        ),
        (
            url("ex-bad"),
            {"ports": [{"port": 80}], "endpoints": [{"address": "10.0.0.1", "zone": "a b"}]},
            "endpoints[0].zone",
        ),
        (
            url("ex-bad"),
            {"ports": [{"port": 80}], "endpoints": [{"address": "10.0.0.1", "port": 70000}]},
            "endpoints[0].port",
        ),
        (
            url("ex-bad"),
            {"ports": [{"port": 80}], "endpoints": [{"address": "10.0.0.1", "weight": -1}]},
            "endpoints[0].weight",
        ),
        (
            url("ex-bad"),
            {
                "ports": [{"port": 80}],
                "endpoints": [{"address": "10.0.0.1", "port": 1, "ports": [{"port": 2}]}],
            },
            "endpoints[0].ports",
        ),
        (
            url("ex-bad"),
            {"ports": two_ports, "endpoints": [{"address": "10.0.0.1", "port": 8080}]},
            "endpoints[0].port",
        ),
        (
            url("ex-bad"),
            {
                "ports": two_ports,
                "endpoints": [{"address": "10.0.0.1", "ports": [{"name": "grpc", "port": 1}]}],
            },
            "endpoints[0].ports[0].name",
        ),
        (
            url("ex-bad"),
            {
                "ports": [{"port": 80}],
                "endpoints": [{"address": "10.0.0.1"}, {"address": "10.0.0.1"}],
            },
            "endpoints[1].address",
        ),
    ]
    with api.as_role("editor") as c:
        for path, body, field in cases:
            problem = assert_problem(c.put(path, json=body), 422, "Invalid")
            assert problem["field"] == field, (body, problem)
        assert_problem(
            c.put(url("ex-bad"), json={"ports": [{"port": 80}]}, headers={"If-Match": "x"}),
            422,
            "Invalid",
        )
        assert_problem(c.get(url("ex-bad")), 404, "NotFound")  # nothing was written


def test_unknown_cluster_is_404(api: Api) -> None:
    body = {"ports": [{"port": 80}]}
    with api.as_role("editor") as c:
        for path in (url("ex-nowhere"), url("Not_A_Name")):
            assert_problem(c.put(path, json=body), 404, "NotFound")
            assert_problem(c.get(path), 404, "NotFound")
            assert_problem(c.delete(path), 404, "NotFound")


def test_roles(api: Api) -> None:
    make_cluster(api, "ex-roles")
    body = {"ports": [{"port": 80}], "endpoints": [{"address": "10.2.0.1"}]}
    with api.client() as anonymous:
        assert_problem(anonymous.put(url("ex-roles"), json=body), 401, "Unauthorized")
        assert_problem(anonymous.get(url("ex-roles")), 401, "Unauthorized")
    with api.as_role("viewer") as c:
        assert_problem(c.put(url("ex-roles"), json=body), 403, "Forbidden")
    with api.as_role("admin") as c:
        assert c.put(url("ex-roles"), json=body).status_code == 201
    with api.as_role("viewer") as c:
        assert c.get(url("ex-roles")).json()["endpoints"][0]["address"] == "10.2.0.1"
        assert_problem(c.delete(url("ex-roles")), 403, "Forbidden")
    with api.as_role("editor") as c:
        assert c.delete(url("ex-roles")).status_code == 204


def test_records_an_agent_holds_under_its_lease_are_409(api: Api) -> None:
    """A static write must not fight the cluster's agent: leased records are its own."""
    make_cluster(api, "ex-agent")
    now = datetime.now(UTC)

    async def agent_reports(lease_export: bool) -> int:
        store = api.registry.store
        lease = await store.grant_lease(3600)
        export = ServiceExport("ex-agent", "shop", "cart", now, (Port(8080),))
        await store.exports.put(export, lease=lease if lease_export else 0)
        endpoint = Endpoint("ex-agent", "shop", "cart", "10.3.0.1", (Port(8080),), "z1")
        await store.replace_endpoints("ex-agent", "shop", "cart", [endpoint], lease=lease)
        return lease

    body = {"ports": [{"port": 8080}], "endpoints": [{"address": "10.3.0.2"}]}
    for lease_export in (True, False):  # the agent's export, or only its endpoints
        lease = api.run(agent_reports(lease_export))
        with api.as_role("editor") as c:
            got = c.get(url("ex-agent")).json()
            assert got["managed_by"] == "agent"
            problem = assert_problem(c.put(url("ex-agent"), json=body), 409, "HeldByAgent")
            assert "agent" in str(problem["detail"])
            assert_problem(c.delete(url("ex-agent")), 409, "HeldByAgent")
            assert c.get(url("ex-agent")).json() == got  # untouched
        api.run(api.registry.store.revoke(lease))  # the agent goes away
        with api.as_role("editor") as c:
            if lease_export:
                assert_problem(c.get(url("ex-agent")), 404, "NotFound")
            r = c.put(url("ex-agent"), json=body)
            assert r.status_code in (200, 201), r.text
            assert r.json()["managed_by"] == "static"
            assert c.delete(url("ex-agent")).status_code == 204


def test_openapi_documents_the_export_routes(api: Api) -> None:
    with api.client() as c:
        doc = c.get("/openapi.json").json()
    ops = doc["paths"]["/api/v1/clusters/{cluster}/exports/{namespace}/{name}"]
    assert set(ops) >= {"get", "put", "delete"}
    assert "409" in ops["put"]["responses"] and "201" in ops["put"]["responses"]
    schema = doc["components"]["schemas"]["StaticEndpointIn"]
    assert set(schema["properties"]) == {"address", "port", "ports", "zone", "ready", "weight"}


def test_services_list_pages_at_the_store(api: Api) -> None:
    """Every service exactly once across pages, with filters, however exports group."""
    for name in ("pg-a", "pg-b", "pg-c"):
        make_cluster(api, name)
    exports = [
        ("pg-a", "pgns", "cart"),
        ("pg-b", "pgns", "cart"),
        ("pg-c", "pgns", "cart"),
        ("pg-a", "pgns", "cart-v2"),  # sorts before pgns/cart/ in the store
        ("pg-b", "pgns", "db"),
        ("pg-c", "pgns", "web"),
        ("pg-c", "pgns2", "web"),
    ]
    with api.as_role("editor") as c:
        for cluster, ns, name in exports:
            r = c.put(url(cluster, ns, name), json={"ports": [{"port": 80}]})
            assert r.status_code == 201, r.text

        def walk(params: dict[str, str], limit: int) -> list[tuple[str, list[str]]]:
            seen: list[tuple[str, list[str]]] = []
            token = None
            while True:
                query = {**params, "limit": str(limit), **({"continue": token} if token else {})}
                body = c.get("/api/v1/services", params=query).json()
                assert len(body["items"]) <= limit
                seen += [(f"{s['namespace']}/{s['name']}", s["clusters"]) for s in body["items"]]
                token = body["continue"]
                if token is None:
                    return seen

        everything = walk({}, 100)
        mine = [s for s in everything if s[0].startswith("pgns")]
        assert sorted(mine) == [
            ("pgns/cart", ["pg-a", "pg-b", "pg-c"]),
            ("pgns/cart-v2", ["pg-a"]),
            ("pgns/db", ["pg-b"]),
            ("pgns/web", ["pg-c"]),
            ("pgns2/web", ["pg-c"]),
        ]
        for limit in (1, 2, 3):
            assert walk({}, limit) == everything
            assert walk({"namespace": "pgns"}, limit) == [
                s for s in mine if s[0].startswith("pgns/")
            ]
            assert [s[0] for s in walk({"cluster": "pg-c"}, limit)] == [
                s[0] for s in everything if "pg-c" in s[1]
            ]
        body = c.get("/api/v1/services", params={"namespace": "pgns", "limit": 3}).json()
        assert len(body["items"]) == 3 and body["continue"]
        assert_problem(c.get("/api/v1/services", params={"continue": "!!"}), 422, "Invalid")
