"""The fake API server, driven by the official `kubernetes` client over real HTTP."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.fakekube import FakeKube

MCS = ("multicluster.x-k8s.io", "v1alpha1")


def svc(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }


def ns(core: client.CoreV1Api, name: str) -> None:
    core.create_namespace({"metadata": {"name": name}})


def test_crud_versions_and_conflicts(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    ns(core, "demo")
    created = core.create_namespaced_service("demo", svc("echo"))
    assert created.metadata.namespace == "demo" and created.spec.cluster_ip
    assert created.spec.ports[0].protocol == "TCP"
    rv1 = int(created.metadata.resource_version)
    with pytest.raises(ApiException) as err:
        core.create_namespaced_service("demo", svc("echo"))
    assert err.value.status == 409 and "AlreadyExists" in err.value.body
    created.metadata.labels = {"a": "b"}
    updated = core.replace_namespaced_service("echo", "demo", created)
    assert int(updated.metadata.resource_version) > rv1
    created.metadata.labels = {"a": "c"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_service("echo", "demo", created)
    assert err.value.status == 409 and "Conflict" in err.value.body
    same = core.replace_namespaced_service("echo", "demo", updated)  # no-op write
    assert same.metadata.resource_version == updated.metadata.resource_version
    patched = core.patch_namespaced_service("echo", "demo", {"metadata": {"labels": {"x": "y"}}})
    assert patched.metadata.labels == {"a": "b", "x": "y"}
    core.delete_namespaced_service("echo", "demo")
    with pytest.raises(ApiException) as err:
        core.read_namespaced_service("echo", "demo")
    assert err.value.status == 404


def test_namespace_must_exist_and_names_are_validated(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as err:
        core.create_namespaced_service("nope", svc("echo"))
    assert err.value.status == 404
    with pytest.raises(ApiException) as err:
        core.create_namespaced_service("default", svc("Bad_Name"))
    assert err.value.status == 422
    with pytest.raises(ApiException) as err:
        core.create_namespaced_service("default", svc("ok", {"bad key!": "v"}))
    assert err.value.status == 422


def test_list_label_and_field_selectors_and_paging(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for i in range(5):
        core.create_namespaced_service("default", svc(f"s{i}", {"tier": "web" if i % 2 else "db"}))
    names = lambda r: [s.metadata.name for s in r.items]  # noqa: E731
    assert names(core.list_namespaced_service("default", label_selector="tier=web")) == ["s1", "s3"]
    assert names(
        core.list_namespaced_service("default", label_selector="tier in (db),tier!=x")
    ) == ["s0", "s2", "s4"]
    assert names(core.list_namespaced_service("default", label_selector="!tier")) == []
    assert names(core.list_service_for_all_namespaces(field_selector="metadata.name=s2")) == ["s2"]
    page = core.list_namespaced_service("default", limit=2)
    assert names(page) == ["s0", "s1"] and page.metadata._continue
    rest = core.list_namespaced_service("default", limit=10, _continue=page.metadata._continue)
    assert names(rest) == ["s2", "s3", "s4"]
    with pytest.raises(ApiException) as err:
        core.list_namespaced_service("default", label_selector="a in (")
    assert err.value.status == 400


def test_crd_schema_validation_and_status_subresource(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    good = {
        "apiVersion": "multicluster.x-k8s.io/v1alpha1",
        "kind": "ServiceImport",
        "metadata": {"name": "echo"},
        "spec": {
            "type": "ClusterSetIP",
            "ports": [{"port": 80, "protocol": "TCP"}],
            "ips": ["198.18.0.1"],
            "bogus": 1,
        },
    }
    made = custom.create_namespaced_custom_object(*MCS, "default", "serviceimports", good)
    assert "bogus" not in made["spec"]  # pruned, as structural schemas do
    bad = dict(good, metadata={"name": "bad"}, spec={"type": "Weird", "ports": []})
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(*MCS, "default", "serviceimports", bad)
    assert err.value.status == 422 and "spec.type: Unsupported value" in err.value.body
    missing = dict(good, metadata={"name": "bad"}, spec={"type": "Headless"})
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(*MCS, "default", "serviceimports", missing)
    assert "spec.ports: Required value" in err.value.body
    # status only through /status; spec changes ignored there
    status = {"status": {"clusters": [{"cluster": "west"}]}, "spec": {"type": "Headless"}}
    custom.patch_namespaced_custom_object_status(*MCS, "default", "serviceimports", "echo", status)
    got = custom.get_namespaced_custom_object(*MCS, "default", "serviceimports", "echo")
    assert (
        got["status"]["clusters"] == [{"cluster": "west"}] and got["spec"]["type"] == "ClusterSetIP"
    )
    got["status"] = {}
    got["spec"]["type"] = "Headless"
    again = custom.replace_namespaced_custom_object(*MCS, "default", "serviceimports", "echo", got)
    assert again["status"]["clusters"] == [{"cluster": "west"}]  # main resource ignores status
    assert again["metadata"]["generation"] == 2
    cond = {
        "type": "Valid",
        "status": "Maybe",
        "reason": "x",
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object_status(
            *MCS, "default", "serviceimports", "echo", {"status": {"conditions": [cond]}}
        )
    assert err.value.status == 422
    # one object, two versions
    beta = custom.get_namespaced_custom_object(
        "multicluster.x-k8s.io", "v1beta1", "default", "serviceimports", "echo"
    )
    assert beta["apiVersion"] == "multicluster.x-k8s.io/v1beta1"


def collect(api: client.ApiClient, n: int, **kw: Any) -> list[tuple[str, str, str]]:
    core = client.CoreV1Api(api)
    w = watch.Watch()
    out = []
    for event in w.stream(core.list_namespaced_service, "default", **kw):
        obj = event["raw_object"]
        out.append(
            (event["type"], obj["metadata"].get("name", ""), obj["metadata"]["resourceVersion"])
        )
        if len(out) >= n:
            w.stop()
            break
    return out


def test_watch_from_a_resource_version_replays_history(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    listed = core.list_namespaced_service("default")
    rv = listed.metadata.resource_version
    core.create_namespaced_service("default", svc("a"))
    core.patch_namespaced_service("a", "default", {"metadata": {"labels": {"x": "1"}}})
    core.delete_namespaced_service("a", "default")
    events = collect(api, 3, resource_version=rv, timeout_seconds=5)
    assert [(t, n) for t, n, _ in events] == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    rvs = [int(r) for _, _, r in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)


def test_watch_without_version_starts_with_current_objects(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_service("default", svc("a"))
    assert collect(api, 1, timeout_seconds=5)[0][:2] == ("ADDED", "a")


def test_watch_selector_transitions(api: client.ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_service("default").metadata.resource_version
    core.create_namespaced_service("default", svc("a"))
    core.patch_namespaced_service("a", "default", {"metadata": {"labels": {"on": "y"}}})
    core.patch_namespaced_service("a", "default", {"metadata": {"labels": {"on": None}}})
    events = collect(api, 2, resource_version=rv, label_selector="on=y", timeout_seconds=5)
    assert [(t, n) for t, n, _ in events] == [("ADDED", "a"), ("DELETED", "a")]


def test_bookmarks_carry_the_current_version(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_service("default").metadata.resource_version
    events = collect(api, 1, resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=5)
    assert events[0][0] == "BOOKMARK" and int(events[0][2]) >= int(rv)


def test_expired_version_is_410_gone(api: client.ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_service("default").metadata.resource_version
    core.create_namespaced_service("default", svc("a"))
    kube.compact()
    with pytest.raises(ApiException) as err:
        collect(api, 1, resource_version=rv, timeout_seconds=5)
    assert err.value.status == 410
    # a fresh list gives a version one can watch from again
    rv2 = core.list_namespaced_service("default").metadata.resource_version
    core.create_namespaced_service("default", svc("b"))
    assert collect(api, 1, resource_version=rv2, timeout_seconds=5)[0][:2] == ("ADDED", "b")


def test_timeout_seconds_ends_the_watch(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_service("default").metadata.resource_version
    start = time.monotonic()
    w = watch.Watch()
    assert (
        list(
            w.stream(
                core.list_namespaced_service, "default", resource_version=rv, timeout_seconds=1
            )
        )
        == []
    )
    assert 0.9 < time.monotonic() - start < 3


def test_drop_watches_cuts_open_streams(api: client.ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_service("default").metadata.resource_version
    done = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            resp = core.list_namespaced_service(
                "default", watch=True, resource_version=rv, _preload_content=False
            )
            for _ in resp.stream():
                pass
        except BaseException as exc:  # the client sees the cut as a protocol error
            errors.append(exc)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    time.sleep(0.2)
    kube.drop_watches()
    assert done.wait(5)


def test_namespace_delete_cascades_and_other_resources(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    disc = client.DiscoveryV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)
    ns(core, "gone")
    core.create_namespaced_secret("gone", {"metadata": {"name": "s"}, "data": {"k": "dg=="}})
    core.create_namespaced_service_account("gone", {"metadata": {"name": "sa"}})
    disc.create_namespaced_endpoint_slice(
        "gone",
        {
            "metadata": {"name": "e", "labels": {"kubernetes.io/service-name": "x"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"]}],
        },
    )
    rbac.create_cluster_role({"metadata": {"name": "r"}, "rules": []})
    core.delete_namespace("gone")
    assert core.list_secret_for_all_namespaces(field_selector="metadata.namespace=gone").items == []
    assert disc.list_endpoint_slice_for_all_namespaces().items == []
    assert [r.metadata.name for r in rbac.list_cluster_role().items] == ["r"]


def test_injected_failure(api: client.ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    kube.fail_next("create", "services", 500)
    with pytest.raises(ApiException) as err:
        core.create_namespaced_service("default", svc("a"))
    assert err.value.status == 500
    core.create_namespaced_service("default", svc("a"))
