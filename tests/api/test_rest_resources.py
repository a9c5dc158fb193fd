"""Clusters, links, services, topology, events, trust and metrics over real HTTP."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime

from cryptography import x509

from federation.model import Endpoint, Port, ServiceExport
from federation.store import open_store
from tests.api.conftest import Api, cluster_body
from tests.api.test_rest_access import assert_problem


def test_cluster_lifecycle_with_revisions(api: Api) -> None:
    with api.as_role("editor") as c:
        r = c.post("/api/v1/clusters", json=cluster_body("life", labels={"env": "prod"}))
        assert r.status_code == 201
        assert r.headers["location"] == "/api/v1/clusters/life"
        created = r.json()
        assert created["revision"] > 0 and created["labels"] == {"env": "prod"}
        got = c.get("/api/v1/clusters/life")
        assert got.headers["etag"] == f'"{created["revision"]}"'
        # PATCH with the current revision succeeds and moves the revision on.
        r = c.patch(
            "/api/v1/clusters/life",
            json={"zone": "eu-west-1b"},
            headers={"If-Match": got.headers["etag"]},
        )
        assert r.status_code == 200, r.text
        assert r.json()["zone"] == "eu-west-1b" and r.json()["region"] == "eu-west-1"
        assert r.json()["revision"] > created["revision"]
        # The old revision is stale now: 409, by header or by body.
        stale = c.patch(
            "/api/v1/clusters/life", json={"zone": "x"}, headers={"If-Match": got.headers["etag"]}
        )
        body = assert_problem(stale, 409, "Conflict")
        assert "revision" in str(body["detail"])
        assert_problem(
            c.patch("/api/v1/clusters/life", json={"zone": "x", "revision": created["revision"]}),
            409,
            "Conflict",
        )
        # Identity fields are not patchable.
        body = assert_problem(
            c.patch("/api/v1/clusters/life", json={"trust_domain": "other.example"}), 422, "Invalid"
        )
        assert body["field"] == "trust_domain"
        body = assert_problem(
            c.patch("/api/v1/clusters/life", json={"zone": "bad zone"}), 422, "Invalid"
        )
        assert body["field"] == "zone"
        assert_problem(c.post("/api/v1/clusters", json=cluster_body("life")), 409, "AlreadyExists")
        assert_problem(
            c.delete("/api/v1/clusters/life", headers={"If-Match": '"1"'}), 409, "Conflict"
        )
        assert c.delete("/api/v1/clusters/life").status_code == 204
        assert_problem(c.get("/api/v1/clusters/life"), 404, "NotFound")
        assert_problem(c.delete("/api/v1/clusters/life"), 404, "NotFound")


def test_lists_paginate_with_limit_and_continue(api: Api) -> None:
    names = [f"page-{i:02d}" for i in range(7)]
    with api.as_role("editor") as c:
        for name in names:
            assert c.post("/api/v1/clusters", json=cluster_body(name)).status_code == 201
        seen: list[str] = []
        token = None
        pages = 0
        while True:
            params: dict[str, str | int] = {"limit": 3}
            if token:
                params["continue"] = token
            body = c.get("/api/v1/clusters", params=params).json()
            assert len(body["items"]) <= 3
            seen += [i["name"] for i in body["items"]]
            pages += 1
            token = body["continue"]
            if token is None:
                break
        assert pages >= 3
        assert len(seen) == len(set(seen)) and set(names) <= set(seen)
        assert seen == sorted(seen)
        body = assert_problem(c.get("/api/v1/clusters", params={"continue": "%%%"}), 422, "Invalid")
        assert body["field"] == "continue"
        body = assert_problem(c.get("/api/v1/clusters", params={"limit": 0}), 422, "Invalid")
        assert body["field"] == "limit"
        for name in names:
            assert c.delete(f"/api/v1/clusters/{name}").status_code == 204


def test_links_conditions_and_topology(api: Api) -> None:
    with api.as_role("editor") as c:
        for name in ("lk-a", "lk-b", "lk-c"):
            c.post(
                "/api/v1/clusters", json=cluster_body(name, gateway_addresses=["10.1.1.1:15443"])
            )
        r = c.post(
            "/api/v1/links",
            json={"a": "lk-a", "b": "lk-b", "bidirectional": True, "mode": "terminating"},
        )
        assert r.status_code == 201, r.text
        link = r.json()
        conditions = {cond["type"]: cond for cond in link["conditions"]}
        assert set(conditions) == {"Ready", "GatewayReachable", "CredentialsValid", "Synced"}
        assert all(cond["status"] == "Unknown" for cond in conditions.values())
        assert all(cond["reason"] and cond["last_transition_time"] for cond in conditions.values())
        assert_problem(
            c.post("/api/v1/links", json={"a": "lk-a", "b": "lk-b"}), 409, "AlreadyExists"
        )
        assert_problem(
            c.post("/api/v1/links", json={"a": "lk-b", "b": "lk-a"}), 409, "AlreadyExists"
        )
        body = assert_problem(
            c.post("/api/v1/links", json={"a": "lk-a", "b": "lk-a"}), 422, "Invalid"
        )
        assert body["field"] == "b"
        body = assert_problem(
            c.post("/api/v1/links", json={"a": "lk-a", "b": "lk-c", "mode": "tunnel"}),
            422,
            "Invalid",
        )
        assert body["field"] == "mode"
        assert (
            c.post(
                "/api/v1/links",
                json={"a": "lk-c", "b": "lk-a", "bidirectional": False, "namespaces": ["shop"]},
            ).status_code
            == 201
        )
        assert c.get("/api/v1/links/lk-b/lk-a").json()["a"] == "lk-a"  # either order finds it
        topo = c.get("/api/v1/topology").json()
        nodes = {n["name"]: n for n in topo["nodes"]}
        assert nodes["lk-a"]["zone"] == "eu-west-1a" and nodes["lk-a"]["region"] == "eu-west-1"
        edges = {(e["a"], e["b"]): e for e in topo["edges"]}
        assert edges[("lk-a", "lk-b")]["ready"] == "Unknown"
        assert edges[("lk-c", "lk-a")]["bidirectional"] is False
        assert c.delete("/api/v1/links/lk-a/lk-b").status_code == 204
        assert_problem(c.get("/api/v1/links/lk-a/lk-b"), 404, "NotFound")
        # Deleting a cluster takes its links with it.
        assert c.delete("/api/v1/clusters/lk-c").status_code == 204
        assert_problem(c.get("/api/v1/links/lk-c/lk-a"), 404, "NotFound")


def test_services_imports_and_gateways(api: Api) -> None:
    with api.as_role("editor") as c:
        for name in ("svc-a", "svc-b", "svc-c"):
            c.post("/api/v1/clusters", json=cluster_body(name))
        c.post("/api/v1/links", json={"a": "svc-a", "b": "svc-b"})
    t0, t1 = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)

    async def seed() -> None:
        store = await open_store(api.store_url)
        try:
            await store.exports.put(
                ServiceExport("svc-b", "shop", "cart", t0, (Port(8080, name="http"),))
            )
            await store.exports.put(
                ServiceExport("svc-c", "shop", "cart", t1, (Port(8080, name="grpc"),))
            )
            await store.replace_endpoints(
                "svc-b",
                "shop",
                "cart",
                [
                    Endpoint("svc-b", "shop", "cart", "10.0.0.1", (Port(8080),), "z1"),
                    Endpoint("svc-b", "shop", "cart", "10.0.0.2", (Port(8080),), "z2", ready=False),
                ],
            )
        finally:
            await store.close()

    api.run(seed())
    with api.as_role("viewer") as c:
        listed = c.get("/api/v1/services", params={"namespace": "shop"}).json()["items"]
        cart = next(s for s in listed if s["name"] == "cart")
        assert cart["clusters"] == ["svc-b", "svc-c"]
        assert cart["conflicts"] and "svc-c" in cart["conflicts"][0]
        assert c.get("/api/v1/services", params={"cluster": "svc-a"}).json()["items"] == []
        detail = c.get("/api/v1/services/shop/cart").json()
        assert detail["ports"] == [
            {"port": 8080, "protocol": "TCP", "name": "http", "app_protocol": ""}
        ]
        assert set(detail["endpoints"]["svc-b"]) == {"z1", "z2"}
        assert detail["health"]["svc-b"] == {"ready": 1, "total": 2}
        assert detail["health"]["svc-c"] == {"ready": 0, "total": 0}
        imports = c.get("/api/v1/clusters/svc-a/imports").json()["items"]
        assert [(i["namespace"], i["name"], i["clusters"]) for i in imports] == [
            ("shop", "cart", ["svc-b"])
        ]
        assert len(imports[0]["endpoints"]["svc-b"]) == 2
        assert c.get("/api/v1/clusters/svc-c/imports").json()["items"] == []
        assert_problem(c.get("/api/v1/clusters/ghost/imports"), 404, "NotFound")
        assert c.get("/api/v1/gateways").status_code == 200


def test_every_change_is_audited_with_the_token_name(api: Api) -> None:
    with api.as_role("editor") as c:
        c.post("/api/v1/clusters", json=cluster_body("audited"))
        c.patch("/api/v1/clusters/audited", json={"network": "net2"})
        c.post("/api/v1/clusters/audited/join-tokens", json={"ttl_seconds": 60})
        c.delete("/api/v1/clusters/audited")
    with api.as_role("viewer") as c:
        events = []
        token = None
        while True:
            params: dict[str, str | int] = {"limit": 50}
            if token:
                params["continue"] = token
            body = c.get("/api/v1/events", params=params).json()
            events += body["items"]
            token = body["continue"]
            if not token:
                break
    mine = [(e["actor"], e["action"], e["target_kind"]) for e in events if e["target"] == "audited"]
    assert mine == [
        ("editor-bot", "create", "clusters"),
        ("editor-bot", "update", "clusters"),
        ("editor-bot", "create", "jointokens"),
        ("editor-bot", "delete", "clusters"),
    ]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)


def test_trust_bundle_is_public_and_verifies_the_cluster_intermediate(api: Api) -> None:
    with api.as_role("editor") as c:
        c.post("/api/v1/clusters", json=cluster_body("trusty"))
    with api.client() as anonymous:
        r = anonymous.get("/api/v1/trust/bundles/trusty.example")
        assert r.status_code == 200
        bundle = r.json()
        bundles = anonymous.get("/api/v1/trust/bundles").json()
        assert "spiffe://trusty.example" in bundles
        roots_pem = anonymous.get("/api/v1/trust/roots.pem").content
    assert bundle["spiffe_sequence"] >= 1 and bundle["spiffe_refresh_hint"] > 0
    (key,) = bundle["keys"]
    assert key["use"] == "x509-svid"
    root = x509.load_der_x509_certificate(base64.b64decode(key["x5c"][0]))
    assert x509.load_pem_x509_certificates(roots_pem) == [root]
    with api.as_role("admin") as c:
        istio = c.get("/api/v1/clusters/trusty/ca", params={"format": "istio"})
        linkerd = c.get("/api/v1/clusters/trusty/ca", params={"format": "linkerd"}).json()
        body = assert_problem(
            c.get("/api/v1/clusters/trusty/ca", params={"format": "pkcs12"}), 422, "Invalid"
        )
        assert body["field"] == "format"
    assert istio.headers["cache-control"] == "no-store"
    files = istio.json()["files"]
    assert set(files) == {"ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"}
    assert set(linkerd["files"]) == {"ca.crt", "issuer.crt", "issuer.key"}
    intermediate = x509.load_pem_x509_certificate(files["ca-cert.pem"].encode())
    intermediate.verify_directly_issued_by(root)  # raises if the bundle does not verify it
    assert intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_no_list_or_get_leaks_ca_material_or_token_digests(api: Api) -> None:
    with api.as_role("admin") as c:
        c.post("/api/v1/clusters", json=cluster_body("leaky"))
        c.post("/api/v1/clusters/leaky/join-tokens")
        paths = [
            "/api/v1/clusters",
            "/api/v1/clusters/leaky",
            "/api/v1/links",
            "/api/v1/services",
            "/api/v1/gateways",
            "/api/v1/topology",
            "/api/v1/events",
            "/api/v1/tokens",
            "/api/v1/trust/bundles",
            "/api/v1/clusters/leaky/imports",
        ]
        for path in paths:
            text = c.get(path, params={"limit": 500} if "topology" not in path else None).text
            for secret in ("sealed_key", "secret_sha256", "PRIVATE KEY", "cert_pem"):
                assert secret not in text, (path, secret)


def test_join_token_is_single_use_on_the_trust_service(api: Api) -> None:
    with api.as_role("editor") as c:
        c.post("/api/v1/clusters", json=cluster_body("joiner"))
        r = c.post("/api/v1/clusters/joiner/join-tokens", json={"ttl_seconds": 600})
        assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
        token = r.json()["token"]
        body = assert_problem(
            c.post("/api/v1/clusters/joiner/join-tokens", json={"ttl_seconds": 0}), 422, "Invalid"
        )
        assert body["field"] == "ttl_seconds"
        assert_problem(c.post("/api/v1/clusters/ghost/join-tokens"), 404, "NotFound")
    now = datetime.now(UTC)
    assert api.run(api.registry.trust.redeem_join_token(token, now)) == "joiner"
    from federation.errors import InvalidToken

    try:
        api.run(api.registry.trust.redeem_join_token(token, now))
    except InvalidToken:
        pass
    else:
        raise AssertionError("a join token was accepted twice")


def test_health_readiness_and_metrics(api: Api) -> None:
    with api.client() as c:
        assert c.get("/healthz").json() == {"status": "ok", "revision": None}
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        c.get("/api/v1/clusters/does-not-matter")
        text = c.get("/metrics").text
    assert (
        'meshfed_api_requests_total{code="401",method="GET",route="/api/v1/clusters/{name}"}'
        in text
    )
    assert "meshfed_api_request_duration_seconds_bucket" in text
    assert 'meshfed_store_request_duration_seconds_count{operation="get"}' in text
    assert "meshfed_endpoints" in text


def test_openapi_document_describes_the_api(api: Api) -> None:
    with api.client() as c:
        doc = c.get("/openapi.json").json()
    for path in (
        "/api/v1/clusters",
        "/api/v1/clusters/{name}",
        "/api/v1/clusters/{name}/join-tokens",
        "/api/v1/clusters/{name}/ca",
        "/api/v1/links",
        "/api/v1/links/{a}/{b}",
        "/api/v1/services",
        "/api/v1/services/{namespace}/{name}",
        "/api/v1/clusters/{name}/imports",
        "/api/v1/gateways",
        "/api/v1/topology",
        "/api/v1/events",
        "/api/v1/tokens",
        "/api/v1/trust/bundles",
        "/api/v1/trust/bundles/{trust_domain}",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in doc["paths"], path


def test_cluster_gateway_addresses_make_its_gateway_record(api: Api) -> None:
    """create / PATCH / DELETE of a cluster write its Gateway record in the same
    transaction; the health peers reported survives a PATCH."""

    def gateway(c: object, name: str) -> dict[str, object] | None:
        items = c.get("/api/v1/gateways", params={"limit": 500}).json()["items"]  # type: ignore[attr-defined]
        return next((g for g in items if g["cluster"] == name), None)

    with api.as_role("editor") as c:
        r = c.post(
            "/api/v1/clusters", json=cluster_body("gw-a", gateway_addresses=["10.9.0.1:15443"])
        )
        assert r.status_code == 201, r.text
        c.post("/api/v1/clusters", json=cluster_body("gw-none"))
        assert gateway(c, "gw-none") is None
        gw = gateway(c, "gw-a")
        assert gw is not None
        assert gw["addresses"] == ["10.9.0.1:15443"] and gw["healthy"] is None
        assert (gw["region"], gw["zone"], gw["trust_domain"]) == (
            "eu-west-1",
            "eu-west-1a",
            "gw-a.example",
        )

    async def mark_healthy() -> None:
        store = await open_store(api.store_url)
        try:
            held = await store.gateways.get("gw-a")
            await store.gateways.update(replace(held.record, healthy=True), held.revision)
        finally:
            await store.close()

    api.run(mark_healthy())
    with api.as_role("editor") as c:
        r = c.patch(
            "/api/v1/clusters/gw-a",
            json={"zone": "eu-west-1b", "gateway_addresses": ["10.9.0.2:15443", "gw.example:443"]},
        )
        assert r.status_code == 200, r.text
        gw = gateway(c, "gw-a")
        assert gw is not None
        assert gw["addresses"] == ["10.9.0.2:15443", "gw.example:443"]
        assert gw["zone"] == "eu-west-1b" and gw["healthy"] is True  # kept
        # A PATCH that touches nothing the gateway carries leaves its record alone.
        revision = gw["revision"]
        assert c.patch("/api/v1/clusters/gw-a", json={"labels": {"a": "b"}}).status_code == 200
        assert gateway(c, "gw-a")["revision"] == revision  # type: ignore[index]
        # No address, no gateway; an address again, a gateway again.
        assert c.patch("/api/v1/clusters/gw-a", json={"gateway_addresses": []}).status_code == 200
        assert gateway(c, "gw-a") is None
        c.patch("/api/v1/clusters/gw-none", json={"gateway_addresses": ["10.9.0.3:15443"]})
        assert gateway(c, "gw-none")["trust_domain"] == "gw-none.example"  # type: ignore[index]
        # A stale revision is still the caller's conflict, gateway or not.
        stale = c.patch(
            "/api/v1/clusters/gw-none", json={"zone": "eu-west-1c"}, headers={"If-Match": '"1"'}
        )
        assert stale.status_code in (409, 412), stale.text
        assert c.delete("/api/v1/clusters/gw-none").status_code == 204
        assert gateway(c, "gw-none") is None
        events = c.get("/api/v1/events", params={"limit": 500}).json()["items"]
        assert [e["action"] for e in events if e["target"] == "gw-none"] == [
            "create",
            "update",
            "delete",
        ]
