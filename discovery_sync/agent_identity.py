"""The agent's identity: join once with the token, then keep the SVID renewed.

Why this module exists: the agent's SVID is its own small lifecycle -- spend the
join token (retrying while the registry is unreachable, not when the token is
refused), then renew at (jittered) half its lifetime, or at once when the Watch
shows that the registry signs under another root. It is a mixin of
:class:`discovery_sync.agent.Agent` (like the gateway's ``GatewayIdentity`` and the
registry's ``RotationSteps``) so agent.py stays about exports, imports and
leadership; the attributes it uses are declared below and set by ``Agent.__init__``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from discovery_sync.agent_config import default_join_address
from discovery_sync.backoff import Backoff
from federation.client import (
    ControlPlaneClient,
    Identity,
    RegistryError,
    WatchView,
    join,
)
from federation.client.rotation import rotation_renewal
from federation.errors import FederationError, InvalidToken, PermissionDenied
from trust_bundle.renewal import jitter_from_seed, renewal_time

if TYPE_CHECKING:
    from discovery_sync.agent_config import AgentConfig

log = logging.getLogger("meshfed.agent")


class AgentIdentity:
    """SVID methods of `Agent`; it sets the attributes declared here."""

    config: AgentConfig
    watch_view: WatchView
    renewals: int  # SVID renewals (half lifetime or root rotation)
    _renew_wake: asyncio.Event  # set when a root rotation asks for a renewal

    async def _join(self) -> Identity:
        cfg = self.config
        backoff = Backoff(initial=1.0, maximum=30.0)
        while True:
            try:
                identity = await join(
                    cfg.join_address or default_join_address(cfg.registry),
                    cfg.join_token,
                    cluster=cfg.cluster,
                    component="agent",
                    trust_domain=cfg.trust_domain,
                    ca_pem=cfg.registry_ca,
                )
                log.info("joined as %s", identity.spiffe_id)
                return identity
            except (InvalidToken, PermissionDenied):
                raise  # retrying cannot help: the operator needs a new token
            except FederationError as err:
                delay = backoff.next()
                log.warning("join failed (%s); retrying in %.1fs", err, delay)
                await asyncio.sleep(delay)

    async def _renew(self, registry: ControlPlaneClient) -> None:
        """Renew at (jittered) half lifetime, or at once when the Watch shows that the
        registry signs under another root now (federation.client.rotation)."""
        backoff = Backoff(initial=1.0, maximum=60.0)
        while True:
            identity = registry.identity
            reason = rotation_renewal(identity, self.watch_view.items.bundles)
            if reason is None:
                due = renewal_time(
                    identity.not_before, identity.not_after, jitter_from_seed(identity.spiffe_id)
                )
                wait = (due - datetime.now(UTC)).total_seconds()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._renew_wake.wait(), wait)
                    self._renew_wake.clear()
                    continue  # woken by a rotation, or due now: decide again
                reason = "half lifetime"
            try:
                renewed = await registry.renew()
            except (RegistryError, FederationError) as err:
                delay = backoff.next()
                log.warning("SVID renewal failed (%s); retrying in %.1fs", err, delay)
                await asyncio.sleep(delay)
                continue
            self.renewals += 1
            log.info("SVID renewed (%s), valid until %s", reason, renewed.not_after)
            if rotation_renewal(renewed, self.watch_view.items.bundles) is None:
                backoff.reset()
            else:  # signed before the registry re-issued our intermediate: back off, retry
                await asyncio.sleep(backoff.next())
