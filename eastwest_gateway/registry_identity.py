"""Registry mode's identity side: join once, renew the SVID, follow root rotations.

Why it exists: a registry-mode gateway's SVID is its own small lifecycle -- spend
the join token once (retrying while the registry is unreachable), renew at
(jittered) half lifetime or at once when the registry signs under a new root,
rebuild the TLS contexts after a renewal and publish which root issued it. It is a
mixin of :class:`eastwest_gateway.registry_mode.RegistryGateway` (like the
registry's ``RotationSteps`` of ``TrustService``) so registry_mode.py stays about
start/stop, the Watch and health reports; the attributes it uses are declared
below and set by ``RegistryGateway.__init__``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from eastwest_gateway.errors import ConfigError
from eastwest_gateway.gateway import Gateway
from eastwest_gateway.snapshot import CA, save_identity
from federation.client import (
    ControlPlaneClient,
    Identity,
    RegistryUnavailable,
    WatchView,
    join,
)
from federation.client.rotation import fingerprints, issuing_root, rotation_renewal
from federation.errors import FederationError, InvalidToken
from trust_bundle.renewal import jitter_from_seed, renewal_decision

if TYPE_CHECKING:
    from eastwest_gateway.registry_mode import RegistryOptions

log = logging.getLogger("meshfed.gateway.registry")

# Join retries while the registry is unreachable: gRPC's connection backoff
# (1 s initial, x1.6) capped at 30 s, as federation.client.follow does.
JOIN_BACKOFF_INITIAL: Final = 1.0
JOIN_BACKOFF_MAX: Final = 30.0
RENEW_RETRY: Final = 5.0  # a failed renewal is retried this often (half the lifetime is left)
RENEW_RECHECK_MAX: Final = 300.0  # re-evaluate the renewal decision at least this often


class JoinRefused(ConfigError):
    """The registry refused the join token: the operator must supply a new one."""


def instance_name(hostname: str) -> str:
    """This replica's name in health reports: the host (pod) name as a lowercase DNS
    name, or "" when it is not one (the registry then counts one unnamed replica)."""
    name = hostname.lower().rstrip(".")
    label = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"  # RFC 1123
    return name if len(name) <= 253 and re.fullmatch(rf"{label}(\.{label})*", name) else ""


class GatewayIdentity:
    """SVID methods of `RegistryGateway`; it sets the attributes declared here."""

    options: RegistryOptions
    clock: Callable[[], datetime]
    state_dir: Path
    expected_id: str
    view: WatchView
    identity: Identity | None
    gateway: Gateway | None
    client: ControlPlaneClient | None
    renewals: int
    _renew_wake: asyncio.Event

    if TYPE_CHECKING:

        def _write_trust(self) -> None: ...

    def _usable(self, identity: Identity) -> bool:
        return identity.spiffe_id == self.expected_id and identity.not_after > self.clock()

    async def _join(self) -> Identity:
        o = self.options
        backoff = JOIN_BACKOFF_INITIAL
        while True:
            try:
                identity = await join(
                    o.resolved_join_address,
                    o.join_token,
                    cluster=o.cluster,
                    component="gateway",
                    trust_domain=o.trust_domain,
                    ca_pem=o.registry_ca,
                )
                log.info("joined as %s", identity.spiffe_id)
                return identity
            except InvalidToken as exc:
                raise JoinRefused(f"--join-token: the registry refused it ({exc})") from exc
            except RegistryUnavailable as exc:
                log.warning("join: registry unavailable (%s); retrying in %.1fs", exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 1.6, JOIN_BACKOFF_MAX)

    def recheck_renewal(self) -> None:
        """Re-evaluate the renewal decision now (e.g. after the clock jumped)."""
        self._renew_wake.set()

    async def _renew_loop(self) -> None:
        assert self.client is not None
        stuck = RENEW_RETRY  # delay after a renewal that is still under the old root
        while True:
            identity = self.client.identity
            cert = identity.certificate
            jitter = jitter_from_seed(f"{identity.spiffe_id}/{cert.serial_number}")
            now = self.clock()
            rotated = rotation_renewal(identity, self.view.items.bundles)
            decision = renewal_decision(
                identity.not_before,
                identity.not_after,
                now,
                jitter,
                issued_by_signing_root=rotated is None,
            )
            if not decision.renew:
                wait = (decision.at - now).total_seconds()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._renew_wake.wait(), min(max(wait, 0.0), RENEW_RECHECK_MAX)
                    )
                self._renew_wake.clear()
                continue
            try:
                renewed = await self.client.renew()
            except FederationError as exc:
                log.warning("SVID renewal failed (%s); retrying in %.0fs", exc, RENEW_RETRY)
                await asyncio.sleep(RENEW_RETRY)
                continue
            save_identity(self.state_dir, renewed)
            self.identity = renewed
            self.renewals += 1
            self._write_trust()
            assert self.gateway is not None
            self.gateway.reload()  # new TLS contexts for new connections
            self.gateway.metrics.svid_renewals.labels(
                "half_lifetime" if rotated is None else "root_rotation"
            ).inc()
            self._publish_identity()
            log.info(
                "SVID renewed (%s), valid until %s", rotated or decision.reason, renewed.not_after
            )
            if rotated is not None and rotation_renewal(renewed, self.view.items.bundles):
                # signed before the registry re-issued our intermediate: try again soon
                log.warning("renewed SVID still under the old root; again in %.0fs", stuck)
                await asyncio.sleep(stuck)
                stuck = min(2 * stuck, RENEW_RECHECK_MAX)
            else:
                stuck = RENEW_RETRY

    def _publish_identity(self) -> None:
        assert self.gateway is not None and self.identity is not None
        self.gateway.metrics.svid_info.clear()
        self.gateway.metrics.svid_info.labels(issuing_root(self.identity) or "").set(1)

    def _follow_bundles(self, view: WatchView) -> None:
        """A rotation step seen in the Watch: verify the registry with the new roots,
        and renew at once when the registry signs under another root now."""
        if self.client is None:
            return
        rotated = self.client.adopt_bundles(view.items.bundles)
        if self.client.identity != self.identity:
            self.identity = self.client.identity
            save_identity(self.state_dir, self.identity)
            self._publish_identity()
        if rotated is not None:
            self._renew_wake.set()

    def trusted_roots(self) -> tuple[str, ...]:
        """Fingerprints of the roots this gateway verifies peers with (its CA file)."""
        try:
            return fingerprints((self.state_dir / CA).read_bytes())
        except (OSError, ValueError):
            return ()
