"""PATCH /api/v1/links/{a}/{b}: the expiry of a link's credential and CredentialsValid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.api.conftest import Api, cluster_body


def condition(link: dict[str, object], kind: str) -> dict[str, str]:
    conditions = link["conditions"]
    assert isinstance(conditions, list)
    found: dict[str, str] = next(c for c in conditions if c["type"] == kind)
    return found


def test_credential_expiry_is_recorded_and_drives_credentials_valid(api: Api) -> None:
    with api.as_role("editor") as c:
        for name in ("cred-a", "cred-b"):
            assert c.post("/api/v1/clusters", json=cluster_body(name)).status_code == 201
        assert c.post("/api/v1/links", json={"a": "cred-a", "b": "cred-b"}).status_code == 201
        soon = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
        r = c.patch("/api/v1/links/cred-b/cred-a", json={"credential_expiry": soon.isoformat()})
        assert r.status_code == 200, r.text
        link = r.json()
        assert datetime.fromisoformat(link["credential_expiry"]) == soon
        valid = condition(link, "CredentialsValid")
        assert (valid["status"], valid["reason"]) == ("True", "Valid")
        # the same expiry again changes nothing (idempotent `meshfed link`)
        again = c.patch("/api/v1/links/cred-a/cred-b", json={"credential_expiry": soon.isoformat()})
        assert again.headers["ETag"] == r.headers["ETag"]
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        expired = c.patch("/api/v1/links/cred-a/cred-b", json={"credential_expiry": past}).json()
        assert condition(expired, "CredentialsValid")["reason"] == "Expired"
        assert condition(expired, "CredentialsValid")["status"] == "False"
        stale = c.patch(
            "/api/v1/links/cred-a/cred-b",
            json={"credential_expiry": soon.isoformat()},
            headers={"If-Match": r.headers["ETag"]},
        )
        assert stale.status_code == 409
        bad = c.patch("/api/v1/links/cred-a/cred-b", json={"credential_expiry": "tomorrow"})
        assert bad.status_code == 422 and "credential_expiry" in bad.text
    with api.as_role("viewer") as v:
        denied = v.patch("/api/v1/links/cred-a/cred-b", json={"credential_expiry": None})
        assert denied.status_code == 403
