"""Test PKI (root CA, SPIFFE SVIDs made with cryptography) and small echo servers."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass
class CA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    path: Path

    @classmethod
    def create(cls, directory: Path, name: str) -> CA:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        path = directory / f"{name}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(key, cert, path)

    def issue(self, directory: Path, name: str, spiffe_id: str, dns: str | None = None) -> Leaf:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id)]
        if dns:
            sans.append(x509.DNSName(dns))
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(hours=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
        return Leaf(cert_path, key_path, spiffe_id, self.path)


@dataclass(frozen=True)
class Leaf:
    cert: Path
    key: Path
    spiffe_id: str
    ca: Path

    def client_context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(cafile=self.ca)
        ctx.load_cert_chain(self.cert, self.key)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        ctx.load_verify_locations(cafile=self.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


@dataclass(frozen=True)
class PKI:
    dir: Path
    ca: Path
    east_gw: Leaf  # the calling cluster's gateway (peer of terminate routes)
    west_gw: Leaf  # the gateway under test (cluster "west")
    evil_gw: Leaf  # valid chain, identity not on any allow list
    stranger: Leaf  # chain from an unrelated CA
    workload_server: Leaf
    workload_client: Leaf


def make_pki(d: Path) -> PKI:
    root = CA.create(d, "root")
    other = CA.create(d, "other-root")
    return PKI(
        dir=d,
        ca=root.path,
        east_gw=root.issue(d, "east-gw", "spiffe://east.meshfed/meshfed/gateway/east"),
        west_gw=root.issue(d, "west-gw", "spiffe://west.meshfed/meshfed/gateway/west"),
        evil_gw=root.issue(d, "evil-gw", "spiffe://evil.meshfed/meshfed/gateway/evil"),
        stranger=other.issue(d, "stranger", "spiffe://east.meshfed/meshfed/gateway/east"),
        workload_server=root.issue(
            d, "echo", "spiffe://west.meshfed/ns/demo/sa/echo", dns="echo.demo.svc.clusterset.local"
        ),
        workload_client=root.issue(d, "client", "spiffe://east.meshfed/ns/demo/sa/client"),
    )


@dataclass
class EchoServer:
    """A backend: optionally TLS; greets with ``banner`` then echoes. Counts connections."""

    server: asyncio.Server
    banner: bytes = b""
    connections: int = 0
    peers: list[str] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    def kill(self) -> None:
        self.server.close()
        for w in self.writers:
            w.transport.abort()


async def start_echo(ssl_ctx: ssl.SSLContext | None = None, banner: bytes = b"") -> EchoServer:
    holder: list[EchoServer] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        echo = holder[0]
        echo.connections += 1
        echo.writers.append(writer)
        obj = writer.get_extra_info("ssl_object")
        if obj is not None:
            from eastwest_gateway.identity import spiffe_id_from_der

            der = obj.getpeercert(binary_form=True)
            echo.peers.append(spiffe_id_from_der(der) if der else "")
        try:
            if banner:
                writer.write(banner)
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ssl_ctx)
    holder.append(EchoServer(server, banner))
    return holder[0]
