"""Roles, authentication and the problem+json error contract, over real HTTP."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api, cluster_body

PROBLEM_KEYS = {"type", "title", "status", "detail", "reason"}


def assert_problem(response: object, status: int, reason: str) -> dict[str, object]:
    import httpx

    assert isinstance(response, httpx.Response)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body.keys() >= PROBLEM_KEYS
    assert body["status"] == status
    assert body["reason"] == reason
    return dict(body)


def test_no_token_is_401_with_a_bearer_challenge(api: Api) -> None:
    with api.client() as c:
        r = c.get("/api/v1/clusters")
    assert_problem(r, 401, "Unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("token", ["nonsense", "admin.wrongsecret", "nobody.x", "a.b.c"])
def test_a_bad_token_is_401(api: Api, token: str) -> None:
    with api.client(token) as c:
        assert_problem(c.get("/api/v1/clusters"), 401, "Unauthorized")


def test_viewer_reads_but_may_not_write(api: Api) -> None:
    with api.as_role("viewer") as c:
        assert c.get("/api/v1/clusters").status_code == 200
        assert c.get("/api/v1/topology").status_code == 200
        assert c.get("/api/v1/events").status_code == 200
        body = assert_problem(c.post("/api/v1/clusters", json=cluster_body("v1")), 403, "Forbidden")
        assert "viewer" in str(body["detail"])
        assert_problem(c.post("/api/v1/links", json={"a": "x", "b": "y"}), 403, "Forbidden")
        assert_problem(c.delete("/api/v1/clusters/whatever"), 403, "Forbidden")
        assert_problem(
            c.post("/api/v1/tokens", json={"name": "t", "role": "admin"}), 403, "Forbidden"
        )


def test_editor_writes_but_may_not_mint_tokens_or_read_ca_keys(api: Api) -> None:
    with api.as_role("editor") as c:
        assert c.post("/api/v1/clusters", json=cluster_body("ed1")).status_code == 201
        assert c.post("/api/v1/clusters/ed1/join-tokens").status_code == 201
        assert_problem(
            c.post("/api/v1/tokens", json={"name": "sneaky", "role": "admin"}), 403, "Forbidden"
        )
        assert_problem(c.get("/api/v1/tokens"), 403, "Forbidden")
        assert_problem(c.get("/api/v1/clusters/ed1/ca?format=istio"), 403, "Forbidden")
        assert c.delete("/api/v1/clusters/ed1").status_code == 204


def test_admin_mints_tokens_that_work_and_lists_them_without_digests(api: Api) -> None:
    with api.as_role("admin") as c:
        r = c.post("/api/v1/tokens", json={"name": "ci", "role": "viewer"})
        assert r.status_code == 201
        assert r.headers["cache-control"] == "no-store"
        new = r.json()
        assert new["token"].startswith("ci.") and new["role"] == "viewer"
        listed = c.get("/api/v1/tokens").json()["items"]
        assert {"name", "role", "created", "expires"} == set(listed[0])
        assert "secret_sha256" not in c.get("/api/v1/tokens").text
        assert_problem(
            c.post("/api/v1/tokens", json={"name": "ci", "role": "viewer"}), 409, "AlreadyExists"
        )
    with api.client(new["token"]) as viewer:
        assert viewer.get("/api/v1/clusters").status_code == 200
    with api.as_role("admin") as c:
        assert c.delete("/api/v1/tokens/ci").status_code == 204
    with api.client(new["token"]) as revoked:
        assert_problem(revoked.get("/api/v1/clusters"), 401, "Unauthorized")


def test_expired_token_is_refused(api: Api) -> None:
    with api.as_role("admin") as c:
        r = c.post("/api/v1/tokens", json={"name": "brief", "role": "viewer", "ttl_seconds": 1})
    token = r.json()["token"]
    import time

    time.sleep(1.1)
    with api.client(token) as c:
        body = assert_problem(c.get("/api/v1/clusters"), 401, "Unauthorized")
    assert "expired" in str(body["detail"])


def test_validation_errors_are_422_naming_the_field(api: Api) -> None:
    with api.as_role("editor") as c:
        body = assert_problem(
            c.post("/api/v1/clusters", json=cluster_body("Bad_Name")), 422, "Invalid"
        )
        assert body["field"] == "name"
        body = assert_problem(
            c.post("/api/v1/clusters", json={**cluster_body("ok1"), "region": 7}), 422, "Invalid"
        )
        assert body["field"] == "region"
        body = assert_problem(
            c.post("/api/v1/clusters", json={**cluster_body("ok2"), "colour": "red"}),
            422,
            "Invalid",
        )
        assert body["field"] == "colour"
        body = assert_problem(
            c.post("/api/v1/clusters", json=cluster_body("ok3", gateway_addresses=["nope"])),
            422,
            "Invalid",
        )
        assert body["field"] == "gateway_addresses[0]"
        body = assert_problem(c.post("/api/v1/clusters", json={"region": "r"}), 422, "Invalid")
        assert body["field"] == "name"
        body = assert_problem(
            c.post("/api/v1/links", json={"a": "ghost-a", "b": "ghost-b"}), 422, "Invalid"
        )
        assert body["field"] == "a"
        body = assert_problem(
            c.post(
                "/api/v1/clusters",
                content=b"{not json",
                headers={"content-type": "application/json"},
            ),
            422,
            "Invalid",
        )


def test_reserved_names_and_trust_domain_are_refused(api: Api) -> None:
    with api.as_role("editor") as c:
        body = assert_problem(c.post("/api/v1/clusters", json=cluster_body("root")), 422, "Invalid")
        assert body["field"] == "name"
        body = assert_problem(
            c.post("/api/v1/clusters", json=cluster_body("rt", trust_domain="meshfed.local")),
            422,
            "Invalid",
        )
        assert body["field"] == "trust_domain"


def test_the_store_certificates_trust_domain_is_refused(api: Api) -> None:
    # `meshfed install --store etcd` issues etcd's certificates in store.meshfed.local.
    with api.as_role("editor") as c:
        body = assert_problem(
            c.post("/api/v1/clusters", json=cluster_body("st", trust_domain="store.meshfed.local")),
            422,
            "Invalid",
        )
        assert body["field"] == "trust_domain"
        assert "reserved" in body["detail"]
        assert_problem(c.get("/api/v1/clusters/st"), 404, "NotFound")


def test_unknown_things_are_404_problems(api: Api) -> None:
    with api.as_role("viewer") as c:
        assert_problem(c.get("/api/v1/clusters/nope"), 404, "NotFound")
        assert_problem(c.get("/api/v1/clusters/NOT_A_NAME"), 404, "NotFound")
        assert_problem(c.get("/api/v1/links/a/b"), 404, "NotFound")
        assert_problem(c.get("/api/v1/services/default/nope"), 404, "NotFound")
        assert_problem(c.get("/api/v1/no/such/route"), 404, "NotFound")
    with api.client() as anonymous:
        assert_problem(anonymous.get("/api/v1/trust/bundles/nope.example"), 404, "NotFound")


def test_wrong_method_is_a_problem_too(api: Api) -> None:
    with api.as_role("admin") as c:
        assert_problem(c.put("/api/v1/topology"), 405, "MethodNotAllowed")
