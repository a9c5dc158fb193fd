"""One exception tree for everything trust_bundle can refuse.

Why this module exists: callers (the registry, the CLI, gateways) must be able
to catch "trust said no" with one ``except TrustError`` and tell the reasons
apart by subclass, without ever seeing a foreign exception type. Every module
translates ``ValueError``/``TypeError``/``InvalidSignature`` from
``cryptography`` (and ``OSError`` from the filesystem) at its boundary with
``raise <TrustError subclass>(...) from exc``.

Messages never contain key material or passphrases.
"""

from __future__ import annotations


class TrustError(Exception):
    """Base of every error raised by trust_bundle."""


class InvalidIdentity(TrustError):
    """A SPIFFE ID or trust domain name is malformed."""


class InvalidCSR(TrustError):
    """A certificate signing request is unparsable, badly signed or malformed."""


class NotEntitled(TrustError):
    """The caller asked for an identity it is not entitled to."""


class ValidationFailed(TrustError):
    """A certificate or chain failed validation (chain, SAN, EKU, validity, key usage)."""


class InvalidBundle(TrustError):
    """A SPIFFE bundle document (or bundle update) is malformed or unacceptable."""


class RotationRefused(TrustError):
    """A root-rotation step was asked for in a state where it is unsafe or impossible."""


class KeyProtectionError(TrustError):
    """A private key could not be generated, sealed or unsealed (wrong passphrase, bad blob)."""


class StorageError(TrustError):
    """Reading or writing trust material on disk failed."""


class SigningFailed(TrustError):
    """The signing step itself failed (key/algorithm mismatch, builder incomplete)."""
