"""What each mesh needs on disk, built in memory (pure; storage.py writes it).

Why this module exists: meshfed meets Istio and Linkerd where they are, in
their own file formats. Building the file sets as values keeps the format
knowledge testable without a filesystem and lets the registry ship them
anywhere (files, Kubernetes Secrets). Files holding private keys are marked
secret: their content is redacted in repr and left out of ``public()``, the
view a list/get API may return.

Istio plug-in CA ("cacerts" Secret, Istio docs "Plug in CA Certificates"):
  ca-cert.pem     the cluster intermediate certificate
  ca-key.pem      its private key (PKCS#8, unencrypted: istiod cannot decrypt)
  root-cert.pem   every trusted root (both during rotation)
  cert-chain.pem  intermediate followed by the root that signed it
Linkerd ("linkerd install --identity-*-file" / identity-issuer Secret):
  ca.crt          trust anchors (every trusted root)
  issuer.crt      the cluster intermediate
  issuer.key      its private key (SEC1 "EC PRIVATE KEY", as step-cli writes it)
PEM bundle:
  bundle.pem      every trusted root
SPIFFE (per trust domain):
  bundle.json               this trust domain's SPIFFE bundle
  federated-bundles.json    bundle map of the other trust domains
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trust_bundle.ca import CertificateAuthority
from trust_bundle.errors import ValidationFailed
from trust_bundle.spiffe_bundle import SpiffeBundle, serialize_bundle, serialize_bundle_map


def pem(certs: Iterable[x509.Certificate]) -> bytes:
    """Concatenated PEM of ``certs``."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@dataclass(frozen=True, slots=True)
class ExportFiles:
    """A set of named files; names in ``secret`` hold private keys (write 0600)."""

    files: tuple[tuple[str, bytes], ...]
    secret: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}=<redacted>" if name in self.secret else f"{name}=<{len(data)} bytes>"
            for name, data in self.files
        )
        return f"ExportFiles({shown})"

    def as_dict(self) -> dict[str, bytes]:
        """Every file, secrets included: for writing to disk or a Secret, never for display."""
        return dict(self.files)

    def public(self) -> dict[str, bytes]:
        """Only files without key material: what a list/get API may return."""
        return {name: data for name, data in self.files if name not in self.secret}


def _check_roots(intermediate: CertificateAuthority, roots: Sequence[x509.Certificate]) -> None:
    if intermediate.is_root:
        raise ValidationFailed("exports need a cluster intermediate, not the root")
    if intermediate.root not in roots:
        raise ValidationFailed("the intermediate's root is not among the trusted roots")


def istio_cacerts(
    intermediate: CertificateAuthority, trusted_roots: Sequence[x509.Certificate]
) -> ExportFiles:
    """Istio plug-in CA files for the intermediate's cluster."""
    _check_roots(intermediate, trusted_roots)
    return ExportFiles(
        files=(
            ("ca-cert.pem", pem([intermediate.certificate])),
            ("ca-key.pem", intermediate.key.unencrypted_pkcs8_pem()),
            ("root-cert.pem", pem(trusted_roots)),
            ("cert-chain.pem", pem([intermediate.certificate, *intermediate.chain])),
        ),
        secret=frozenset({"ca-key.pem"}),
    )


def linkerd_identity(
    intermediate: CertificateAuthority, trusted_roots: Sequence[x509.Certificate]
) -> ExportFiles:
    """Linkerd trust anchors and issuer for the intermediate's cluster."""
    _check_roots(intermediate, trusted_roots)
    return ExportFiles(
        files=(
            ("ca.crt", pem(trusted_roots)),
            ("issuer.crt", pem([intermediate.certificate])),
            ("issuer.key", intermediate.key.unencrypted_sec1_pem()),
        ),
        secret=frozenset({"issuer.key"}),
    )


def pem_bundle(trusted_roots: Sequence[x509.Certificate]) -> ExportFiles:
    """The trusted roots as one PEM file, for anything that takes a CA file."""
    if not trusted_roots:
        raise ValidationFailed("refusing to export an empty PEM bundle")
    return ExportFiles(files=(("bundle.pem", pem(trusted_roots)),))


def trust_domain_exports(
    own: SpiffeBundle, federated: Mapping[str, SpiffeBundle] | Iterable[SpiffeBundle]
) -> ExportFiles:
    """A trust domain's SPIFFE bundle and the bundle map of the domains it federates with."""
    others = list(federated.values()) if isinstance(federated, Mapping) else list(federated)
    others = [b for b in others if b.trust_domain != own.trust_domain]
    return ExportFiles(
        files=(
            ("bundle.json", serialize_bundle(own)),
            ("federated-bundles.json", serialize_bundle_map(others)),
        )
    )
