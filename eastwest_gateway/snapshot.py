"""The state directory of a registry-mode gateway: last Watch view, SVID, trust files.

Why it exists: DESIGN.md "What stays up" -- the registry going away must not
stop traffic. A gateway restarted while the registry is unreachable starts from
the last view it saw (and its still-valid SVID), and resumes the Watch from that
view's revision when the registry returns, so it catches up with a delta rather
than a blank start. The view <-> JSON conversion is pure (:func:`view_to_doc`,
:func:`view_from_doc`); the file helpers write atomically (temp file + rename,
so a crash never leaves half a snapshot) and keep the private key 0600.

Layout::

    DIR/view.json   the last WatchView (revision + items)
    DIR/key.pem     the SVID's private key (0600)
    DIR/svid.pem    the SVID chain, leaf first
    DIR/bundle.pem  the federation roots the registry returned with the SVID
    DIR/ca.pem      what peers are verified against: bundle.pem + every Watch bundle
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from eastwest_gateway.errors import ConfigError, GatewayError
from eastwest_gateway.identity import spiffe_id_from_der
from eastwest_gateway.routefile import TlsFiles
from federation.client import Identity, Items, WatchView
from federation.model import Endpoint, Gateway, Link, Port, ServiceKey, TrustDomain
from federation.model.imports import ServiceImport

FORMAT_VERSION: Final = 1
VIEW: Final = "view.json"
KEY: Final = "key.pem"
SVID: Final = "svid.pem"
BUNDLE: Final = "bundle.pem"
CA: Final = "ca.pem"
PEM_END: Final = "-----END CERTIFICATE-----"


def tls_files(state_dir: Path) -> TlsFiles:
    return TlsFiles(cert=state_dir / SVID, key=state_dir / KEY, ca=state_dir / CA)


# --- pure conversions --------------------------------------------------------------


def _import_to_doc(imp: ServiceImport) -> dict[str, Any]:
    return {
        "consumer": imp.consumer,
        "namespace": imp.service.namespace,
        "name": imp.service.name,
        "ports": [p.to_dict() for p in imp.ports],
        "clusters": list(imp.clusters),
        "conflicts": list(imp.conflicts),
        "endpoints": [e.to_dict() for e in imp.endpoints],
    }


def _import_from_doc(doc: Mapping[str, Any]) -> ServiceImport:
    return ServiceImport(
        consumer=str(doc["consumer"]),
        service=ServiceKey(str(doc["namespace"]), str(doc["name"])),
        ports=tuple(Port.from_dict(p) for p in doc["ports"]),
        clusters=tuple(str(c) for c in doc["clusters"]),
        conflicts=tuple(str(c) for c in doc["conflicts"]),
        endpoints=tuple(Endpoint.from_dict(e) for e in doc["endpoints"]),
    )


def view_to_doc(view: WatchView) -> dict[str, Any]:
    items = view.items
    return {
        "version": FORMAT_VERSION,
        "revision": view.revision,
        "imports": [_import_to_doc(i) for _, i in sorted(items.imports.items(), key=_by_str)],
        "links": [x.to_dict() for _, x in sorted(items.links.items())],
        "gateways": [g.to_dict() for _, g in sorted(items.gateways.items())],
        "bundles": [b.to_dict() for _, b in sorted(items.bundles.items())],
        "exports": [_import_to_doc(e) for _, e in sorted(items.exports.items(), key=_by_str)],
    }


def _by_str(pair: tuple[ServiceKey, ServiceImport]) -> str:
    return str(pair[0])


def view_from_doc(doc: object) -> WatchView:
    """The view a snapshot holds; :class:`ConfigError` if it is not one we wrote."""
    if not isinstance(doc, Mapping) or doc.get("version") != FORMAT_VERSION:
        raise ConfigError(f"{VIEW}: not a version-{FORMAT_VERSION} snapshot")
    try:
        imports = [_import_from_doc(i) for i in doc["imports"]]
        links = [Link.from_dict(x) for x in doc["links"]]
        gateways = [Gateway.from_dict(g) for g in doc["gateways"]]
        bundles = [TrustDomain.from_dict(b) for b in doc["bundles"]]
        exports = [_import_from_doc(e) for e in doc.get("exports", [])]
        revision = int(doc["revision"])
    except (KeyError, TypeError, ValueError) as exc:  # ValidationError is a ValueError
        raise ConfigError(f"{VIEW}: unreadable snapshot: {exc}") from exc
    return WatchView(
        revision,
        Items(
            imports={i.service: i for i in imports},
            links={x.key: x for x in links},
            gateways={g.key: g for g in gateways},
            bundles={b.key: b for b in bundles},
            exports={e.service: e for e in exports},
        ),
    )


def trust_pem(identity_bundle: bytes, items: Items) -> bytes:
    """Roots to verify peers with: the SVID's bundle plus every Watch bundle, deduplicated."""
    seen: list[str] = []
    blobs = [identity_bundle.decode()] + [
        r for _, td in sorted(items.bundles.items()) for r in td.roots_pem
    ]
    for blob in blobs:
        for part in blob.split(PEM_END):
            body = part.strip()
            if body:
                pem = f"{body}\n{PEM_END}\n"
                if pem not in seen:
                    seen.append(pem)
    return "".join(seen).encode()


# --- files ---------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_view(state_dir: Path, view: WatchView) -> None:
    data = json.dumps(view_to_doc(view), sort_keys=True).encode()
    write_atomic(state_dir / VIEW, data)


def load_view(state_dir: Path) -> WatchView | None:
    """The saved view, or None if there is none (a corrupt one is a ConfigError)."""
    path = state_dir / VIEW
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return view_from_doc(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not JSON: {exc}") from exc


def save_identity(state_dir: Path, identity: Identity) -> None:
    write_atomic(state_dir / KEY, identity.key_pem, 0o600)
    write_atomic(state_dir / SVID, identity.chain_pem)
    write_atomic(state_dir / BUNDLE, identity.bundle_pem)


def load_identity(state_dir: Path) -> Identity | None:
    """The saved SVID, or None if any part is missing or unreadable."""
    try:
        key = (state_dir / KEY).read_bytes()
        chain = (state_dir / SVID).read_bytes()
        bundle = (state_dir / BUNDLE).read_bytes()
        leaf = x509.load_pem_x509_certificate(chain)
        spiffe_id = spiffe_id_from_der(leaf.public_bytes(Encoding.DER))
    except (OSError, ValueError, GatewayError):  # missing, not PEM, or not an SVID
        return None
    return Identity(spiffe_id, key, chain, bundle)
