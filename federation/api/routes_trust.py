"""/api/v1/trust: SPIFFE bundles, unauthenticated like any SPIFFE bundle endpoint.

Why unauthenticated: a bundle holds only public root certificates, and a peer
must be able to fetch it before it has any credential (SPIFFE Trust Domain and
Bundle spec, section 5 "bundle endpoint").
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from federation.api.auth import Reg
from federation.errors import NotFound, ValidationError
from federation.model import validation as v

router = APIRouter(prefix="/api/v1/trust", tags=["trust"])


@router.get("/bundles")
async def list_bundles(registry: Reg) -> dict[str, Any]:
    """Every trust domain's bundle, as a SPIFFE bundle map (`spiffe://<td>` -> bundle)."""
    out: dict[str, Any] = {}
    for td in sorted(await registry.trust.trust_domains(), key=lambda t: t.name):
        out[f"spiffe://{td.name}"] = await registry.trust.spiffe_bundle(td.name)
    return out


@router.get("/bundles/{trust_domain}")
async def get_bundle(trust_domain: str, registry: Reg) -> dict[str, Any]:
    """One trust domain's SPIFFE bundle (JWKS with `spiffe_sequence`, `spiffe_refresh_hint`)."""
    try:
        name = v.trust_domain("trust_domain", trust_domain)
    except ValidationError:
        raise NotFound(f"trustdomains/{trust_domain}") from None
    return await registry.trust.spiffe_bundle(name)


@router.get("/roots.pem", response_class=Response)
async def roots_pem(registry: Reg) -> Response:
    """Every trusted root as PEM (for `curl --cacert`, `openssl verify -CAfile`)."""
    return Response(await registry.trust.bundle_pem(), media_type="application/x-pem-file")
