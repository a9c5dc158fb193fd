"""The pure trust verdicts behind `meshfed check` and `meshfed link` (time as a parameter)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import serialization

from federation.cli.trustcheck import bundle_roots, verify_intermediate
from trust_bundle.ca import create_intermediate_ca, create_root_ca
from trust_bundle.exports import pem

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def test_a_fresh_intermediate_passes_and_says_when_it_expires() -> None:
    root = create_root_ca(NOW)
    inter = create_intermediate_ca(root, "east", "east.example", NOW)
    verdict = verify_intermediate(
        pem([inter.certificate]).decode(), pem([root.certificate]).decode(), NOW
    )
    assert verdict.ok, verdict.detail
    assert verdict.detail.startswith("expires in 36")


def test_expiring_within_30_days_fails_and_the_window_is_configurable() -> None:
    root = create_root_ca(NOW)
    inter = create_intermediate_ca(root, "east", "east.example", NOW, lifetime=timedelta(days=20))
    cert, roots = pem([inter.certificate]).decode(), pem([root.certificate]).decode()
    verdict = verify_intermediate(cert, roots, NOW)
    assert not verdict.ok and verdict.detail.startswith("expires in 20 days")
    assert verify_intermediate(cert, roots, NOW, within=timedelta(days=7)).ok
    expired = verify_intermediate(cert, roots, NOW + timedelta(days=21))
    assert not expired.ok and "expired" in expired.detail


def test_an_intermediate_of_another_root_fails() -> None:
    root, other = create_root_ca(NOW), create_root_ca(NOW)
    inter = create_intermediate_ca(other, "east", "east.example", NOW)
    verdict = verify_intermediate(
        pem([inter.certificate]).decode(), pem([root.certificate]).decode(), NOW
    )
    assert not verdict.ok
    # Same subject name, different key: found by name, refused by signature.
    assert "bad signature" in verdict.detail or "not in the bundle" in verdict.detail


def test_roots_from_a_spiffe_bundle_document() -> None:
    root = create_root_ca(NOW)
    der = root.certificate.public_bytes(serialization.Encoding.DER)
    doc = {
        "keys": [
            {"use": "x509-svid", "kty": "EC", "x5c": [base64.b64encode(der).decode()]},
            {"use": "jwt-svid", "kty": "EC", "kid": "k"},
        ]
    }
    assert bundle_roots(doc) == [root.certificate]
    inter = create_intermediate_ca(root, "east", "east.example", NOW)
    assert verify_intermediate(pem([inter.certificate]).decode(), bundle_roots(doc), NOW).ok
