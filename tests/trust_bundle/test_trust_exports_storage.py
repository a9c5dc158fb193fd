"""Exports (Istio, Linkerd, PEM, SPIFFE), openssl interop, keys at rest, file modes."""

from __future__ import annotations

import logging
import shutil
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from spiffe import TrustDomain, X509Bundle

from trust_bundle.ca import create_root_ca
from trust_bundle.errors import KeyProtectionError, StorageError, ValidationFailed
from trust_bundle.exports import (
    istio_cacerts,
    linkerd_identity,
    pem,
    pem_bundle,
    trust_domain_exports,
)
from trust_bundle.keys import KeyHolder, KeyProtector, PassphraseProtector, generate_key
from trust_bundle.spiffe_bundle import SpiffeBundle, parse_bundle, parse_bundle_map
from trust_bundle.storage import load_ca, save_ca, write_export, write_file

PASS = b"correct horse battery staple"
OPENSSL = shutil.which("openssl") or "openssl"  # required: .ci/run installs it


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------ exports


def test_istio_cacerts_files(pki, tmp_path):
    roots = [
        pki.root.certificate,
        create_root_ca(pki.a.certificate.not_valid_before_utc).certificate,
    ]
    export = istio_cacerts(pki.a, roots)
    files = export.as_dict()
    assert list(files) == ["ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"]
    assert x509.load_pem_x509_certificates(files["ca-cert.pem"]) == [pki.a.certificate]
    assert x509.load_pem_x509_certificates(files["root-cert.pem"]) == roots
    assert x509.load_pem_x509_certificates(files["cert-chain.pem"]) == [
        pki.a.certificate,
        pki.root.certificate,
    ]
    key = serialization.load_pem_private_key(files["ca-key.pem"], None)
    assert key.public_key() == pki.a.certificate.public_key()
    assert "ca-key.pem" not in export.public()
    assert "PRIVATE" not in repr(export) and "ca-key.pem=<redacted>" in repr(export)
    written = write_export(tmp_path, export)
    assert {p.name: mode(p) for p in written} == {
        "ca-cert.pem": 0o644,
        "ca-key.pem": 0o600,
        "root-cert.pem": 0o644,
        "cert-chain.pem": 0o644,
    }


def test_linkerd_identity_files(pki):
    export = linkerd_identity(pki.b, [pki.root.certificate])
    files = export.as_dict()
    assert list(files) == ["ca.crt", "issuer.crt", "issuer.key"]
    assert files["issuer.key"].startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert x509.load_pem_x509_certificates(files["ca.crt"]) == [pki.root.certificate]
    assert export.public().keys() == {"ca.crt", "issuer.crt"}


def test_exports_refuse_roots_that_do_not_cover_the_intermediate(pki, now):
    with pytest.raises(ValidationFailed):
        istio_cacerts(pki.a, [create_root_ca(now).certificate])
    with pytest.raises(ValidationFailed):
        linkerd_identity(pki.root, [pki.root.certificate])
    with pytest.raises(ValidationFailed):
        pem_bundle([])


def test_trust_domain_exports(pki):
    own = SpiffeBundle("a.meshfed.test", (pki.root.certificate,), 3, 300)
    other = SpiffeBundle("b.meshfed.test", (pki.root.certificate,), 3, 300)
    files = trust_domain_exports(own, {"a": own, "b": other}).as_dict()
    assert parse_bundle("a.meshfed.test", files["bundle.json"]) == own
    assert parse_bundle_map(files["federated-bundles.json"]) == {"b.meshfed.test": other}


def test_chains_verify_with_openssl(pki, issue, tmp_path):
    write_export(tmp_path, istio_cacerts(pki.a, [pki.root.certificate]))
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(pem([issue(pki.a).svid.certificate]))
    ok = subprocess.run(
        [
            OPENSSL,
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            tmp_path / "root-cert.pem",
            "-untrusted",
            tmp_path / "ca-cert.pem",
            leaf,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    chain = subprocess.run(
        [OPENSSL, "verify", "-CAfile", tmp_path / "root-cert.pem", tmp_path / "cert-chain.pem"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert chain.returncode == 0, chain.stderr


def test_openssl_enforces_the_name_constraint(pki, tmp_path, now):
    from trust_bundle.ca import sign_certificate
    from trust_bundle.ids import gateway_id
    from trust_bundle.svid import CsrClaim, build_svid_certificate

    # bypass issue_svid's checks to forge a B identity under A's intermediate
    claim = CsrClaim(gateway_id("b.meshfed.test", "b"), generate_key().public_key)
    forged = sign_certificate(build_svid_certificate(claim, pki.a, now), pki.a.key)
    (tmp_path / "root.pem").write_bytes(pem([pki.root.certificate]))
    (tmp_path / "inter.pem").write_bytes(pem([pki.a.certificate]))
    (tmp_path / "forged.pem").write_bytes(pem([forged]))
    result = subprocess.run(
        [
            OPENSSL,
            "verify",
            "-CAfile",
            tmp_path / "root.pem",
            "-untrusted",
            tmp_path / "inter.pem",
            tmp_path / "forged.pem",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0 and "permitted subtree violation" in result.stderr


def test_istio_root_file_loads_with_spiffe_x509bundle(pki):
    files = istio_cacerts(pki.a, [pki.root.certificate]).as_dict()
    bundle = X509Bundle.parse(TrustDomain("a.meshfed.test"), files["root-cert.pem"])
    assert bundle.x509_authorities == {pki.root.certificate}


# ------------------------------------------------------------------ keys at rest


def test_key_holder_and_protector_never_show_secrets(caplog):
    key = generate_key()
    protector = PassphraseProtector(PASS)
    secret_pem = key.unencrypted_pkcs8_pem().decode()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("t").info("holder %r %s protector %r", key, key, protector)
    for text in (repr(key), str(key), repr(protector), caplog.text):
        assert "redacted" in text
        assert secret_pem.splitlines()[1] not in text
        assert PASS.decode() not in text
    assert isinstance(protector, KeyProtector)


def test_passphrase_protector_round_trip_and_refusals(monkeypatch, tmp_path):
    key = generate_key()
    protector = PassphraseProtector(PASS)
    blob = protector.seal(key)
    assert blob.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert protector.unseal(blob).public_key == key.public_key
    with pytest.raises(KeyProtectionError, match="wrong passphrase"):
        PassphraseProtector(b"x" * 16).unseal(blob)
    with pytest.raises(KeyProtectionError, match="unencrypted"):
        protector.unseal(key.unencrypted_pkcs8_pem())
    with pytest.raises(KeyProtectionError, match="at least"):
        PassphraseProtector(b"short")
    monkeypatch.setenv("MESHFED_TEST_PASS", PASS.decode())
    assert PassphraseProtector.from_env("MESHFED_TEST_PASS") == protector
    monkeypatch.delenv("MESHFED_TEST_PASS")
    with pytest.raises(KeyProtectionError, match="not set"):
        PassphraseProtector.from_env("MESHFED_TEST_PASS")
    (tmp_path / "pass").write_bytes(PASS + b"\n")
    assert PassphraseProtector.from_file(tmp_path / "pass") == protector
    with pytest.raises(KeyProtectionError, match="cannot read"):
        PassphraseProtector.from_file(tmp_path / "missing")


class FakeKms:
    """A KeyProtector that keeps keys 'in the KMS' and stores only a reference."""

    def __init__(self) -> None:
        self.vault: dict[bytes, KeyHolder] = {}

    def seal(self, key: KeyHolder) -> bytes:
        ref = f"kms-key-{len(self.vault)}".encode()
        self.vault[ref] = key
        return ref

    def unseal(self, blob: bytes) -> KeyHolder:
        try:
            return self.vault[blob]
        except KeyError as exc:
            raise KeyProtectionError("unknown key reference") from exc


@pytest.mark.parametrize("protector", [PassphraseProtector(PASS), FakeKms()])
def test_save_and_load_ca(pki, tmp_path, protector):
    save_ca(tmp_path / "a", pki.a, protector)
    assert mode(tmp_path / "a" / "ca-key.sealed") == 0o600
    assert b"BEGIN PRIVATE KEY" not in (tmp_path / "a" / "ca-key.sealed").read_bytes()
    loaded = load_ca(tmp_path / "a", protector)
    assert loaded.certificate == pki.a.certificate and loaded.chain == pki.a.chain
    assert (loaded.trust_domain, loaded.cluster) == ("a.meshfed.test", "a")
    assert loaded.key.public_key == pki.a.key.public_key


def test_load_ca_refusals(pki, tmp_path):
    protector = PassphraseProtector(PASS)
    save_ca(tmp_path / "a", pki.a, protector)
    save_ca(tmp_path / "b", pki.b, protector)
    with pytest.raises(KeyProtectionError):
        load_ca(tmp_path / "a", PassphraseProtector(b"y" * 16))
    (tmp_path / "a" / "ca-key.sealed").chmod(0o644)
    with pytest.raises(StorageError, match="readable by others"):
        load_ca(tmp_path / "a", protector)
    (tmp_path / "a" / "ca-key.sealed").chmod(0o600)
    shutil.copy(tmp_path / "b" / "ca-key.sealed", tmp_path / "a" / "ca-key.sealed")
    with pytest.raises(StorageError, match="does not match"):
        load_ca(tmp_path / "a", protector)
    with pytest.raises(StorageError, match="cannot stat"):
        load_ca(tmp_path / "missing", protector)


def test_write_file_is_atomic_and_refuses_bad_names(tmp_path):
    write_file(tmp_path / "s", b"1", secret=True)
    write_file(tmp_path / "s", b"2", secret=True)
    assert (tmp_path / "s").read_bytes() == b"2" and mode(tmp_path / "s") == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["s"]
    from trust_bundle.exports import ExportFiles

    with pytest.raises(StorageError, match="refusing"):
        write_export(tmp_path, ExportFiles(files=(("../x", b""),)))
    with pytest.raises(StorageError, match="cannot write"):
        write_file(tmp_path / "s" / "x", b"", secret=False)  # parent is a file
