"""A real 3-member etcd cluster running with the certificates `meshfed install --store
etcd` renders (peer TLS between members, client TLS with --client-cert-auth): the
registry's rendered client certificate reads and writes through the registry's own
store client, and real TLS handshakes with a client certificate of another root, or of
another CA under the same federation root (an agent's), are refused."""

from __future__ import annotations

import asyncio
import base64
import shutil
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from federation.install import Options, render, trustdir
from federation.model import Cluster
from federation.store import Store, open_backend
from tests.servers.etcd import (
    PORT_ATTEMPTS,
    EtcdStartError,
    Member,
    TLSFiles,
    free_port,
)
from trust_bundle import create_intermediate_ca
from trust_bundle.tlscert import LeafProfile, issue_leaf

NAMESPACE = "meshfed-system"
MEMBER_NAME = "meshfed-etcd-1.meshfed-etcd.meshfed-system.svc"  # a name the registry dials


class RenderedTLS(TLSFiles):
    """The rendered Secrets as files, in the shape tests/servers/etcd.py takes: the
    server and peer flags exactly as the StatefulSet passes them."""

    def __init__(self, directory: Path, objs: list[dict[str, object]]) -> None:
        for o in objs:
            if o["kind"] != "Secret":
                continue
            meta, data = o["metadata"], o["data"]
            assert isinstance(meta, dict) and isinstance(data, dict)
            where = directory / str(meta["name"])
            where.mkdir(parents=True)
            for key, value in data.items():
                (where / key).write_bytes(base64.b64decode(value))
                (where / key).chmod(0o600)
        self.dir = directory
        self.cacert = directory / "meshfed-etcd-client-tls" / "ca.crt"
        self.cert = directory / "meshfed-etcd-client-tls" / "tls.crt"
        self.key = directory / "meshfed-etcd-client-tls" / "tls.key"

    def server_args(self) -> list[str]:
        server, peer = self.dir / "meshfed-etcd-server-tls", self.dir / "meshfed-etcd-peer-tls"
        return [
            "--client-cert-auth",
            f"--trusted-ca-file={server / 'store-ca.crt'}",
            f"--cert-file={server / 'tls.crt'}",
            f"--key-file={server / 'tls.key'}",
            "--peer-client-cert-auth",
            f"--peer-trusted-ca-file={peer / 'store-ca.crt'}",
            f"--peer-cert-file={peer / 'tls.crt'}",
            f"--peer-key-file={peer / 'tls.key'}",
        ]


class PeerTLSMember(Member):
    """A member whose peer URL is https (the helper's members talk plain http)."""

    @property
    def peer_url(self) -> str:
        return f"https://127.0.0.1:{self.peer_port}"


@dataclass
class Running:
    tls: RenderedTLS
    trust: Path
    members: list[PeerTLSMember]

    def store_url(self, cert: Path, key: Path) -> str:
        hosts = ",".join(m.endpoint for m in self.members)
        return (
            f"etcd://{hosts}/meshfed?cacert={self.tls.cacert}&cert={cert}&key={key}"
            f"&servername={MEMBER_NAME}&timeout=3"
        )


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    work = tmp_path_factory.mktemp("etcd-tls")
    trust = work / "trust"
    material = trustdir.ensure(trust, NAMESPACE, datetime.now(UTC))
    objs = render(Options(("registry",), store="etcd", namespace=NAMESPACE), material)
    tls = RenderedTLS(work / "secrets", objs)
    members: list[PeerTLSMember] = []
    for attempt in range(PORT_ATTEMPTS):
        members = [
            PeerTLSMember(f"m{attempt}x{i}", work, free_port(), free_port()) for i in range(3)
        ]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
        for m in members:
            m.initial_cluster = initial
            m.tls = tls
            m.start()
        try:
            for m in members:
                m.wait_healthy()  # healthy = sees a leader: the members' peer TLS works
            break
        except EtcdStartError:
            for m in members:
                m.kill()
            clash = "address already in use" in "".join(m.log_tail(60) for m in members)
            if attempt == PORT_ATTEMPTS - 1 or not clash:
                raise
            for m in members:
                shutil.rmtree(m.data_dir, ignore_errors=True)
    try:
        yield Running(tls, trust, members)
    finally:
        for m in members:
            m.kill()


def handshake(port: int, ctx: ssl.SSLContext) -> bytes:
    """A real TLS connection to an etcd member: GET /health, the raw reply."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=MEMBER_NAME) as s,
    ):
        s.sendall(b"GET /health HTTP/1.1\r\nHost: etcd\r\nConnection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def client_context(cacert: Path, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cacert))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def write_client(directory: Path, chain: bytes, key: bytes) -> tuple[Path, Path]:
    directory.mkdir(parents=True)
    (directory / "tls.crt").write_bytes(chain)
    (directory / "tls.key").write_bytes(key)
    (directory / "tls.key").chmod(0o600)
    return directory / "tls.crt", directory / "tls.key"


CLIENT = LeafProfile(common_name="meshfed-registry", dns_names=("client",), server_auth=False)


def test_the_rendered_registry_client_reads_and_writes_through_the_store(etcd: Running) -> None:
    url = etcd.store_url(etcd.tls.cert, etcd.tls.key)

    async def main() -> list[str]:
        store = Store(await open_backend(url))
        try:
            await store.clusters.create(Cluster("east", "us-east", "us-east-1a", "east.local"))
            return [v.record.name for v in await store.clusters.list()]
        finally:
            await store.close()

    assert asyncio.run(main()) == ["east"]
    for m in etcd.members:  # every member serves the rendered chain; raw TLS too
        reply = handshake(
            m.client_port, client_context(etcd.tls.cacert, etcd.tls.cert, etcd.tls.key)
        )
        assert reply.startswith(b"HTTP/1.1 200") and b'"health":"true"' in reply, reply


def test_a_client_certificate_of_another_root_is_refused(etcd: Running, tmp_path: Path) -> None:
    other = trustdir.ensure(tmp_path / "other-trust", NAMESPACE, datetime.now(UTC))
    cert, key = write_client(tmp_path / "other", other.client.chain, other.client.key)
    ctx = client_context(etcd.tls.cacert, cert, key)  # it trusts the server all right
    with pytest.raises(ssl.SSLError, match="ALERT_BAD_CERTIFICATE"):  # etcd's alert
        handshake(etcd.members[0].client_port, ctx)
    assert "failed to verify client certificate" in etcd.members[0].log_tail(5)


def test_a_certificate_of_another_ca_under_the_federation_root_is_refused(
    etcd: Running, tmp_path: Path
) -> None:
    """An agent's CA chains to the same root; etcd's only anchor is the store CA."""
    root = trustdir.root_ca(etcd.trust)
    now = datetime.now(UTC)
    east = create_intermediate_ca(root, "east", "east.local", now)
    creds = issue_leaf(east, CLIENT, now, timedelta(hours=1))
    cert, key = write_client(tmp_path / "east", creds.chain_pem, creds.key_pem())
    with pytest.raises(ssl.SSLError, match="ALERT_BAD_CERTIFICATE"):
        handshake(etcd.members[1].client_port, client_context(etcd.tls.cacert, cert, key))
    assert "signed by unknown authority" in etcd.members[1].log_tail(5)
    # the same leaf profile from the store CA is accepted: only the issuer differs
    store_ca = trustdir.store_ca(etcd.trust)
    ok = issue_leaf(store_ca, CLIENT, now, timedelta(hours=1))
    cert, key = write_client(tmp_path / "store", ok.chain_pem, ok.key_pem())
    reply = handshake(etcd.members[1].client_port, client_context(etcd.tls.cacert, cert, key))
    assert reply.startswith(b"HTTP/1.1 200"), reply
