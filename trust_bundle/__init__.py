"""Certificates and trust for the federation.

Pure `cryptography` code: the federation root, per-cluster intermediates,
X.509-SVIDs, SPIFFE bundles and staged root rotation. This package imports no
other meshfed package (checked by tests/test_import_contract.py).

Modules (pure unless marked):
  errors         TrustError and its subclasses
  ids            SPIFFE IDs, meshfed identity shapes, entitlements
  keys           key generation, redacting KeyHolder, KeyProtector (KMS seam)
  validate       RFC 5280 / X509-SVID validation
  ca             root and intermediate CAs: build, sign, validate
  svid           CSR verification and SVID issuance
  spiffe_bundle  SPIFFE bundle model, parser, serializer, bundle map
  merge          bundle merge and update acceptance
  renewal        SVID renewal decisions
  rotation       the root-rotation state machine
  exports        Istio / Linkerd / PEM / SPIFFE file sets
  storage        (I/O shell) files on disk, 0600 secrets, sealed CA keys
"""

from trust_bundle.ca import (
    CertificateAuthority,
    create_intermediate_ca,
    create_root_ca,
)
from trust_bundle.errors import (
    InvalidBundle,
    InvalidCSR,
    InvalidIdentity,
    KeyProtectionError,
    NotEntitled,
    RotationRefused,
    SigningFailed,
    StorageError,
    TrustError,
    ValidationFailed,
)
from trust_bundle.ids import (
    Entitlement,
    SpiffeId,
    agent_id,
    cluster_entitlement,
    gateway_id,
    parse_spiffe_id,
    workload_id,
)
from trust_bundle.keys import KeyHolder, KeyProtector, PassphraseProtector, generate_key
from trust_bundle.spiffe_bundle import (
    SpiffeBundle,
    parse_bundle,
    parse_bundle_map,
    serialize_bundle,
    serialize_bundle_map,
)
from trust_bundle.svid import IssuedSvid, issue_svid, make_csr
from trust_bundle.validate import ValidatedSvid, validate_svid

__all__ = [
    "CertificateAuthority",
    "Entitlement",
    "InvalidBundle",
    "InvalidCSR",
    "InvalidIdentity",
    "IssuedSvid",
    "KeyHolder",
    "KeyProtectionError",
    "KeyProtector",
    "NotEntitled",
    "PassphraseProtector",
    "RotationRefused",
    "SigningFailed",
    "SpiffeBundle",
    "SpiffeId",
    "StorageError",
    "TrustError",
    "ValidatedSvid",
    "ValidationFailed",
    "agent_id",
    "cluster_entitlement",
    "create_intermediate_ca",
    "create_root_ca",
    "gateway_id",
    "generate_key",
    "issue_svid",
    "make_csr",
    "parse_bundle",
    "parse_bundle_map",
    "parse_spiffe_id",
    "serialize_bundle",
    "serialize_bundle_map",
    "validate_svid",
    "workload_id",
]
