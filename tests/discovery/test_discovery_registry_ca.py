"""The ConfigMap meshfed-registry-ca follows a root rotation (discovery_sync.kube.registry_ca).

First the pure decision on data, then the writer against the fake API server, then
two replicas of east's agent against a real registry walking a rotation: the leader
creates the ConfigMap with the current root, holds both after prepare and only the
new one after activate + retire; the follower writes nothing; an unchanged view
writes nothing (the ConfigMap's resourceVersion stands).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from kube_pipeline import eventually, kube_api
from kubernetes import client
from registry_fixture import CLUSTERS, Registry, registry

from discovery_sync.agent import Agent, AgentConfig
from discovery_sync.kube import registry_ca
from discovery_sync.kube.registry_ca import KEY, RegistryCaWriter, decide, roots_text
from discovery_sync.leader import Timing
from discovery_sync.types import Locality
from federation.client.rotation import fingerprints
from federation.install.common import REGISTRY_CA_CONFIGMAP
from federation.model import TrustDomain
from tests.fakekube import FakeKube
from trust_bundle import create_root_ca

NS = "meshfed-system"
TD = "east.meshfed.test"
FAST = Timing(2, 1.0, 0.25)


def root_pem() -> str:
    cert = create_root_ca(datetime.now(UTC)).certificate
    return cert.public_bytes(serialization.Encoding.PEM).decode()


OLD, NEW = root_pem(), root_pem()


def bundles(*roots: str, td: str = TD) -> dict[str, TrustDomain]:
    return {td: TrustDomain(td, tuple(roots))}


def unchecked(*roots: str) -> dict[str, TrustDomain]:
    """A bundle the model would refuse (no root, no PEM): the writer refuses it too."""
    bundle = TrustDomain(TD, (OLD,))
    object.__setattr__(bundle, "roots_pem", tuple(roots))
    return {TD: bundle}


# --- the pure decision ------------------------------------------------------------------


def test_the_name_is_the_one_the_installer_mounts() -> None:
    assert registry_ca.CONFIGMAP == REGISTRY_CA_CONFIGMAP


def test_missing_configmap_is_created_with_the_own_bundles_roots_and_labels() -> None:
    other = {"west.meshfed.test": TrustDomain("west.meshfed.test", (NEW,))}
    d = decide({**bundles(OLD), **other}, TD, NS, None)
    assert d.verb == "create" and d.body is not None
    assert d.body["metadata"] == {
        "name": "meshfed-registry-ca",
        "namespace": NS,
        "labels": {
            "app.kubernetes.io/managed-by": "meshfed",
            "app.kubernetes.io/component": "registry-ca",
        },
    }
    assert d.body["data"] == {KEY: OLD}  # our trust domain's roots, not west's
    assert d.roots == OLD


def test_roots_text_is_registry_roots_text_in_the_watchs_order() -> None:
    text, _ = roots_text(bundles(OLD.rstrip("\n"), NEW), TD)
    assert text == OLD + NEW
    assert fingerprints((text or "").encode()) == fingerprints((OLD + NEW).encode())


def test_equal_roots_write_nothing() -> None:
    live = decide(bundles(OLD, NEW), TD, NS, None).body
    assert live is not None
    live["metadata"]["resourceVersion"] = "7"
    d = decide(bundles(OLD, NEW), TD, NS, live)
    assert d.verb == "unchanged" and d.body is None and d.roots == OLD + NEW


def test_changed_roots_update_only_roots_pem_keeping_what_others_put_there() -> None:
    # as `kubectl create configmap --from-file=roots.pem=...` leaves it: no labels
    live: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "meshfed-registry-ca",
            "namespace": NS,
            "resourceVersion": "42",
            "labels": {"team": "platform"},
            "annotations": {"note": "x"},
        },
        "data": {KEY: OLD, "extra.txt": "kept"},
    }
    d = decide(bundles(OLD, NEW), TD, NS, live)
    assert d.verb == "update" and d.body is not None
    assert d.body["data"] == {KEY: OLD + NEW, "extra.txt": "kept"}
    meta = d.body["metadata"]
    assert meta["resourceVersion"] == "42"  # optimistic concurrency: a race is a 409
    assert meta["labels"]["team"] == "platform" and meta["annotations"] == {"note": "x"}
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "meshfed"
    assert live["data"][KEY] == OLD  # the input is not modified
    # same roots but not yet labelled: adopt it (one write), then leave it alone
    d = decide(bundles(OLD), TD, NS, live)
    assert d.verb == "update" and d.body is not None and d.body["data"][KEY] == OLD
    assert decide(bundles(OLD), TD, NS, d.body).verb == "unchanged"


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ({}, "no bundle"),
        (bundles(NEW, td="west.meshfed.test"), "no bundle"),
        (unchecked(), "holds no root"),
        (unchecked("  \n"), "holds no root"),
        (bundles(OLD, "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"), "PEM"),
        (unchecked("not a certificate"), "PEM"),
    ],
)
def test_no_usable_roots_are_refused_and_the_old_configmap_stays(
    given: dict[str, TrustDomain], why: str
) -> None:
    live = decide(bundles(OLD), TD, NS, None).body
    for held in (None, live):
        d = decide(given, TD, NS, held)
        assert d.verb == "refuse" and d.body is None and why in d.reason


# --- the writer against the fake API server ------------------------------------------


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as server:
        client.CoreV1Api(client.ApiClient(server.kube_config())).create_namespace(
            {"metadata": {"name": NS}}
        )
        yield server


def configmap(kube: FakeKube, ns: str = NS) -> dict[str, Any] | None:
    found: dict[str, Any] | None = kube.store.objects.get(("", "configmaps"), {}).get(
        (ns, "meshfed-registry-ca")
    )
    return found


def configmap_requests(kube: FakeKube, since: int = 0) -> list[tuple[str, str]]:
    return [(m, p) for m, p in kube.requests[since:] if "/configmaps" in p]


async def test_writer_creates_updates_refuses_and_repeats_nothing(kube: FakeKube) -> None:
    writer = RegistryCaWriter(kube_api(kube), NS, TD)
    await writer.apply(bundles(OLD))
    cm = configmap(kube)
    assert cm is not None and cm["data"] == {KEY: OLD}
    assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "meshfed"
    rv = cm["metadata"]["resourceVersion"]
    mark = len(kube.requests)
    await writer.apply(bundles(OLD))  # the same roots: not even a read
    assert configmap_requests(kube, mark) == []
    await writer.resync()  # forgets what it wrote: reads, finds it equal, writes nothing
    assert [m for m, _ in configmap_requests(kube, mark)] == ["GET"]
    await writer.apply(bundles(OLD, NEW))
    cm = configmap(kube)
    assert cm is not None and cm["data"][KEY] == OLD + NEW
    assert cm["metadata"]["resourceVersion"] != rv
    mark = len(kube.requests)
    for empty in ({}, unchecked()):  # refused: nothing sent, the ConfigMap stays
        await writer.apply(empty)
    assert configmap_requests(kube, mark) == [] and writer.stats.refused == 2
    cm = configmap(kube)
    assert cm is not None and cm["data"][KEY] == OLD + NEW
    assert (writer.stats.creates, writer.stats.updates, writer.stats.failures) == (1, 1, 0)


async def test_writer_repairs_drift_takes_over_the_operators_configmap_and_retries_a_409(
    kube: FakeKube,
) -> None:
    core = client.CoreV1Api(client.ApiClient(kube.kube_config()))
    core.create_namespaced_config_map(  # as the install steps create it
        NS, {"metadata": {"name": "meshfed-registry-ca"}, "data": {KEY: OLD}}
    )
    writer = RegistryCaWriter(kube_api(kube), NS, TD)
    kube.fail_next("update", "configmaps", 409, "Conflict")  # someone wrote meanwhile
    await writer.apply(bundles(OLD, NEW))
    cm = configmap(kube)
    assert cm is not None and cm["data"] == {KEY: OLD + NEW}
    assert cm["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "meshfed",
        "app.kubernetes.io/component": "registry-ca",
    }
    assert writer.stats.failures == 0
    # deleted by hand: the next resync creates it again
    core.delete_namespaced_config_map("meshfed-registry-ca", NS)
    await writer.resync()
    cm = configmap(kube)
    assert cm is not None and cm["data"] == {KEY: OLD + NEW}


async def test_writer_failures_are_logged_not_raised(kube: FakeKube) -> None:
    writer = RegistryCaWriter(kube_api(kube), "absent-namespace", TD)
    await writer.apply(bundles(OLD))  # 404: the namespace does not exist
    assert writer.stats.failures == 1 and writer.held is None
    writer = RegistryCaWriter(kube_api(kube), NS, TD)
    kube.fail_next("create", "configmaps", 403, "Forbidden")  # RBAC without configmaps
    await writer.apply(bundles(OLD))
    assert writer.stats.failures == 1 and configmap(kube) is None
    mark = len(kube.requests)
    await writer.apply(bundles(OLD))  # failed: not tried again on every view
    assert configmap_requests(kube, mark) == [] and configmap(kube) is None
    await writer.resync()  # but at the resync
    assert configmap(kube) is not None and writer.held == OLD and writer.failed is None


# --- two replicas of east's agent through a root rotation ----------------------------


async def agent_config(reg: Registry, kubeconfig: Path, identity: str) -> AgentConfig:
    return AgentConfig(
        cluster="east",
        registry=reg.plane.address,
        join_address=reg.plane.join_address,
        join_token=await reg.token("east"),
        trust_domain=CLUSTERS["east"].trust_domain,
        registry_ca=await reg.bundle(),
        locality=Locality(CLUSTERS["east"].region, CLUSTERS["east"].zone),
        kubeconfig=str(kubeconfig),
        leader_elect=True,
        lease_timing=FAST,
        identity=identity,
    )


def held_roots(kube: FakeKube) -> tuple[str, ...]:
    cm = configmap(kube)
    return fingerprints(cm["data"][KEY].encode()) if cm else ()


async def test_the_leader_keeps_the_configmap_through_a_rotation(tmp_path: Path) -> None:
    assert CLUSTERS["east"].trust_domain == TD
    async with registry(tmp_path) as reg:
        with (
            FakeKube(bookmark_interval=0.2) as east_1,
            FakeKube(bookmark_interval=0.2, store=east_1.store) as east_2,  # one etcd
        ):
            client.CoreV1Api(client.ApiClient(east_1.kube_config())).create_namespace(
                {"metadata": {"name": NS}}
            )
            servers = {"east-1": east_1, "east-2": east_2}
            replicas = {}
            for name, kube in servers.items():
                (tmp_path / f"{name}.kubeconfig").write_text(kube.kubeconfig_yaml())
                cfg = await agent_config(reg, tmp_path / f"{name}.kubeconfig", name)
                replicas[name] = Agent(cfg)
            tasks = [asyncio.create_task(a.run()) for a in replicas.values()]
            try:
                await _walk(reg, replicas, servers)
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(BaseException):
                        await task


async def _walk(reg: Registry, replicas: dict[str, Agent], servers: dict[str, FakeKube]) -> None:
    kube = servers["east-1"]  # either: they share the store
    old = fingerprints(await reg.bundle())
    assert len(old) == 1
    # the leader creates it with the current root
    await eventually(lambda: held_roots(kube) == old, 20)
    leaders = [n for n, a in replicas.items() if a.elector and a.elector.is_leader()]
    assert len(leaders) == 1
    lead = leaders[0]
    follow = "east-2" if lead == "east-1" else "east-1"
    await eventually(lambda: replicas[follow].view is not None, 10)
    assert replicas[follow].registry_ca is None

    def rv() -> str:
        cm = configmap(kube)
        assert cm is not None
        return str(cm["metadata"]["resourceVersion"])

    def cm_writes(name: str) -> list[tuple[str, str]]:
        return [(m, p) for m, p in configmap_requests(servers[name]) if m != "GET"]

    created = rv()
    # an unchanged view (west's gateway moves, the bundles do not): no write
    applied = replicas[lead].views_applied
    held = await reg.store.gateways.get("west")
    await reg.store.gateways.update(
        replace(held.record, addresses=("127.0.0.1:15445",)), held.revision
    )
    await eventually(lambda: replicas[lead].views_applied > applied, 10)
    assert rv() == created and len(cm_writes(lead)) == 1  # the create, nothing since

    # prepare: the next root joins every bundle, so the ConfigMap holds both
    await reg.trust.rotation_prepare(datetime.now(UTC))
    both = fingerprints(await reg.bundle())
    assert len(both) == 2 and set(old) < set(both)
    await eventually(lambda: held_roots(kube) == both, 20)
    (new,) = set(both) - set(old)
    after_prepare = rv()

    # activate: the registry signs under the next root; the roots themselves stay
    await reg.trust.rotation_activate(datetime.now(UTC), force=True)
    await eventually(
        lambda: replicas[lead].watch_view.items.bundles[TD].signing_root_sha256 == new, 20
    )
    assert rv() == after_prepare and held_roots(kube) == both

    # retire: the old root leaves the bundles, and the ConfigMap
    await reg.trust.rotation_retire(datetime.now(UTC), force=True)
    await eventually(lambda: held_roots(kube) == (new,), 20)
    assert fingerprints(await reg.bundle()) == (new,)
    writer = replicas[lead].registry_ca
    assert writer is not None
    assert (writer.stats.creates, writer.stats.updates, writer.stats.failures) == (1, 2, 0)
    assert len(cm_writes(lead)) == 3  # create, prepare, retire
    assert cm_writes(follow) == []  # the follower wrote nothing
