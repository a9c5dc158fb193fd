"""The agent against a real registry control plane: static and Kubernetes flavors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncquery
import dns.message
import pytest
from kube_pipeline import eventually, seed, slice_body
from kubernetes import client
from registry_fixture import Registry, agent_config, registry

from discovery_sync.agent import Agent
from discovery_sync.imports_file import load
from discovery_sync.kube import plan
from discovery_sync.main import run as agent_main
from federation.model import ServiceKey
from tests.fakekube import FakeKube

WEST_STATIC = """
services:
  - {namespace: demo, name: echo, ports: [{name: http, port: 8080, protocol: TCP}],
     endpoints: [{address: 10.5.0.1, port: 9000, zone: us-west-2a, ready: true},
                 {address: 10.5.0.2, port: 9000, zone: us-west-2a, ready: true}]}
"""


@pytest.fixture
async def reg(tmp_path: Path) -> AsyncIterator[Registry]:
    async with registry(tmp_path) as r:
        yield r


@contextlib.asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(agent.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


def imports(path: Path) -> dict[ServiceKey, object]:
    if not path.exists():
        return {}
    return dict(load(path.read_text()).services)


async def test_static_agents_export_import_and_serve_dns(reg: Registry, tmp_path: Path) -> None:
    west_file = tmp_path / "west.yaml"
    west_file.write_text(WEST_STATIC)
    (tmp_path / "east.yaml").write_text("services: []\n")
    east_imports = tmp_path / "east-imports.yaml"
    west = Agent(await agent_config(reg, "west", static_file=str(west_file)))
    east = Agent(
        await agent_config(
            reg,
            "east",
            static_file=str(tmp_path / "east.yaml"),
            imports_file=str(east_imports),
            dns_listen=("127.0.0.1", 0),
        )
    )
    key = ServiceKey("demo", "echo")
    async with running(west), running(east):

        def endpoints() -> list[str]:
            svc = (
                load(east_imports.read_text()).services.get(key) if east_imports.exists() else None
            )
            return sorted(e.address for e in svc.endpoints) if svc else []

        await eventually(lambda: len(endpoints()) == 2, 15)  # export and endpoints may be
        svc = load(east_imports.read_text()).services[key]  # two registry revisions
        assert sorted(e.address for e in svc.endpoints) == ["10.5.0.1", "10.5.0.2"]
        assert svc.clusters == ("west",) and svc.ips
        assert east.dns is not None and east.dns.bound is not None
        q = dns.message.make_query("echo.demo.svc.clusterset.local", "A")
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=east.dns.bound.port, timeout=2)
        assert [rd.to_text() for rd in r.answer[0]] == list(svc.ips)
        # a change in west's file reaches east as a delta
        west_file.write_text(WEST_STATIC.replace("10.5.0.2", "10.5.0.3"))
        await eventually(lambda: endpoints() == ["10.5.0.1", "10.5.0.3"], 15)
        # the registry goes away: east keeps what it wrote and keeps answering
        await reg.plane.stop(0)
        await asyncio.sleep(1.5)
        assert key in imports(east_imports)
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=east.dns.bound.port, timeout=2)
        assert r.answer


async def test_kubernetes_agents_propagate_endpoint_slices(reg: Registry, tmp_path: Path) -> None:
    with FakeKube(bookmark_interval=0.2) as kube_west, FakeKube(bookmark_interval=0.2) as kube_east:
        for kube, name in ((kube_west, "west"), (kube_east, "east")):
            (tmp_path / f"{name}.kubeconfig").write_text(kube.kubeconfig_yaml())
        client.CoreV1Api(client.ApiClient(kube_east.kube_config())).create_namespace(
            {"metadata": {"name": "demo"}}
        )
        seed(kube_west, "demo", "echo", ["10.6.0.1"])
        west = Agent(await agent_config(reg, "west", kubeconfig=str(tmp_path / "west.kubeconfig")))
        east = Agent(await agent_config(reg, "east", kubeconfig=str(tmp_path / "east.kubeconfig")))

        def east_addresses() -> list[str]:
            slices = kube_east.store.objects.get(("discovery.k8s.io", "endpointslices"), {})
            return sorted(
                e["addresses"][0]
                for s in slices.values()
                if s["metadata"]["labels"].get(plan.SERVICE_NAME_LABEL) == "echo"
                for e in s["endpoints"]
            )

        async with running(west), running(east):
            await eventually(lambda: east_addresses() == ["10.6.0.1"], 20)
            imp = kube_east.store.objects[("multicluster.x-k8s.io", "serviceimports")][
                ("demo", "echo")
            ]
            assert imp["spec"]["type"] == "ClusterSetIP"
            assert imp["status"]["clusters"] == [{"cluster": "west"}]
            disc = client.DiscoveryV1Api(client.ApiClient(kube_west.kube_config()))
            disc.replace_namespaced_endpoint_slice(
                "echo-abcde", "demo", slice_body("echo", ["10.6.0.1", "10.6.0.2"])
            )
            await eventually(lambda: east_addresses() == ["10.6.0.1", "10.6.0.2"], 20)
            # west's ServiceExport says Valid and Ready
            exp = kube_west.store.objects[("multicluster.x-k8s.io", "serviceexports")][
                ("demo", "echo")
            ]
            conds = {c["type"]: c["status"] for c in exp["status"]["conditions"]}
            assert conds == {"Valid": "True", "Ready": "True"}


def test_cli_names_bad_values(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    base = [
        "--cluster",
        "east",
        "--registry",
        "127.0.0.1:9471",
        "--join-token",
        "abcdef.s3cret",
        "--trust-domain",
        "east.test",
        "--registry-ca",
        str(ca),
        "--static",
        str(ca),
    ]
    cases = [
        (["--cluster", "East_1"], "--cluster"),
        (["--registry", "nohost"], "--registry"),
        (["--dns", "127.0.0.1:99999"], "--dns"),
        (["--egress-address", "gw.example"], "--egress-address"),
        (["--clusterset-cidr", "10.0.0.0/33"], "--clusterset-cidr"),
        (["--zone", "bad zone"], "--zone"),
    ]
    for extra, flag in cases:
        with pytest.raises(SystemExit) as exit_:
            agent_main(base + extra)
        assert exit_.value.code == 2
        assert flag in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        agent_main(base[:-2])  # no source
    assert exit_.value.code == 2


async def test_idle_agent_re_reports_after_a_registry_restart(
    reg: Registry, tmp_path: Path
) -> None:
    """Regression (e2e drill 5): an agent with nothing new to send must notice the
    registry ended its stream, or its endpoints expire with the old stream's lease."""
    from registry_fixture import SETTINGS

    from federation.controlplane.server import start

    west_file = tmp_path / "west.yaml"
    west_file.write_text(WEST_STATIC)
    west = Agent(await agent_config(reg, "west", static_file=str(west_file)))

    async def west_endpoints() -> int:
        return len(await reg.store.endpoints.list("demo/echo/west/"))

    async with running(west):
        await eventually_async(lambda: west_endpoints(), 2, 15)
        address = reg.plane.address
        await reg.plane.stop(0)
        for attempt in range(50):  # the old listener may hold the port for a moment
            try:
                reg.plane = await start(reg.store, reg.trust, address, settings=SETTINGS)
                break
            except RuntimeError:
                assert attempt < 49, f"could not bind {address} again"
                await asyncio.sleep(0.1)
        # three lease TTLs later the endpoints must be held by a new stream's lease
        await asyncio.sleep(3 * SETTINGS.lease_ttl + 1.0)
        assert await west_endpoints() == 2
        (endpoint,) = (await reg.store.endpoints.list("demo/echo/west/"))[:1]
        assert endpoint.lease != 0


async def eventually_async(probe: object, want: int, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await probe() != want:  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)
