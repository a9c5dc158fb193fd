"""Shared builders for the `meshfed install` tests: the option matrix and a fake cluster
that also serves the kinds `meshfed install` writes (apps, policy, autoscaling,
networking, apiextensions), with the same semantics as the built-in fake types."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from federation.install import Options, trustdir
from federation.install.trustdir import StoreTLS
from tests.fakekube import FakeKube
from tests.fakekube.resources import ResourceType, default_types

EXTRA_TYPES = [
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", status_subresource=True),
    ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, True),
    ResourceType(
        "autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True, True
    ),
    ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        status_subresource=True,
    ),
]

STORES = (
    "etcd",
    "postgres",
    "external:postgresql://meshfed@db.example.com:6432/meshfed",
    "external:etcd://10.0.0.1:2379,10.0.0.2:2379/meshfed",
)

# (id, options): every component with every store choice, and the variants.
MATRIX: list[tuple[str, Options]] = [
    *[
        (f"all-{i}", Options(("registry", "agent", "gateway"), cluster="east", store=s))
        for i, s in enumerate(STORES)
    ],
    *[(f"registry-{i}", Options(("registry",), store=s, replicas=3)) for i, s in enumerate(STORES)],
    ("agent", Options(("agent",), cluster="east", registry="registry.example.com:9471")),
    (
        "agent-namespaces",
        Options(
            ("agent",),
            cluster="west",
            registry="203.0.113.7:443",
            region="eu-west-1",
            zone="eu-west-1a",
            watch_namespaces=("shop", "payments"),
            crds=False,
            trust_domain="west.example",
        ),
    ),
    ("gateway", Options(("gateway",), cluster="east", registry="registry.example.com:9471")),
    (
        "gateway-nodeport",
        Options(
            ("gateway",),
            cluster="east",
            registry="registry.example.com:9471",
            gateway_service="NodePort",
            replicas=4,
            namespace="mesh",
        ),
    ),
]


@pytest.fixture
def cluster() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.2, types=[*default_types(), *EXTRA_TYPES]) as server:
        yield server


@pytest.fixture(scope="session")
def store_tls(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], StoreTLS]:
    """The trust material `meshfed install --store etcd` renders, one directory for the
    whole session (re-used per namespace as the CLI does)."""
    directory = tmp_path_factory.mktemp("trust")
    cache: dict[str, StoreTLS] = {}

    def get(namespace: str) -> StoreTLS:
        if namespace not in cache:
            cache[namespace] = trustdir.ensure(directory / namespace, namespace, datetime.now(UTC))
        return cache[namespace]

    return get
