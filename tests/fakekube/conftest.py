"""Fixtures: a running fake API server and the official client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.fakekube import FakeKube


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.2) as server:
        yield server


@pytest.fixture
def api(kube: FakeKube) -> Iterator[client.ApiClient]:
    with client.ApiClient(kube.kube_config()) as api_client:
        yield api_client
