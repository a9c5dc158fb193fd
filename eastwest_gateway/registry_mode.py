"""Registry mode (``meshfed gateway --registry``): the asyncio shell around :mod:`desired`.

Why it exists: a gateway in a real federation is configured by the registry,
not by a file. This module does the I/O around the pure pieces:

* identity -- spend the join token once for an SVID (``federation.client.join``),
  keep it in ``--state-dir`` so restarts need no new token, and renew it at
  (jittered) half lifetime (``trust_bundle.renewal``); after a renewal the
  gateway's TLS contexts are rebuilt for new connections;
* configuration -- follow the cluster's Watch (``ControlPlaneClient.follow``:
  reconnects with backoff, resumes from the last revision), turn every view into
  a configuration with :func:`eastwest_gateway.desired.desired_config` and apply
  it with :meth:`Gateway.apply` (live connections keep what they began with);
* survival -- save every view; on start, serve the saved one at once, so a
  registry that is down does not keep the gateway from serving, and resume the
  Watch from its revision when the registry is back;
* health -- report the egress probes' UP/DOWN state of each peer gateway with
  ``ReportHealth`` when it changes (and every ``report_refresh`` seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import socket
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import yaml

from eastwest_gateway.desired import Desired, LocalConfig, desired_config, parse_local_document
from eastwest_gateway.errors import ConfigError
from eastwest_gateway.gateway import Gateway
from eastwest_gateway.ranking import Health
from eastwest_gateway.routefile import HostPort, Locality, Route
from eastwest_gateway.settings import GatewaySettings
from eastwest_gateway.snapshot import (
    CA,
    load_identity,
    load_view,
    save_identity,
    save_view,
    tls_files,
    trust_pem,
    write_atomic,
)
from federation.client import (
    ControlPlaneClient,
    Identity,
    PeerProbe,
    RegistryUnavailable,
    WatchView,
    join,
)
from federation.client.rotation import fingerprints, issuing_root, rotation_renewal
from federation.errors import FederationError, InvalidToken
from trust_bundle import gateway_id
from trust_bundle.renewal import jitter_from_seed, renewal_decision

log = logging.getLogger("meshfed.gateway.registry")

# Join retries while the registry is unreachable: gRPC's connection backoff
# (1 s initial, x1.6) capped at 30 s, as federation.client.follow does.
JOIN_BACKOFF_INITIAL: Final = 1.0
JOIN_BACKOFF_MAX: Final = 30.0
RENEW_RETRY: Final = 5.0  # a failed renewal is retried this often (half the lifetime is left)
RENEW_RECHECK_MAX: Final = 300.0  # re-evaluate the renewal decision at least this often
REPORT_REFRESH: Final = 30.0  # re-send unchanged probe results (a restarted registry learns them)


class JoinRefused(ConfigError):
    """The registry refused the join token: the operator must supply a new one."""


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """Everything ``--registry`` mode needs, already validated by ``main``."""

    cluster: str
    registry: str  # host:port of the control plane (mTLS)
    join_token: str
    trust_domain: str
    registry_ca: bytes  # federation roots that verify the registry before the token is sent
    join_address: str = ""  # default: the control plane port + 1 (docs/controlplane.md)
    state_dir: Path | None = None  # None: a temporary directory, removed at exit
    local_routes: Path | None = None
    locality: Locality | None = None  # overrides the local file's
    egress_host: str = "127.0.0.1"
    egress_port_offset: int = 0
    settings: GatewaySettings = field(default_factory=GatewaySettings)
    report_interval: float = 2.0  # how often probe states are compared with the last report
    report_refresh: float = REPORT_REFRESH

    @property
    def resolved_join_address(self) -> str:
        if self.join_address:
            return self.join_address
        host, _, port = self.registry.rpartition(":")
        return f"{host}:{int(port) + 1}"


def instance_name(hostname: str) -> str:
    """This replica's name in health reports: the host (pod) name as a lowercase DNS
    name, or "" when it is not one (the registry then counts one unnamed replica)."""
    name = hostname.lower().rstrip(".")
    label = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"  # RFC 1123
    return name if len(name) <= 253 and re.fullmatch(rf"{label}(\.{label})*", name) else ""


def load_local(options: RegistryOptions, state_dir: Path) -> LocalConfig:
    """The local ingress routes and locality (ConfigError naming the field)."""
    tls = tls_files(state_dir)
    routes: tuple[Route, ...] = ()
    locality = None
    if options.local_routes is not None:
        path = options.local_routes
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        try:
            routes, locality = parse_local_document(doc, path.parent, tls)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    locality = options.locality or locality or Locality("", "")
    return LocalConfig(
        cluster=options.cluster,
        locality=locality,
        tls=tls,
        ingress=routes,
        egress_host=options.egress_host,
        egress_port_offset=options.egress_port_offset,
    )


class RegistryGateway:
    """One gateway process in registry mode (tests drive it in-process)."""

    def __init__(
        self, options: RegistryOptions, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.options = options
        self.clock = clock or (lambda: datetime.now(UTC))  # tests move it to renewal time
        self._tmp: Path | None = None
        if options.state_dir is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="meshfed-gateway-"))
        self.state_dir = options.state_dir or self._tmp or Path(".")
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.local = load_local(options, self.state_dir)
        self.expected_id = str(gateway_id(options.trust_domain, options.cluster))
        self.view = WatchView()
        self.desired: Desired | None = None
        self.identity: Identity | None = None
        self.gateway: Gateway | None = None
        self.client: ControlPlaneClient | None = None
        self.views_applied = 0
        self.renewals = 0
        self._renew_wake = asyncio.Event()
        self.reported: dict[str, bool] = {}
        self.reported_roots: tuple[str, ...] = ()
        self.instance = instance_name(socket.gethostname())  # the pod name in Kubernetes
        self.unknown_peers: tuple[str, ...] = ()
        self._tasks: list[asyncio.Task[None]] = []
        self._failed: BaseException | None = None

    # --- start / stop ----------------------------------------------------------------

    async def start(self, listen: HostPort, admin: HostPort | None) -> None:
        """Identity (saved or joined), the saved view, listeners, then the loops."""
        identity = load_identity(self.state_dir)
        if identity is not None and not self._usable(identity):
            log.warning("saved SVID %s is expired or not ours; joining again", identity.spiffe_id)
            identity = None
        if identity is None:
            identity = await self._join()
            save_identity(self.state_dir, identity)
        self.identity = identity
        try:
            saved = load_view(self.state_dir)
        except ConfigError as exc:
            log.warning("ignoring the saved view: %s", exc)
            saved = None
        if saved is not None:
            self.view = saved
            log.info(
                "serving the saved view (revision %d) until the registry answers", saved.revision
            )
        self._write_trust()
        self.desired = desired_config(self.view.items, self.local)
        self.gateway = Gateway(
            self.options.cluster, None, self.options.settings, route_file=self.desired.route_file
        )
        await self.gateway.start(listen, admin)
        self._publish_identity()
        self.client = ControlPlaneClient(self.options.registry, identity)
        self._spawn(self._follow_loop)
        self._spawn(self._renew_loop)
        self._spawn(self._report_loop)

    def _spawn(self, loop: Callable[[], Awaitable[None]]) -> None:
        async def guarded() -> None:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # a loop that dies must stop the process, loudly
                log.exception("registry mode: %s failed", getattr(loop, "__name__", loop))
                self._failed = exc
                if self.gateway is not None:
                    self.gateway.request_stop()

        self._tasks.append(asyncio.create_task(guarded()))

    async def stop(self) -> int:
        """Stop the loops, drain the gateway; returns connections aborted at the deadline."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        aborted = 0
        if self.gateway is not None:
            aborted = await self.gateway.shutdown()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        return aborted

    async def serve_forever(self) -> int:
        """Until SIGTERM/SIGINT (SIGHUP re-reads the TLS files); 1 if a loop died."""
        assert self.gateway is not None
        self.gateway.install_signal_handlers()
        await self.gateway.wait_stopped()
        await self.stop()
        return 1 if self._failed is not None else 0

    # --- identity --------------------------------------------------------------------

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

    # --- configuration ---------------------------------------------------------------

    def _write_trust(self) -> None:
        """Write the roots to verify peers with (when they changed)."""
        assert self.identity is not None
        pem = trust_pem(self.identity.bundle_pem, self.view.items)
        path = self.state_dir / CA
        try:
            if path.read_bytes() == pem:
                return
        except OSError:
            pass
        write_atomic(path, pem)

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

    async def _follow_loop(self) -> None:
        assert self.client is not None
        async for view in self.client.follow(self.options.cluster, self.view):
            self.apply_view(view)

    def apply_view(self, view: WatchView) -> None:
        """A new view: save it, derive the configuration, apply what changed."""
        assert self.gateway is not None
        self.view = view
        save_view(self.state_dir, view)
        self._follow_bundles(view)
        self._write_trust()  # apply() below rebuilds the TLS contexts from it
        desired = desired_config(view.items, self.local)
        previous = self.desired
        self.desired = desired
        if previous is None or desired.notes != previous.notes:
            for note in desired.notes:
                log.warning("registry view (revision %d): %s", view.revision, note)
        self.gateway.apply(desired.route_file)
        self.views_applied += 1
        log.info(
            "registry view revision %d: %d egress listeners, %d imports",
            view.revision,
            len(desired.route_file.egress),
            len(view.items.imports),
        )

    # --- health reports --------------------------------------------------------------

    def probe_results(self) -> dict[str, bool]:
        """peer cluster -> up, for every peer whose probes reached a verdict."""
        assert self.gateway is not None
        return {
            name: state.health is Health.UP
            for name, state in sorted(self.gateway.egress.probes.items())
            if state.health is not Health.UNKNOWN
        }

    def trusted_roots(self) -> tuple[str, ...]:
        """Fingerprints of the roots this gateway verifies peers with (its CA file)."""
        try:
            return fingerprints((self.state_dir / CA).read_bytes())
        except (OSError, ValueError):
            return ()

    async def _report_loop(self) -> None:
        assert self.client is not None
        loop = asyncio.get_running_loop()
        last_sent = -float("inf")
        while True:
            await asyncio.sleep(self.options.report_interval)
            results = self.probe_results()
            roots = self.trusted_roots()
            stale = loop.time() - last_sent >= self.options.report_refresh
            news = results != self.reported or roots != self.reported_roots
            if not (results or roots) or not (news or stale):
                continue
            probes = [
                PeerProbe(
                    peer,
                    up,
                    reason="ProbeSucceeded" if up else "ProbeFailed",
                    message=f"TLS probe of the {peer} gateway "
                    + ("succeeded" if up else "failed 3 times in a row"),
                )
                for peer, up in results.items()
            ]
            try:
                unknown = await self.client.report_health(
                    probes, trusted_roots=roots, instance=self.instance
                )
            except FederationError as exc:
                log.info("health report not delivered (%s); will retry", exc)
                continue
            self.reported = results
            self.reported_roots = roots
            last_sent = loop.time()
            if tuple(unknown) != self.unknown_peers:
                self.unknown_peers = tuple(unknown)
                if unknown:
                    log.warning("registry has no link for probed peers: %s", ", ".join(unknown))


async def serve(options: RegistryOptions, listen: HostPort, admin: HostPort | None) -> int:
    """``meshfed gateway --registry``: run until SIGTERM; the exit code."""
    gateway = RegistryGateway(options)
    try:
        await gateway.start(listen, admin)
    except BaseException:
        await gateway.stop()
        raise
    return await gateway.serve_forever()
