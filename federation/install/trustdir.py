"""The trust directory of `meshfed install --store etcd` (`--trust-dir`, default
`./meshfed-trust`): the federation root and the etcd cluster's certificates.

Why this module exists: etcd must run, with TLS, before the registry can store
anything, so the registry cannot be the one that makes the federation root (as it
does on other stores). Like `linkerd install` with its trust anchor and issuer, the
install command makes the trust material and renders it into the manifests; the
registry adopts the root at first start (`meshfed serve --root-ca`,
federation/registry/root_ca.py).

The hierarchy, built with trust_bundle (build, sign, validate as separate steps;
every certificate re-validated against the root before it is written):

    federation root          root.pem, root-key.pem   trust_bundle.ca.create_root_ca: the
     |                                                 registry's own root shape (P-256,
     |                                                 10 years, pathLen 1)
     +-- store CA            store-ca.pem, store-ca-key.pem
          +-- etcd server    etcd-server.pem, etcd-server-key.pem   serverAuth+clientAuth
          +-- etcd peer      etcd-peer.pem, etcd-peer-key.pem       serverAuth+clientAuth
          +-- registry       registry-client.pem, registry-client-key.pem   clientAuth

Why a store CA and not the root itself: etcd accepts every client certificate that
chains to its `--trusted-ca-file`. Were that the federation root, every agent and
gateway SVID and every mesh workload certificate of every cluster (all chain to the
root) would be an etcd client. The store CA is etcd's only trust anchor instead
(`store-ca.crt` in the server and peer Secrets), so only the three certificates
above are accepted; clients still verify etcd against the federation root (`ca.crt`).
The store CA is a cluster-style intermediate (pathLen 0) whose URI name constraint
is its own trust domain `store.meshfed.local`, so it cannot mint a SPIFFE ID of any
cluster either.

Re-running with the same directory reuses every file, so the rendered Secrets are
byte-identical and `meshfed install | kubectl apply -f -` is idempotent. A leaf is
re-issued only when it no longer fits: past 2/3 of its lifetime, SANs changed (another
namespace), or it no longer validates (e.g. the store CA was re-issued). The root is
never re-issued here: replacing it is a rotation (docs/trust.md).

Files: the directory is created 0700, keys are written 0600 (atomically, through
trust_bundle.storage) as unencrypted PKCS#8 PEM (they go into Secrets as they are);
a key file readable by others is refused. Nothing here prints key material.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from federation.install.etcd import MEMBERS, NAME
from trust_bundle import CertificateAuthority, KeyHolder, SpiffeId, TrustError
from trust_bundle.ca import (
    ROOT_LIFETIME,
    check_key_matches,
    create_intermediate_ca,
    create_root_ca,
    validate_intermediate_ca,
    validate_root_ca,
)
from trust_bundle.ids import STORE_TRUST_DOMAIN
from trust_bundle.spiffe_bundle import certificate_fingerprint
from trust_bundle.storage import write_file
from trust_bundle.tlscert import LeafProfile, issue_leaf, validate_leaf

DEFAULT_DIR = Path("meshfed-trust")
STORE_CA_NAME = "store"
# kubeadm's defaults for etcd: a 10-year CA (capped here by the root's notAfter) and
# 1-year leaves (kubeadm `certificateValidityPeriod`, 8760h).
STORE_CA_LIFETIME = ROOT_LIFETIME
LEAF_LIFETIME = timedelta(days=365)
# Re-issue once 2/3 of the lifetime has passed: the last third (four months for a
# leaf) is the window to re-run install and apply before anything expires.
RENEW_AFTER = 2 / 3

ROOT, ROOT_KEY = "root.pem", "root-key.pem"  # the names `meshfed serve --root-ca DIR` reads
STORE_CA, STORE_CA_KEY = "store-ca.pem", "store-ca-key.pem"
LEAVES = ("etcd-server", "etcd-peer", "registry-client")


class TrustDirError(Exception):
    """The trust directory cannot be used; the message names the path."""


@dataclass(frozen=True, slots=True)
class LeafFiles:
    """One leaf as rendered: `chain` is leaf + store CA PEM, `key` its PKCS#8 PEM."""

    chain: bytes
    key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class StoreTLS:
    """The PEM bytes the manifests carry (read back from the directory)."""

    root: bytes
    root_key: bytes = field(repr=False)
    store_ca: bytes
    server: LeafFiles
    peer: LeafFiles
    client: LeafFiles


def etcd_dns_names(namespace: str) -> tuple[str, ...]:
    """Every name a member or client dials: each member, any member (wildcards, with and
    without the cluster domain), the headless Service, and localhost for probes."""
    base = f"{NAME}.{namespace}.svc"
    return (
        *(f"{NAME}-{i}.{base}" for i in range(MEMBERS)),
        f"*.{base}",
        f"*.{base}.cluster.local",
        base,
        "localhost",
    )


def profiles(namespace: str) -> dict[str, LeafProfile]:
    """The three leaves of a trust directory for `namespace` (pure)."""
    names = etcd_dns_names(namespace)
    return {
        "etcd-server": LeafProfile(
            common_name="meshfed-etcd-server", dns_names=names, ip_addresses=("127.0.0.1",)
        ),
        # Peers dial each other (client) and accept each other (server): both usages.
        "etcd-peer": LeafProfile(
            common_name="meshfed-etcd-peer", dns_names=names, ip_addresses=("127.0.0.1",)
        ),
        "registry-client": LeafProfile(
            common_name="meshfed-registry",
            spiffe_id=SpiffeId(STORE_TRUST_DOMAIN, "/meshfed/registry"),
            server_auth=False,
        ),
    }


def due(cert: x509.Certificate, now: datetime) -> bool:
    """Past RENEW_AFTER of its lifetime (pure)."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return now >= start + (end - start) * RENEW_AFTER


class _Dir:
    """The I/O shell: reads and writes files of one trust directory, errors naming paths."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def prepare(self) -> None:
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise TrustDirError(f"{self.path}: cannot create directory: {exc.strerror}") from None
        if not self.path.is_dir():
            raise TrustDirError(f"{self.path}: not a directory")

    def exists(self, name: str) -> bool:
        return (self.path / name).exists()

    def read(self, name: str) -> bytes:
        try:
            return (self.path / name).read_bytes()
        except OSError as exc:
            raise TrustDirError(f"{self.path / name}: cannot read: {exc.strerror}") from None

    def write(self, name: str, data: bytes, *, secret: bool) -> None:
        try:
            write_file(self.path / name, data, secret=secret)
        except TrustError as exc:  # StorageError: "cannot write <path>: <strerror>"
            raise TrustDirError(str(exc)) from None

    def cert(self, name: str) -> x509.Certificate:
        try:
            certs = x509.load_pem_x509_certificates(self.read(name))
        except ValueError:
            raise TrustDirError(f"{self.path / name}: not a PEM certificate") from None
        if len(certs) != 1:
            raise TrustDirError(f"{self.path / name}: must hold one certificate")
        return certs[0]

    def key(self, name: str) -> KeyHolder:
        path = self.path / name
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0
        if mode & 0o077:
            raise TrustDirError(f"{path}: mode {mode:o}; refusing a key readable by others")
        try:
            key = serialization.load_pem_private_key(self.read(name), password=None)
        except (ValueError, TypeError):
            # Never chain the parser's message: it could quote key material.
            raise TrustDirError(f"{path}: not an unencrypted PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TrustDirError(f"{path}: not an ECDSA key")
        return KeyHolder(key)

    def save(self, cert_name: str, key_name: str, cert: x509.Certificate, key: KeyHolder) -> None:
        self.write(key_name, key.unencrypted_pkcs8_pem(), secret=True)
        self.write(cert_name, cert.public_bytes(serialization.Encoding.PEM), secret=False)


def _root(d: _Dir, now: datetime, say: Callable[[str], None]) -> CertificateAuthority:
    have_cert, have_key = d.exists(ROOT), d.exists(ROOT_KEY)
    if not have_cert and not have_key:
        root = create_root_ca(now)  # generate, build, sign, validate
        d.save(ROOT, ROOT_KEY, root.certificate, root.key)
        say(f"created federation root {certificate_fingerprint(root.certificate)} in {d.path}")
        return root
    if not (have_cert and have_key):
        missing = ROOT_KEY if have_cert else ROOT
        raise TrustDirError(f"{d.path / missing}: missing (the root is only half there)")
    cert, key = d.cert(ROOT), d.key(ROOT_KEY)
    try:
        validate_root_ca(cert, now)
        check_key_matches(cert, key)
    except TrustError as exc:
        raise TrustDirError(f"{d.path / ROOT}: not a usable federation root: {exc}") from None
    return CertificateAuthority(certificate=cert, key=key)


def _store_ca(
    d: _Dir, root: CertificateAuthority, now: datetime, say: Callable[[str], None]
) -> CertificateAuthority:
    if d.exists(STORE_CA) and d.exists(STORE_CA_KEY):
        cert, key = d.cert(STORE_CA), d.key(STORE_CA_KEY)
        try:
            validate_intermediate_ca(cert, root.certificate, STORE_TRUST_DOMAIN, now)
            check_key_matches(cert, key)
            fits = not due(cert, now)
        except TrustError:
            fits = False
        if fits:
            return CertificateAuthority(
                certificate=cert,
                key=key,
                chain=(root.certificate,),
                trust_domain=STORE_TRUST_DOMAIN,
                cluster=STORE_CA_NAME,
            )
    # create_intermediate_ca validates against the root before returning.
    ca = create_intermediate_ca(
        root, STORE_CA_NAME, STORE_TRUST_DOMAIN, now, lifetime=STORE_CA_LIFETIME
    )
    d.save(STORE_CA, STORE_CA_KEY, ca.certificate, ca.key)
    say(f"issued the store CA in {d.path}")
    return ca


def _leaf(
    d: _Dir,
    name: str,
    profile: LeafProfile,
    ca: CertificateAuthority,
    now: datetime,
    say: Callable[[str], None],
) -> None:
    cert_name, key_name = f"{name}.pem", f"{name}-key.pem"
    if d.exists(cert_name) and d.exists(key_name):
        cert, key = d.cert(cert_name), d.key(key_name)
        try:
            validate_leaf(
                cert, profile, (ca.certificate,), (ca.root,), now, public_key=key.public_key
            )
            if not due(cert, now):
                return
            reason = "past 2/3 of its lifetime"
        except TrustError as exc:
            reason = f"no longer fits ({exc})"
        say(f"re-issuing {d.path / cert_name}: {reason}")
    # issue_leaf re-validates the new certificate against the root before returning it.
    issued = issue_leaf(ca, profile, now, LEAF_LIFETIME)
    d.save(cert_name, key_name, issued.certificate, issued.key)


def ensure(
    directory: Path, namespace: str, now: datetime, say: Callable[[str], None] = lambda _: None
) -> StoreTLS:
    """Load, create or re-issue what `directory` must hold for etcd in `namespace`, and
    return the PEM bytes the manifests carry. `say` hears one line per change (never
    key material). TrustDirError names the path that is wrong."""
    d = _Dir(directory)
    d.prepare()
    try:
        root = _root(d, now, say)
        ca = _store_ca(d, root, now, say)
        for name, profile in profiles(namespace).items():
            _leaf(d, name, profile, ca, now, say)
    except TrustError as exc:  # issuance refused: should not happen with our own inputs
        raise TrustDirError(f"{directory}: cannot issue certificates: {exc}") from None

    def leaf(name: str) -> LeafFiles:
        chain = d.read(f"{name}.pem") + d.read(STORE_CA)
        return LeafFiles(chain=chain, key=d.read(f"{name}-key.pem"))

    return StoreTLS(
        root=d.read(ROOT),
        root_key=d.read(ROOT_KEY),
        store_ca=d.read(STORE_CA),
        server=leaf("etcd-server"),
        peer=leaf("etcd-peer"),
        client=leaf("registry-client"),
    )


def root_ca(directory: Path) -> CertificateAuthority:
    """The federation root of an existing trust directory (read only; for signing more
    under it, e.g. in tests, or checking what `ensure` made)."""
    d = _Dir(directory)
    cert, key = d.cert(ROOT), d.key(ROOT_KEY)
    try:
        check_key_matches(cert, key)
    except TrustError as exc:
        raise TrustDirError(f"{directory / ROOT}: {exc}") from None
    return CertificateAuthority(certificate=cert, key=key)


def store_ca(directory: Path) -> CertificateAuthority:
    """The store CA of an existing trust directory (read only)."""
    d = _Dir(directory)
    root = root_ca(directory)
    cert, key = d.cert(STORE_CA), d.key(STORE_CA_KEY)
    try:
        check_key_matches(cert, key)
    except TrustError as exc:
        raise TrustDirError(f"{directory / STORE_CA}: {exc}") from None
    return CertificateAuthority(
        certificate=cert,
        key=key,
        chain=(root.certificate,),
        trust_domain=STORE_TRUST_DOMAIN,
        cluster=STORE_CA_NAME,
    )
