"""/api/v1/trust: SPIFFE bundles (public) and the staged root rotation (viewer / admin).

Why the bundles are unauthenticated: a bundle holds only public root
certificates, and a peer must be able to fetch it before it has any credential
(SPIFFE Trust Domain and Bundle spec, section 5 "bundle endpoint"). The rotation
drives `TrustService.rotation_*` (docs/trust.md, runbook); a refused step is a
409 problem whose `detail` is the state machine's reason.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from federation.api.auth import Admin, Reader, Reg
from federation.api.common import now
from federation.api.errors import problem
from federation.api.schemas import RotationActionOut, RotationIn, RotationOut
from federation.errors import NotFound, ValidationError
from federation.model import validation as v
from federation.registry.rotation_view import RotationBlocked

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


@router.get("/rotation", response_model=RotationOut)
async def rotation_status(request: Request, registry: Reg, _: Reader) -> dict[str, Any]:
    """Where the root rotation stands: stage, roots, bundles, intermediates, checks."""
    return (await registry.trust.rotation_status(now(request))).as_dict()


@router.post(
    "/rotation",
    response_model=RotationActionOut,
    responses={409: {"description": "the step was refused; `detail` says why"}},
)
async def rotation_step(
    body: RotationIn, request: Request, registry: Reg, who: Admin
) -> dict[str, Any] | JSONResponse:
    """Run one rotation step: prepare, activate, retire or abort (audited)."""
    try:
        result = await registry.trust.rotation_step(
            body.action, now(request), force=body.force, actor=who.name
        )
    except RotationBlocked as exc:
        return problem(409, "Rotation step refused", str(exc), "RotationRefused", request)
    return {"action": result.action, "message": result.message, "rotation": result.status.as_dict()}
