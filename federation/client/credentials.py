"""What an agent or gateway holds to talk to the registry: its key, SVID and trust bundle.

Why this module exists: joining, renewing and every mTLS call need the same
three PEM blobs; `Identity` keeps them together (the key redacted from repr)
and builds the gRPC channel credentials from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import grpc  # type: ignore[import-untyped]
from cryptography import x509

from trust_bundle import KeyHolder, SpiffeId, agent_id, gateway_id, generate_key, make_csr

COMPONENTS = ("agent", "gateway")


@dataclass(frozen=True, slots=True)
class Identity:
    """A component's SVID: private key (PEM), chain (leaf first), federation roots."""

    spiffe_id: str
    key_pem: bytes = field(repr=False)
    chain_pem: bytes
    bundle_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.chain_pem)

    @property
    def not_before(self) -> datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    def channel_credentials(self) -> Any:
        return grpc.ssl_channel_credentials(self.bundle_pem, self.key_pem, self.chain_pem)


def component_id(component: str, cluster: str, trust_domain: str) -> SpiffeId:
    if component not in COMPONENTS:
        raise ValueError(f"component must be one of {COMPONENTS}, not {component!r}")
    make = agent_id if component == "agent" else gateway_id
    return make(trust_domain, cluster)


def new_key_and_csr(spiffe_id: SpiffeId) -> tuple[KeyHolder, bytes]:
    """A fresh key and a CSR for `spiffe_id` signed by it (a new key on every renewal)."""
    key = generate_key()
    return key, make_csr(key, spiffe_id)
