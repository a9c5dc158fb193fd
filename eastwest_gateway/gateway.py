"""One gateway process: ingress, egress and admin wired to one route file.

Why it exists: the pieces need a common owner for what spans them -- loading and
reloading the route file (SIGHUP or a changed mtime) without touching live
connections, building TLS contexts from the files it names, readiness, and the
SIGTERM drain (stop accepting, wait up to the deadline, abort the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from dataclasses import asdict, replace
from pathlib import Path

from eastwest_gateway.admin import AdminServer
from eastwest_gateway.egress import Egress
from eastwest_gateway.errors import ConfigError
from eastwest_gateway.ingress import Ingress, IngressConfig
from eastwest_gateway.metrics import GatewayMetrics
from eastwest_gateway.net import close_quietly, open_listener
from eastwest_gateway.routefile import (
    EgressRoute,
    HostPort,
    RouteFile,
    TlsFiles,
    load_route_file,
)
from eastwest_gateway.routing import RouteTable
from eastwest_gateway.settings import GatewaySettings

log = logging.getLogger("meshfed.gateway")


def server_context(tls: TlsFiles) -> ssl.SSLContext:
    """Terminate mode: the gateway's certificate; client certificates required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8996 retires TLS 1.0/1.1
    _load(ctx, tls)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(tls: TlsFiles) -> ssl.SSLContext:
    """Egress origination and probes: present our certificate, verify the peer's chain.

    Hostname checks are off: SVIDs carry SPIFFE URI SANs, not DNS names.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    _load(ctx, tls)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _load(ctx: ssl.SSLContext, tls: TlsFiles) -> None:
    try:
        ctx.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls.cert/tls.key: cannot load {tls.cert}, {tls.key}: {exc}") from exc
    try:
        ctx.load_verify_locations(cafile=tls.ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls.ca: cannot load {tls.ca}: {exc}") from exc


def describe(rf: RouteFile) -> dict[str, object]:
    """The /config document: the route file as loaded, JSON-ready."""
    return {
        "routes": [
            {
                "sni": r.sni,
                "backend": str(r.backend),
                **({"more_backends": [str(b) for b in r.more_backends]} if r.more_backends else {}),
                "mode": r.mode.value,
                "allow": list(r.allow),
                "service": r.service,
            }
            for r in rf.routes
        ],
        "egress": [
            {
                "listen": str(e.listen),
                "sni": e.sni,
                "mode": e.mode.value,
                "clusters": [
                    {**asdict(c), "gateways": [str(g) for g in c.gateways]} for c in e.clusters
                ],
            }
            for e in rf.egress
        ],
        "locality": None if rf.locality is None else asdict(rf.locality),
    }


class Gateway:
    def __init__(
        self,
        cluster: str,
        routes_path: Path | None,
        settings: GatewaySettings | None = None,
        *,
        route_file: RouteFile | None = None,
    ) -> None:
        """From a route file (``routes_path``), or -- registry mode -- from a
        ``route_file`` built in memory (``routes_path`` None: no file to poll)."""
        self.cluster = cluster
        self.routes_path = routes_path
        self.settings = settings or GatewaySettings()
        self.metrics = GatewayMetrics()
        if route_file is None:
            if routes_path is None:
                raise ConfigError("routes: a route file or a route configuration is needed")
            route_file = load_route_file(routes_path)
        self.route_file = route_file
        self._mtime = self._stat()
        self.ingress = Ingress(self._ingress_config(self.route_file), self.settings, self.metrics)
        self.egress = Egress(
            self.route_file, self._client_context(self.route_file), self.settings, self.metrics
        )
        self.admin = AdminServer(
            self.metrics.render, self.is_ready, lambda: describe(self.route_file)
        )
        self._draining = False
        self._stopped = asyncio.Event()
        self._poll_task: asyncio.Task[None] | None = None
        self.metrics.routes.set(len(self.route_file.routes))

    def _ingress_config(self, rf: RouteFile) -> IngressConfig:
        table = RouteTable.build(rf.routes)
        ctx = server_context(rf.tls) if rf.tls is not None else None
        return IngressConfig(table=table, server_context=ctx)

    def _client_context(self, rf: RouteFile) -> ssl.SSLContext | None:
        return client_context(rf.tls) if rf.tls is not None else None

    def _stat(self) -> float:
        if self.routes_path is None:
            return 0.0
        try:
            return self.routes_path.stat().st_mtime
        except OSError:
            return 0.0

    def is_ready(self) -> bool:
        return not self._draining

    async def start(self, listen: HostPort, admin: HostPort | None) -> None:
        self.ingress.start(listen)
        await self.egress.start()
        if admin is not None:
            await self.admin.start(admin)
        if self.routes_path is not None:
            self._poll_task = asyncio.create_task(self._poll_mtime())
        log.info("gateway %s listening on %s", self.cluster, self.ingress.address)

    def reload(self) -> bool:
        """Re-read the route file (or, without one, re-read the TLS files of the
        current configuration); on any error keep serving the old one."""
        self._mtime = self._stat()
        if self.routes_path is None:
            return self.apply(self.route_file)
        try:
            rf = load_route_file(self.routes_path)
        except ConfigError as exc:
            self.metrics.reloads.labels("error").inc()
            log.error("route reload failed, keeping the previous routes: %s", exc)
            return False
        return self.apply(rf)

    def apply(self, rf: RouteFile) -> bool:
        """Switch to ``rf``: new connections use it, live ones keep what they began
        with. TLS contexts are rebuilt from the files ``rf.tls`` names. On a bad
        configuration the previous one stays; a listener that cannot be opened is
        logged and retried by the next apply."""
        try:
            config = self._ingress_config(rf)
            client_ctx = self._client_context(rf)
        except ConfigError as exc:
            self.metrics.reloads.labels("error").inc()
            log.error("route reload failed, keeping the previous routes: %s", exc)
            return False
        rf = self._bindable(rf)
        self.route_file = rf
        self.ingress.config = config  # new connections only; live ones keep theirs
        try:
            self.egress.update(rf, client_ctx)
        except OSError as exc:
            self.metrics.reloads.labels("error").inc()
            log.error("egress listener failed: %s", exc)
            return False
        self.metrics.reloads.labels("ok").inc()
        self.metrics.routes.set(len(rf.routes))
        log.info("routes applied: %d ingress, %d egress", len(rf.routes), len(rf.egress))
        return True

    def _bindable(self, rf: RouteFile) -> RouteFile:
        """``rf`` without the new egress listeners whose address cannot be bound
        (e.g. in use by another process): one bad port must not keep the others
        from opening. They are tried again on the next apply."""
        keep: list[EgressRoute] = []
        for route in rf.egress:
            try:
                self.egress.address(route.listen)  # already ours
            except KeyError:
                try:
                    close_quietly(open_listener(route.listen))
                except OSError as exc:
                    self.metrics.reloads.labels("error").inc()
                    log.error(
                        "egress listener %s (%s) not opened: %s", route.listen, route.sni, exc
                    )
                    continue
            keep.append(route)
        return rf if len(keep) == len(rf.egress) else replace(rf, egress=tuple(keep))

    async def _poll_mtime(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_poll_interval)
            if self._stat() != self._mtime:
                self.reload()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)

    def request_stop(self) -> None:
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def shutdown(self) -> int:
        """Stop accepting, drain up to the deadline; returns connections aborted."""
        self._draining = True
        if self._poll_task is not None:
            self._poll_task.cancel()
        self.ingress.stop_accepting()
        self.egress.stop_accepting()
        aborted = sum(
            await asyncio.gather(
                self.ingress.drain(self.settings.drain_deadline),
                self.egress.drain(self.settings.drain_deadline),
            )
        )
        self.egress.close()
        self.admin.close()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)
        log.info(
            "gateway %s stopped (%d connections aborted at the deadline)", self.cluster, aborted
        )
        return aborted
