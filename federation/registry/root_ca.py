"""`meshfed serve --root-ca DIR`: adopt a federation root made outside the registry.

Why this module exists: with `meshfed install --store etcd` the install command
makes the federation root (it also signs the etcd certificates, and etcd must run
before the registry can store anything), so the registry must take that root
instead of generating its own at first start. DIR holds `root.pem` and
`root-key.pem` (what `meshfed install` writes into its trust directory and into
the Secret `meshfed-root-ca`).

The rules, checked before `TrustService.ensure_root` runs:

- the store has no root yet: the given one is validated (a self-signed CA valid
  now, its key matching) and stored like a generated root (key sealed by the
  `KeyProtector`); `ensure_root` then issues the registry CA under it;
- the store already holds this root (as the current or, during a rotation, the
  next root): nothing to do;
- a rotation retired this root (the federation was installed with it and rotated
  since): the store's root stands ("superseded"), so a registry pod started from
  the install's `meshfed-root-ca` Secret still starts after a rotation;
- the store holds another root: `RootMismatch`, naming both fingerprints. A root
  is never replaced silently: every SVID, bundle and mesh CA in the federation
  chains to the stored one (replacing it is a rotation, docs/trust.md).

Several replicas may start at once: the create is a compare-and-swap, and the
loser re-reads and applies the rules above to the winner's root.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from federation.errors import AlreadyExists
from federation.model import CaMaterial
from federation.registry.rotation_view import (
    NEXT_ROOT_CA,
    ROOT_CA,
    ROTATION_RECORD,
    TrustFailure,
    pem_text,
)
from federation.store import Store
from trust_bundle import CertificateAuthority, KeyHolder, KeyProtector, TrustError
from trust_bundle.ca import check_key_matches, validate_root_ca
from trust_bundle.spiffe_bundle import certificate_fingerprint

ROOT_FILE = "root.pem"
ROOT_KEY_FILE = "root-key.pem"


class RootMismatch(TrustFailure):
    """The store's federation root is not the one given with --root-ca."""


@dataclass(frozen=True, slots=True)
class AdoptResult:
    action: str  # "imported", "unchanged" or "superseded" (fingerprint: the store's root)
    fingerprint: str


def load_root(directory: Path, now: datetime) -> CertificateAuthority:
    """Read and validate DIR/root.pem and DIR/root-key.pem. Errors name the file, never
    the key's bytes."""
    cert_path, key_path = directory / ROOT_FILE, directory / ROOT_KEY_FILE
    try:
        certs = x509.load_pem_x509_certificates(cert_path.read_bytes())
    except OSError as exc:
        raise TrustFailure(f"--root-ca: cannot read {cert_path}: {exc.strerror}") from None
    except ValueError:
        raise TrustFailure(f"--root-ca: {cert_path} holds no PEM certificate") from None
    if len(certs) != 1:
        raise TrustFailure(f"--root-ca: {cert_path} must hold one certificate, has {len(certs)}")
    try:
        key_bytes = key_path.read_bytes()
    except OSError as exc:
        raise TrustFailure(f"--root-ca: cannot read {key_path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(key_bytes, password=None)
    except (ValueError, TypeError):
        # Never chain the parser's message: it could quote the key material.
        raise TrustFailure(f"--root-ca: {key_path} is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TrustFailure(f"--root-ca: {key_path} is not an ECDSA key")
    holder = KeyHolder(key)
    try:
        holder.algorithm  # noqa: B018 - refuses curves trust_bundle does not support
        validate_root_ca(certs[0], now)
        check_key_matches(certs[0], holder)
    except TrustError as exc:
        message = f"--root-ca: {cert_path} is not a usable federation root: {exc}"
        raise TrustFailure(message) from None
    return CertificateAuthority(certificate=certs[0], key=holder)


async def _stored_root(store: Store, name: str) -> x509.Certificate | None:
    held = await store.cas.find(name)
    if held is None:
        return None
    try:
        return x509.load_pem_x509_certificate(held.record.cert_pem.encode())
    except ValueError as exc:
        raise TrustFailure(f"the stored {name} CA certificate is unreadable: {exc}") from None


async def adopt_root(
    store: Store, protector: KeyProtector, root: CertificateAuthority
) -> AdoptResult:
    """Import `root` into an empty store, accept it if stored, refuse another (above)."""
    given = certificate_fingerprint(root.certificate)
    for _ in range(2):  # a lost create race is re-read once: then the winner's root is there
        current = await _stored_root(store, ROOT_CA)
        if current is None:
            try:
                sealed = protector.seal(root.key).decode()
            except TrustError as exc:
                raise TrustFailure(f"cannot seal the root CA key: {exc}") from None
            material = CaMaterial(
                name=ROOT_CA,
                kind="root",
                cert_pem=pem_text([root.certificate]),
                sealed_key=sealed,
                not_after=root.certificate.not_valid_after_utc,
            )
            try:
                await store.cas.create(material)
            except AlreadyExists:
                continue
            return AdoptResult("imported", given)
        if current == root.certificate:
            return AdoptResult("unchanged", given)
        upcoming = await _stored_root(store, NEXT_ROOT_CA)
        if upcoming == root.certificate:
            return AdoptResult("unchanged", given)
        rotated = await store.rotations.find(ROTATION_RECORD)
        if rotated is not None and given in rotated.record.retired_roots_sha256:
            return AdoptResult("superseded", certificate_fingerprint(current))
        raise RootMismatch(
            f"--root-ca: the store already has federation root {certificate_fingerprint(current)} "
            f"(SHA-256), not the given {given}; refusing to replace it. Point --root-ca at "
            "the trust directory this federation was installed with, or start without "
            "--root-ca (a root is changed only by a rotation: meshfed trust rotate)"
        )
    raise TrustFailure("--root-ca: the store's root changed twice while starting; start again")
