"""The Registry's join-token operations: create (with the TTL caps), list, revoke.

Why this module exists: join tokens are how an agent or gateway first gets an
identity, and the operator-facing rules around them (the default and maximum
lifetimes, single use against reusable, audited creation and revocation) are the
same for the REST API and the CLI. It is a mixin of `Registry` (as `JoinTokens`
and `RotationSteps` are of `TrustService`) so service.py stays about clusters,
links and services; minting and redeeming stay in join_tokens.py, under trust.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from federation.errors import ValidationError
from federation.model import JoinToken
from federation.registry import audit
from federation.registry.records import delete_op, put_op
from federation.registry.trust import TrustService
from federation.store import Store
from federation.store.backend import ABSENT

# Issue 4: join tokens live one hour unless asked otherwise.
DEFAULT_JOIN_TTL = timedelta(hours=1)
# kubeadm caps bootstrap token TTLs at nothing, but a day keeps a leaked one short-lived.
MAX_JOIN_TTL = timedelta(days=1)
# Reusable tokens: kubeadm's bootstrap tokens are reusable until their TTL runs out
# (`kubeadm token create --ttl`, default 24h, 0 = never expires:
# https://kubernetes.io/docs/reference/setup-tools/kubeadm/generated/kubeadm_token_create).
# We cap them at a year so a leaked token is not valid forever; revoke one sooner
# with DELETE /api/v1/clusters/{name}/join-tokens/{id}.
MAX_REUSABLE_JOIN_TTL = timedelta(days=365)


class RegistryJoinTokens:
    """Join token methods of `Registry`; it provides the store and the trust service."""

    store: Store
    trust: TrustService

    async def create_join_token(
        self,
        cluster: str,
        ttl: timedelta | None,
        actor: str,
        now: datetime,
        *,
        reusable: bool = False,
    ) -> tuple[str, datetime]:
        """A bootstrap token for `cluster`'s agent and gateway, and its expiry: single
        use, or `reusable` until it expires (every replica and restart joins with it)."""
        ttl = DEFAULT_JOIN_TTL if ttl is None else ttl
        cap = MAX_REUSABLE_JOIN_TTL if reusable else MAX_JOIN_TTL
        if not timedelta(0) < ttl <= cap:
            kind = "a reusable" if reusable else "a single-use"
            hint = "" if reusable or ttl <= timedelta(0) else " (ask for a reusable token)"
            raise ValidationError(
                "ttl_seconds",
                f"{int(ttl.total_seconds())} is out of range for {kind} token: "
                f"1 to {int(cap.total_seconds())} seconds{hint}",
            )
        await self.store.clusters.get(cluster)
        record, token = self.trust.mint_join_token(cluster, ttl, now, reusable=reusable)
        detail = f"id={record.id} reusable={str(reusable).lower()}"
        event = audit.event(now, actor, "create", JoinToken.KIND, cluster, detail)
        await self.store.commit([put_op(record, ABSENT), audit.put(event)])
        return token, record.expires

    async def list_join_tokens(self, cluster: str) -> list[JoinToken]:
        """`cluster`'s join tokens (records hold digests only, never secrets)."""
        return await self.trust.list_join_tokens(cluster)

    async def revoke_join_token(
        self, cluster: str, token_id: str, actor: str, now: datetime
    ) -> None:
        """Delete `cluster`'s token `token_id` with its audit event; NotFound if it is
        unknown or another cluster's. Unconditional once ownership is checked: a
        reusable token redeemed all the time (a scale-up) must not make revoking it
        fail; a redemption racing the delete fails its own update (InvalidToken)."""
        await self.trust.join_token(cluster, token_id)  # NotFound: unknown or not ours
        event = audit.event(now, actor, "delete", JoinToken.KIND, cluster, f"id={token_id}")
        gone = replace(delete_op(JoinToken.KIND, token_id), must_exist=False)
        await self.store.commit([gone, audit.put(event)])
