"""Registry mode (``meshfed gateway --registry``): the asyncio shell around :mod:`desired`.

Why it exists: a gateway in a real federation is configured by the registry,
not by a file. This module does the I/O around the pure pieces:

* identity -- spend the join token once for an SVID (``federation.client.join``),
  keep it in ``--state-dir`` so restarts need no new token, and renew it at
  (jittered) half lifetime (``trust_bundle.renewal``); after a renewal the
  gateway's TLS contexts are rebuilt for new connections (the
  :class:`~eastwest_gateway.registry_identity.GatewayIdentity` mixin);
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
from eastwest_gateway.registry_identity import GatewayIdentity, instance_name
from eastwest_gateway.registry_identity import JoinRefused as JoinRefused
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
    WatchView,
)
from federation.errors import FederationError
from trust_bundle import gateway_id

log = logging.getLogger("meshfed.gateway.registry")

REPORT_REFRESH: Final = 30.0  # re-send unchanged probe results (a restarted registry learns them)


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


class RegistryGateway(GatewayIdentity):
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
