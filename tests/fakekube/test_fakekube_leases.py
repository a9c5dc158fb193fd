"""coordination.k8s.io/v1 Leases on the fake API server, through the official client."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.fakekube import FakeKube


def lease(name: str, holder: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, **spec},
    }


def test_lease_crud_versions_and_stale_put(api: client.ApiClient) -> None:
    coord = client.CoordinationV1Api(api)
    created = coord.create_namespaced_lease(
        "default", lease("lock", "a", acquireTime="2026-01-01T10:00:00+02:00", leaseTransitions=0)
    )
    assert created.spec.holder_identity == "a" and created.metadata.resource_version
    raw = coord.read_namespaced_lease("lock", "default", _preload_content=False)
    spec = json.loads(raw.data)["spec"]
    assert spec["acquireTime"] == "2026-01-01T08:00:00.000000Z"  # MicroTime: UTC, 6 digits
    with pytest.raises(ApiException) as err:
        coord.create_namespaced_lease("default", lease("lock", "b"))
    assert err.value.status == 409 and "AlreadyExists" in err.value.body
    # b read the lease, a renews first: b's PUT carries a stale version -> 409
    seen_by_b = coord.read_namespaced_lease("lock", "default")
    created.spec.renew_time = "2026-01-01T08:00:02.5Z"
    renewed = coord.replace_namespaced_lease("lock", "default", created)
    assert int(renewed.metadata.resource_version) > int(created.metadata.resource_version)
    seen_by_b.spec.holder_identity = "b"
    with pytest.raises(ApiException) as err:
        coord.replace_namespaced_lease("lock", "default", seen_by_b)
    assert err.value.status == 409 and "Conflict" in err.value.body
    assert coord.read_namespaced_lease("lock", "default").spec.holder_identity == "a"
    # the same write again is a no-op: no new version
    again = coord.replace_namespaced_lease("lock", "default", renewed)
    assert again.metadata.resource_version == renewed.metadata.resource_version
    coord.delete_namespaced_lease("lock", "default")
    with pytest.raises(ApiException) as err:
        coord.read_namespaced_lease("lock", "default")
    assert err.value.status == 404


def post(kube: FakeKube, path: str, body: Any) -> int:
    """POST without the client's own model validation (it would refuse bad bodies)."""
    req = urllib.request.Request(
        kube.url + path,
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_lease_validation(kube: FakeKube, api: client.ApiClient) -> None:
    coord = client.CoordinationV1Api(api)
    path = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    for spec, code in (
        ({"leaseDurationSeconds": 0}, 422),
        ({"leaseTransitions": -1}, 422),
        ({"renewTime": "yesterday"}, 400),
        ({"leaseDurationSeconds": "15"}, 400),
    ):
        body = lease("bad", "a")
        body["spec"].update(spec)
        assert post(kube, path, body) == code, spec
    assert post(kube, path, lease("good", "a", renewTime="2026-01-01T00:00:00Z")) == 201
    with pytest.raises(ApiException) as err:
        coord.create_namespaced_lease("nope", lease("lock", "a"))
    assert err.value.status == 404  # the namespace must exist


def test_lease_watch_and_shared_store(kube: FakeKube, api: client.ApiClient) -> None:
    """A second server on the same store: one object space, separate request logs."""
    with FakeKube(store=kube.store) as replica, client.ApiClient(replica.kube_config()) as api2:
        coord, coord2 = client.CoordinationV1Api(api), client.CoordinationV1Api(api2)
        listed = coord.list_namespaced_lease("default")
        events: list[tuple[str, str]] = []

        def follow() -> None:
            for ev in watch.Watch().stream(
                coord.list_namespaced_lease,
                "default",
                resource_version=listed.metadata.resource_version,
                timeout_seconds=2,
            ):
                events.append((ev["type"], ev["object"].spec.holder_identity))
                if len(events) == 2:
                    return

        t = threading.Thread(target=follow)
        t.start()
        made = coord2.create_namespaced_lease("default", lease("lock", "a"))
        made.spec.holder_identity = "b"
        coord2.replace_namespaced_lease("lock", "default", made)
        t.join(5)
        assert events == [("ADDED", "a"), ("MODIFIED", "b")]
        assert any(m == "PUT" for m, _ in replica.requests)
        assert not any(m == "PUT" for m, _ in kube.requests)
