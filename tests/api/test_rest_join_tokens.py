"""Join tokens over real HTTP: reusable tokens, the list (never secrets), revocation, TTL caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from federation.errors import InvalidToken
from tests.api.conftest import Api, cluster_body
from tests.api.test_rest_access import assert_problem

YEAR = 365 * 24 * 3600
DAY = 24 * 3600


def redeem(api: Api, token: str) -> object:
    return api.run(api.registry.trust.redeem_join_token(token, datetime.now(UTC)))


def test_a_reusable_token_joins_many_times_and_the_list_counts_without_secrets(api: Api) -> None:
    with api.as_role("editor") as c:
        assert c.post("/api/v1/clusters", json=cluster_body("rjt")).status_code == 201
        r = c.post("/api/v1/clusters/rjt/join-tokens", json={"reusable": True, "ttl_seconds": YEAR})
        assert r.status_code == 201, r.text
        assert r.headers["cache-control"] == "no-store"
        made = r.json()
        single = c.post("/api/v1/clusters/rjt/join-tokens").json()
    assert made["reusable"] is True and single["reusable"] is False
    assert made["token"].split(".")[0] == made["id"]
    expires = datetime.fromisoformat(made["expires"])
    assert timedelta(days=364) < expires - datetime.now(UTC) <= timedelta(days=365)
    for _ in range(3):
        assert redeem(api, made["token"]) == "rjt"
    assert redeem(api, single["token"]) == "rjt"
    with pytest.raises(InvalidToken, match="already used"):
        redeem(api, single["token"])

    with api.as_role("editor") as c:
        r = c.get("/api/v1/clusters/rjt/join-tokens")
    assert r.status_code == 200, r.text
    items = {t["id"]: t for t in r.json()["items"]}
    assert set(items) == {made["id"], single["id"]}
    assert {k: v for k, v in items[made["id"]].items() if k != "expires"} == {
        "id": made["id"],
        "reusable": True,
        "uses": 3,
        "used": False,
    }
    assert (items[single["id"]]["used"], items[single["id"]]["uses"]) == (True, 1)
    for secret in (made["token"].split(".")[1], single["token"].split(".")[1], "secret_sha256"):
        assert secret not in r.text


def test_ttl_caps_are_422_naming_ttl_seconds(api: Api) -> None:
    with api.as_role("editor") as c:
        c.post("/api/v1/clusters", json=cluster_body("capped"))
        path = "/api/v1/clusters/capped/join-tokens"
        for body in (
            {"reusable": True, "ttl_seconds": YEAR + 1},  # past the year: the schema refuses
            {"ttl_seconds": DAY + 1},  # past the day for a single-use token: the service does
            {"reusable": False, "ttl_seconds": 30 * DAY},
            {"reusable": True, "ttl_seconds": 0},
            {"reusable": "yes"},
        ):
            problem = assert_problem(c.post(path, json=body), 422, "Invalid")
            expected = "reusable" if body.get("reusable") == "yes" else "ttl_seconds"
            assert problem["field"] == expected, (body, problem)
            assert expected in str(problem["detail"])
        assert c.post(path, json={"reusable": True, "ttl_seconds": 30 * DAY}).status_code == 201
        assert c.post(path, json={"ttl_seconds": DAY}).status_code == 201
        assert len(c.get(path).json()["items"]) == 2  # refused requests wrote nothing


def test_delete_revokes_a_token_and_unknown_ones_are_404(api: Api) -> None:
    with api.as_role("editor") as c:
        for name in ("rev-a", "rev-b"):
            c.post("/api/v1/clusters", json=cluster_body(name))
        token = c.post("/api/v1/clusters/rev-a/join-tokens", json={"reusable": True}).json()
        other = c.post("/api/v1/clusters/rev-b/join-tokens", json={"reusable": True}).json()
        assert redeem(api, token["token"]) == "rev-a"
        # rev-b cannot revoke rev-a's token, nor can a bad id or cluster name find one
        for path in (
            f"/api/v1/clusters/rev-b/join-tokens/{token['id']}",
            "/api/v1/clusters/rev-a/join-tokens/abcdef",
            "/api/v1/clusters/rev-a/join-tokens/NOT-AN-ID",
            f"/api/v1/clusters/Ghost/join-tokens/{token['id']}",
        ):
            assert_problem(c.delete(path), 404, "NotFound")
        r = c.delete(f"/api/v1/clusters/rev-a/join-tokens/{token['id']}")
        assert r.status_code == 204 and r.content == b""
        assert_problem(
            c.delete(f"/api/v1/clusters/rev-a/join-tokens/{token['id']}"), 404, "NotFound"
        )
        assert c.get("/api/v1/clusters/rev-a/join-tokens").json()["items"] == []
        assert_problem(c.get("/api/v1/clusters/ghost/join-tokens"), 404, "NotFound")
    with pytest.raises(InvalidToken, match="unknown join token"):
        redeem(api, token["token"])
    assert redeem(api, other["token"]) == "rev-b"  # another cluster's token is untouched
    with api.as_role("viewer") as c:  # join tokens are an editor's business
        assert_problem(c.get("/api/v1/clusters/rev-b/join-tokens"), 403, "Forbidden")
        assert_problem(
            c.delete(f"/api/v1/clusters/rev-b/join-tokens/{other['id']}"), 403, "Forbidden"
        )
    with api.as_role("viewer") as c:
        events = c.get("/api/v1/events", params={"limit": 500}).json()["items"]
    mine = [(e["actor"], e["action"], e["detail"]) for e in events if e["target"] == "rev-a"]
    assert ("editor-bot", "delete", f"id={token['id']}") in mine
    assert ("editor-bot", "create", f"id={token['id']} reusable=true") in mine


def test_openapi_describes_the_join_token_endpoints(api: Api) -> None:
    with api.client() as c:
        doc = c.get("/openapi.json").json()
    tokens = doc["paths"]["/api/v1/clusters/{name}/join-tokens"]
    assert {"get", "post"} <= set(tokens)
    one = doc["paths"]["/api/v1/clusters/{name}/join-tokens/{token_id}"]
    assert "204" in one["delete"]["responses"]
    schemas = doc["components"]["schemas"]
    assert schemas["JoinTokenIn"]["properties"]["reusable"]["type"] == "boolean"
    assert set(schemas["JoinTokenInfo"]["properties"]) == {
        "id",
        "reusable",
        "uses",
        "used",
        "expires",
    }
    assert {"id", "reusable"} <= set(schemas["JoinTokenOut"]["properties"])
