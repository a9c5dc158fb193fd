"""The thin I/O shell: trust material on disk.

Why this module exists: everything else in trust_bundle is pure; this is the
one place that touches the filesystem, so file modes and atomicity are
decided once. Secret files are created 0600 (never briefly wider) and written
atomically (temp file + fsync + rename); CA private keys are stored only as a
KeyProtector blob. Nothing here logs.

CA directory layout (save_ca/load_ca):
  ca.pem          the CA certificate
  chain.pem       certificates above it to the root (empty for the root)
  ca-key.sealed   the private key as sealed by the KeyProtector (0600)
  meta.json       {"trust_domain": ..., "cluster": ...}
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from cryptography import x509

from trust_bundle.ca import CertificateAuthority, check_key_matches
from trust_bundle.errors import StorageError, TrustError
from trust_bundle.exports import ExportFiles, pem
from trust_bundle.keys import KeyProtector

# Owner read/write only, for anything holding key material.
SECRET_MODE = 0o600
# World-readable, for certificates and bundles (public by design).
PUBLIC_MODE = 0o644


def write_file(path: Path | str, data: bytes, *, secret: bool) -> None:
    """Atomically write ``data`` to ``path`` with mode 0600 (secret) or 0644."""
    target = Path(path)
    mode = SECRET_MODE if secret else PUBLIC_MODE
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            os.fchmod(fd, mode)  # mkstemp creates 0600; widen only public files
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {exc.strerror}") from exc


def read_file(path: Path | str) -> bytes:
    """Read a file; StorageError instead of OSError."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror}") from exc


def write_export(directory: Path | str, export: ExportFiles) -> list[Path]:
    """Write every file of ``export`` into ``directory``; secrets 0600."""
    written = []
    for name, data in export.files:
        if "/" in name or name in ("", ".", ".."):
            raise StorageError(f"refusing export file name {name!r}")
        path = Path(directory) / name
        write_file(path, data, secret=name in export.secret)
        written.append(path)
    return written


def save_ca(directory: Path | str, ca: CertificateAuthority, protector: KeyProtector) -> None:
    """Store a CA: certificates in the clear, the key sealed by ``protector``."""
    root = Path(directory)
    write_file(root / "ca-key.sealed", protector.seal(ca.key), secret=True)
    write_file(root / "ca.pem", pem([ca.certificate]), secret=False)
    write_file(root / "chain.pem", pem(ca.chain), secret=False)
    meta = {"trust_domain": ca.trust_domain, "cluster": ca.cluster}
    write_file(root / "meta.json", json.dumps(meta).encode(), secret=False)


def _load_pems(data: bytes, name: str) -> list[x509.Certificate]:
    if not data.strip():
        return []
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise StorageError(f"{name}: not PEM certificates: {exc}") from exc


def load_ca(directory: Path | str, protector: KeyProtector) -> CertificateAuthority:
    """Inverse of save_ca; checks the key file is 0600 and matches the certificate."""
    root = Path(directory)
    key_path = root / "ca-key.sealed"
    try:
        mode = key_path.stat().st_mode & 0o777
    except OSError as exc:
        raise StorageError(f"cannot stat {key_path}: {exc.strerror}") from exc
    if mode & ~SECRET_MODE:
        raise StorageError(f"{key_path} has mode {mode:o}; refusing a key readable by others")
    certs = _load_pems(read_file(root / "ca.pem"), "ca.pem")
    if len(certs) != 1:
        raise StorageError(f"ca.pem must hold one certificate, holds {len(certs)}")
    chain = _load_pems(read_file(root / "chain.pem"), "chain.pem")
    try:
        meta = json.loads(read_file(root / "meta.json"))
    except ValueError as exc:
        raise StorageError(f"meta.json: {exc}") from exc
    key = protector.unseal(read_file(key_path))
    try:
        check_key_matches(certs[0], key)
    except TrustError as exc:
        raise StorageError(f"{directory}: {exc}") from exc
    return CertificateAuthority(
        certificate=certs[0],
        key=key,
        chain=tuple(chain),
        trust_domain=meta.get("trust_domain"),
        cluster=meta.get("cluster"),
    )
