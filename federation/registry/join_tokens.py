"""Join tokens over the store: mint, create, redeem, list, look up, revoke.

Why this module exists: join tokens (kubeadm-style `<id>.<secret>` bootstrap tokens,
single use or reusable) are their own small protocol: the secret is kept only as its
SHA-256, redemption is a compare-and-swap race that a scaling Deployment runs from
many replicas at once, and a token outlives neither its cluster nor joins a new
cluster of the same name. It is a mixin of `TrustService` (like `RotationSteps`) so
trust.py stays about issuing, storing and serving certificates. Time is always a
parameter.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import random
import secrets
from datetime import datetime, timedelta

from federation.errors import Conflict, InvalidToken, NotFound, StoreUnavailable, ValidationError
from federation.model import JoinToken
from federation.store import Store, Versioned

# Join token shape "<id>.<secret>": an 8-byte id (16 hex chars, within the model's
# [a-z0-9]{6,32}) and a 32-byte secret, 256 bits as RFC 4086 section 8 suggests
# for keys; kubeadm's bootstrap tokens use the same "<id>.<secret>" split.
TOKEN_ID_BYTES = 8
TOKEN_SECRET_BYTES = 32
# A reusable join token counts every redemption with compare-and-swap: a gateway
# Deployment scaling up redeems it from many replicas at once, and every lost race
# is another replica counted, so retry more often than for the rare record writes,
# with a short random pause (at most REDEEM_BACKOFF x attempt seconds) in between.
REDEEM_CAS_ATTEMPTS = 32
REDEEM_BACKOFF = 0.005


def digest(secret: str) -> str:
    """SHA-256 hex of a token secret: what the store keeps instead of the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str]:
    """`<id>.<secret>` -> (id, secret); InvalidToken if malformed."""
    token_id, sep, secret = token.partition(".")
    if not sep or not token_id or not secret:
        raise InvalidToken("malformed token (expected <id>.<secret>)")
    return token_id, secret


class JoinTokens:
    """Join token methods of `TrustService`; it provides the store."""

    _store: Store

    def mint_join_token(
        self, cluster: str, ttl: timedelta, now: datetime, *, reusable: bool = False
    ) -> tuple[JoinToken, str]:
        """A new token record and its `<id>.<secret>` (not stored: the caller commits it,
        with its audit event); only sha256(secret) is in the record."""
        if ttl <= timedelta(0):
            raise ValidationError("ttl", "must be positive")
        secret = secrets.token_urlsafe(TOKEN_SECRET_BYTES)
        token_id = secrets.token_hex(TOKEN_ID_BYTES)
        record = JoinToken(
            id=token_id,
            cluster=cluster,
            secret_sha256=digest(secret),
            expires=now + ttl,
            reusable=reusable,
        )
        return record, f"{token_id}.{secret}"

    async def create_join_token(
        self, cluster: str, ttl: timedelta, now: datetime, *, reusable: bool = False
    ) -> str:
        """Store a new `<id>.<secret>` for `cluster` (single use unless `reusable`)."""
        await self._store.clusters.get(cluster)
        record, token = self.mint_join_token(cluster, ttl, now, reusable=reusable)
        await self._store.join_tokens.create(record)
        return token

    async def redeem_join_token(self, token: str, now: datetime) -> str:
        """Redeem a join token; returns its cluster. InvalidToken for any refusal.

        A single-use token is spent (the one compare-and-swap winner joins); a
        reusable one stays valid and counts the redemption in `uses`, retrying
        lost compare-and-swaps so concurrent joins are all counted.
        """
        token_id, secret = split_token(token)
        for attempt in range(REDEEM_CAS_ATTEMPTS):
            try:
                held = await self._store.join_tokens.get(token_id)
            except NotFound:
                raise InvalidToken("unknown join token") from None
            except ValidationError:
                raise InvalidToken("malformed join token") from None
            record = held.record
            if not hmac.compare_digest(record.secret_sha256, digest(secret)):
                raise InvalidToken("unknown join token")
            if record.used:
                raise InvalidToken("join token already used")
            if now >= record.expires:
                raise InvalidToken("join token expired")
            if not await self._minted_for_current(held):
                raise InvalidToken("unknown join token")
            if record.reusable:
                counted = dataclasses.replace(record, uses=record.uses + 1)
            else:
                counted = dataclasses.replace(record, used=True, uses=1)
            try:
                await self._store.join_tokens.update(counted, held.revision)
            except NotFound:  # revoked (or spent and deleted) in between
                raise InvalidToken("unknown join token") from None
            except Conflict:
                if not record.reusable:
                    raise InvalidToken("join token already used") from None
                # Another join counted first: read the new count and add ours. A
                # random pause keeps a crowd of replicas from colliding in lockstep.
                await asyncio.sleep(random.uniform(0, REDEEM_BACKOFF * (attempt + 1)))
                continue
            return record.cluster
        # Still losing races after every attempt: the store is overloaded, not the
        # token wrong. UNAVAILABLE tells the joining agent or gateway to retry.
        raise StoreUnavailable(f"jointokens/{token_id}: too many concurrent joins; retry")

    async def _minted_for_current(self, held: Versioned[JoinToken]) -> bool:
        """Whether the token's cluster exists and is the one it was minted for: a token
        outlives neither its cluster nor joins a new cluster of the same name."""
        cluster = await self._store.clusters.find(held.record.cluster)
        return cluster is not None and cluster.create_revision < held.create_revision

    async def join_token(self, cluster: str, token_id: str) -> Versioned[JoinToken]:
        """`cluster`'s token `token_id`; NotFound if unknown, malformed or another's."""
        try:
            held = await self._store.join_tokens.find(token_id)
        except ValidationError:
            held = None
        if held is None or held.record.cluster != cluster:
            raise NotFound(f"jointokens/{token_id}")
        return held

    async def list_join_tokens(self, cluster: str) -> list[JoinToken]:
        """`cluster`'s join tokens, by id; NotFound if there is no such cluster. Tokens
        of an earlier cluster of the same name (they no longer join) are left out."""
        created = (await self._store.clusters.get(cluster)).create_revision
        return [
            v.record
            for v in await self._store.join_tokens.list()
            if v.record.cluster == cluster and v.create_revision > created
        ]

    async def revoke_join_token(self, cluster: str, token_id: str) -> None:
        """Delete `cluster`'s token `token_id` (unconditional once ownership is checked;
        see Registry.revoke_join_token)."""
        await self.join_token(cluster, token_id)
        with contextlib.suppress(NotFound):
            await self._store.join_tokens.delete(token_id)
