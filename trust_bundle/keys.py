"""Private keys: generation, a redacting holder, and protection at rest.

Why this module exists: private keys are the one thing in this package that
must never leak, so they are confined here. ``KeyHolder`` wraps a key so that
``repr``/``str`` (and therefore logs, tracebacks and debug dumps) show only the
algorithm and public-key fingerprint. ``KeyProtector`` is the seam where a KMS
can plug in: it turns a key into an opaque blob safe to store at rest and back.
``PassphraseProtector`` is the built-in implementation: PKCS#8 encrypted with a
passphrase read from an environment variable or a file (RFC 5958 / PKCS#8
EncryptedPrivateKeyInfo via cryptography's ``BestAvailableEncryption``).
"""

from __future__ import annotations

import enum
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trust_bundle.errors import KeyProtectionError

PrivateKey = ec.EllipticCurvePrivateKey
PublicKey = ec.EllipticCurvePublicKey

# A passphrase shorter than this is refused: 16 bytes ~ 128 bits if random
# (NIST SP 800-63B §5.1.1 asks >= 8 for memorized secrets; keys deserve more).
MIN_PASSPHRASE_BYTES = 16


class KeyAlgorithm(enum.Enum):
    """Supported key algorithms. P-256 is the default (issue 3; what Istio and
    Linkerd issuers use); P-384 for operators whose policy demands it."""

    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"

    def curve(self) -> ec.EllipticCurve:
        """The cryptography curve object for this algorithm."""
        return ec.SECP256R1() if self is KeyAlgorithm.ECDSA_P256 else ec.SECP384R1()


def algorithm_of(public_key: object) -> KeyAlgorithm:
    """The KeyAlgorithm of ``public_key``; KeyProtectionError for anything else."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if isinstance(public_key.curve, ec.SECP256R1):
            return KeyAlgorithm.ECDSA_P256
        if isinstance(public_key.curve, ec.SECP384R1):
            return KeyAlgorithm.ECDSA_P384
    raise KeyProtectionError(f"unsupported key type {type(public_key).__name__}")


def public_key_fingerprint(public_key: PublicKey) -> str:
    """SHA-256 of the SubjectPublicKeyInfo DER (RFC 7469 §2.4 style pin), hex, first 16 chars."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """A private key that never shows itself in repr, str or equality dumps."""

    key: PrivateKey = field(repr=False, compare=False)

    @property
    def algorithm(self) -> KeyAlgorithm:
        # From the private key's curve: deriving the public key first costs more than
        # the rest of this check, and signing asks for it on every certificate.
        if not isinstance(self.key, ec.EllipticCurvePrivateKey):
            raise KeyProtectionError(f"unsupported key type {type(self.key).__name__}")
        curve = self.key.curve
        if isinstance(curve, ec.SECP256R1):
            return KeyAlgorithm.ECDSA_P256
        if isinstance(curve, ec.SECP384R1):
            return KeyAlgorithm.ECDSA_P384
        raise KeyProtectionError(f"unsupported curve {curve.name}")

    @property
    def public_key(self) -> PublicKey:
        return self.key.public_key()

    def __repr__(self) -> str:
        return (
            f"KeyHolder(algorithm={self.algorithm.value}, "
            f"public={public_key_fingerprint(self.public_key)}, private=<redacted>)"
        )

    __str__ = __repr__

    def unencrypted_pkcs8_pem(self) -> bytes:
        """Plain PKCS#8 PEM, for exports whose consumer cannot decrypt (Istio cacerts).
        Callers must write the result 0600 and never log it."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def unencrypted_sec1_pem(self) -> bytes:
        """Plain SEC1 ``EC PRIVATE KEY`` PEM (RFC 5915), the form Linkerd's issuer.key uses."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )


def generate_key(algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256) -> KeyHolder:
    """A fresh private key (impure: draws randomness from the OS)."""
    return KeyHolder(ec.generate_private_key(algorithm.curve()))


@runtime_checkable
class KeyProtector(Protocol):
    """Turns a private key into bytes safe to keep at rest, and back.

    Implement this to keep CA keys in a KMS/HSM: ``seal`` may return just a
    key reference, ``unseal`` may return a key object whose ``sign`` calls out.
    """

    def seal(self, key: KeyHolder) -> bytes:
        """Bytes that reveal nothing about the key without the protector's secret."""
        ...

    def unseal(self, blob: bytes) -> KeyHolder:
        """Inverse of ``seal``; raise KeyProtectionError when the blob or secret is wrong."""
        ...


@dataclass(frozen=True, slots=True)
class PassphraseProtector:
    """PKCS#8 EncryptedPrivateKeyInfo (PEM) under a passphrase."""

    passphrase: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.passphrase) < MIN_PASSPHRASE_BYTES:
            raise KeyProtectionError(f"passphrase must be at least {MIN_PASSPHRASE_BYTES} bytes")

    def __repr__(self) -> str:
        return "PassphraseProtector(passphrase=<redacted>)"

    @classmethod
    def from_env(cls, variable: str) -> PassphraseProtector:
        """Read the passphrase from environment variable ``variable``."""
        value = os.environ.get(variable)
        if value is None:
            raise KeyProtectionError(f"environment variable {variable} is not set")
        return cls(value.encode())

    @classmethod
    def from_file(cls, path: Path | str) -> PassphraseProtector:
        """Read the passphrase from a file (trailing newline stripped)."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise KeyProtectionError(f"cannot read passphrase file {path}: {exc.strerror}") from exc
        return cls(data.rstrip(b"\r\n"))

    def seal(self, key: KeyHolder) -> bytes:
        return key.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self.passphrase),
        )

    def unseal(self, blob: bytes) -> KeyHolder:
        if b"ENCRYPTED PRIVATE KEY" not in blob:
            raise KeyProtectionError("refusing an unencrypted private key at rest")
        try:
            key = serialization.load_pem_private_key(blob, password=self.passphrase)
        except (ValueError, TypeError) as exc:
            # Do not chain the message: it could echo parts of the blob.
            raise KeyProtectionError("cannot decrypt private key (wrong passphrase?)") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyProtectionError(f"unsupported private key type {type(key).__name__}")
        holder = KeyHolder(key)
        algorithm_of(holder.public_key)
        return holder
