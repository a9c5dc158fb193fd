"""Shared fixtures for the trust_bundle tests: a small PKI and a loopback mTLS harness.

Certificates used in real TLS handshakes must be valid at the wall-clock time
(OpenSSL reads the clock), so NOW is taken once per session from the clock and
every pure function gets it as a parameter.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from trust_bundle.ca import CertificateAuthority, create_intermediate_ca, create_root_ca
from trust_bundle.ids import SpiffeId, cluster_entitlement, gateway_id
from trust_bundle.keys import KeyHolder, generate_key
from trust_bundle.svid import IssuedSvid, issue_svid, make_csr

NOW = datetime.now(UTC).replace(microsecond=0)
TD_A = "a.meshfed.test"
TD_B = "b.meshfed.test"


@dataclass(frozen=True)
class Pki:
    root: CertificateAuthority
    a: CertificateAuthority
    b: CertificateAuthority


@pytest.fixture(scope="session")
def now() -> datetime:
    return NOW


@pytest.fixture(scope="session")
def pki() -> Pki:
    root = create_root_ca(NOW)
    return Pki(
        root=root,
        a=create_intermediate_ca(root, "a", TD_A, NOW),
        b=create_intermediate_ca(root, "b", TD_B, NOW),
    )


@dataclass(frozen=True)
class Identity:
    """An issued SVID with its private key."""

    svid: IssuedSvid
    key: KeyHolder


def issue_gateway(ca: CertificateAuthority, when: datetime = NOW, **kwargs: object) -> Identity:
    """A gateway SVID for ``ca``'s cluster (entitled), with a fresh key."""
    assert ca.trust_domain is not None and ca.cluster is not None
    key = generate_key()
    spiffe_id: SpiffeId = gateway_id(ca.trust_domain, ca.cluster)
    svid = issue_svid(
        make_csr(key, spiffe_id),
        ca,
        cluster_entitlement(ca.trust_domain, ca.cluster),
        when,
        **kwargs,  # type: ignore[arg-type]
    )
    return Identity(svid, key)


@pytest.fixture
def issue() -> Callable[..., Identity]:
    return issue_gateway


# ---------------------------------------------------------------- mTLS harness


def tls_context(
    identity: Identity, roots_pem: bytes, directory: Path, *, server: bool
) -> ssl.SSLContext:
    """An mTLS context presenting ``identity`` and trusting only ``roots_pem``."""
    directory.mkdir(parents=True, exist_ok=True)
    serial = f"{identity.svid.certificate.serial_number:x}"
    cert_file = directory / f"{serial}.chain.pem"
    key_file = directory / f"{serial}.key.pem"
    cert_file.write_bytes(identity.svid.chain_pem())
    key_file.write_bytes(identity.key.unencrypted_pkcs8_pem())
    key_file.chmod(0o600)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # SPIFFE authenticates the URI SAN, not a hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=roots_pem.decode())
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def peer_spiffe_id(sock: ssl.SSLSocket) -> str:
    cert = sock.getpeercert()
    assert cert is not None
    uris = [v for k, v in cert.get("subjectAltName", ()) if k == "URI"]
    assert len(uris) == 1
    return str(uris[0])


class EchoServer:
    """A threaded mTLS echo server on loopback. ``context`` may be swapped at any
    time (a gateway reloading its trust); live connections keep the old one."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.errors: list[BaseException] = []
        self.peers: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            worker = threading.Thread(target=self._serve, args=(conn, self.context), daemon=True)
            worker.start()
            self._threads.append(worker)

    def _serve(self, conn: socket.socket, context: ssl.SSLContext) -> None:
        conn.settimeout(5)
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                self.peers.append(peer_spiffe_id(tls))
                while data := tls.recv(1024):
                    tls.sendall(data)
        except (ssl.SSLError, OSError) as exc:
            self.errors.append(exc)
        finally:
            conn.close()

    def wait_for_error(self, timeout: float = 3.0) -> list[BaseException]:
        """The server-side errors, waiting briefly for the worker thread to record one."""
        deadline = time.monotonic() + timeout
        while not self.errors and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.errors)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=2)


def connect(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return context.wrap_socket(raw)


def roundtrip(sock: ssl.SSLSocket, payload: bytes = b"ping") -> bytes:
    sock.sendall(payload)
    return sock.recv(1024)


def handshake_fails(port: int, context: ssl.SSLContext) -> bool:
    """True if the mTLS exchange fails on either side (TLS 1.3 reports a rejected
    client certificate only on the client's first read)."""
    try:
        with connect(port, context) as sock:
            return roundtrip(sock) != b"ping"
    except (ssl.SSLError, OSError):
        return True


class MtlsKit:
    """The harness as one fixture value (test modules do not import conftest)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.servers: list[EchoServer] = []

    def context(self, identity: Identity, roots_pem: bytes, *, server: bool) -> ssl.SSLContext:
        return tls_context(identity, roots_pem, self.directory, server=server)

    def serve(self, context: ssl.SSLContext) -> EchoServer:
        server = EchoServer(context)
        self.servers.append(server)
        return server

    connect = staticmethod(connect)
    roundtrip = staticmethod(roundtrip)
    handshake_fails = staticmethod(handshake_fails)
    peer_spiffe_id = staticmethod(peer_spiffe_id)


@pytest.fixture
def mtls(tmp_path: Path) -> Iterator[MtlsKit]:
    kit = MtlsKit(tmp_path / "tls")
    yield kit
    for server in kit.servers:
        server.close()
