"""`start()`: the control plane's two gRPC listeners over one store and one TrustService.

Why two ports: gRPC Python can require a client certificate or not ask for one,
per port, but cannot ask for an optional one. Joining callers have no
certificate yet, so the Join RPC gets its own server-TLS-only port (by default
the mTLS port + 1) on which nothing else is served; every other RPC lives on
the mTLS port, where the TLS layer refuses a caller without a certificate
signed by a federation root before any method runs. docs/controlplane.md.

The serving certificate comes from `trust.server_credentials` (an SVID of the
registry that also carries the listen host as a DNS or IP name) and is renewed
at half its lifetime; the client CA bundle is refreshed with it, so a staged
root rotation reaches the listener without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc  # type: ignore[import-untyped]
from cryptography import x509

from federation.controlplane import meshfed_pb2_grpc as pbg
from federation.controlplane.service import (
    BootstrapServicer,
    Clock,
    Context,
    ControlPlaneServicer,
    Trust,
)
from federation.controlplane.settings import (
    KEEPALIVE_TIME_MS,
    KEEPALIVE_TIMEOUT_MS,
    MAX_MESSAGE_BYTES,
    MIN_CLIENT_PING_INTERVAL_MS,
    SERVER_CERT_RENEW_FRACTION,
    Settings,
)
from federation.errors import ListenFailed
from federation.store import Store

log = logging.getLogger("meshfed.controlplane")

DEFAULT_LISTEN = "127.0.0.1:9471"  # issue 4: `meshfed serve --grpc 127.0.0.1:9471`
SERVER_NAME = "meshfed-registry"
# After a failed renewal of the serving certificate, try again this soon.
RENEW_RETRY_SECONDS = 60.0

OPTIONS = (
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # One registry process per port: never share it with a stale process (SO_REUSEPORT).
    ("grpc.so_reuseport", 0),
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def split_host_port(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address {listen!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def join_address(listen: str, settings: Settings) -> str:
    if settings.join_listen is not None:
        return settings.join_listen
    host, port = split_host_port(listen)
    return f"{_bracket(host)}:{port + 1 if port else 0}"


def certificate_names(host: str, extra: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) for the serving certificate; wildcard hosts add nothing.

    `extra` may mix both (`--server-name`): an IP written as a DNS SAN would never
    match, because TLS clients compare IPs only against IP SANs (RFC 6125 section 3.1.3.2).
    """
    dns: list[str] = []
    ips: list[str] = []
    for name in (*extra, host):
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            if name and name not in dns:
                dns.append(name)
        else:
            if not ip.is_unspecified and str(ip) not in ips:
                ips.append(str(ip))
    return dns, ips


@dataclass(eq=False)
class _Certificates:
    """The current serving credentials; grpc asks for them on each new handshake."""

    chain: bytes
    key: bytes
    bundle: bytes
    changed: bool = False

    def config(self) -> object:
        return grpc.ssl_server_certificate_configuration([(self.key, self.chain)], self.bundle)

    def fetch(self) -> object | None:
        """gRPC's certificate fetcher: a new configuration once after each renewal."""
        if not self.changed:
            return None
        self.changed = False
        return self.config()

    @property
    def not_after(self) -> datetime:
        return x509.load_pem_x509_certificate(self.chain).not_valid_after_utc

    @property
    def not_before(self) -> datetime:
        return x509.load_pem_x509_certificate(self.chain).not_valid_before_utc


@dataclass(eq=False)
class ControlPlane:
    """A running control plane: `address` (mTLS) and `join_address` (Join only)."""

    address: str
    join_address: str
    _servers: tuple[object, ...]
    _renewer: asyncio.Task[None] | None = field(default=None)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting calls; in-flight calls and streams get `grace` seconds."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        await asyncio.gather(*(s.stop(grace) for s in self._servers))  # type: ignore[attr-defined]


async def _issue(trust: Trust, host: str, settings: Settings, now: Clock) -> _Certificates:
    dns, ips = certificate_names(host, settings.server_names)
    chain, key, bundle = await trust.server_credentials(SERVER_NAME, dns, ips, now())
    return _Certificates(chain, key, bundle)


async def _trust_moved(certs: _Certificates, trust: Trust) -> bool:
    """Did a root rotation change what the server must trust or be issued by?"""
    bundle = await trust.bundle_pem()
    issuer = await trust.server_issuer_pem()
    return bundle != certs.bundle or issuer.strip() not in certs.chain


async def _renew(
    certs: _Certificates, trust: Trust, host: str, settings: Settings, now: Clock
) -> None:
    """Re-issue at half lifetime, and within `settings.trust_check` of a root rotation step
    (a new root in the bundle: accept clients renewed under it; a re-issued registry CA:
    present a certificate that clients holding only the new root can verify)."""
    while True:
        lifetime = certs.not_after - certs.not_before
        due = certs.not_before + lifetime * SERVER_CERT_RENEW_FRACTION
        wait = min(settings.trust_check, max(0.05, (due - now()).total_seconds()))
        await asyncio.sleep(wait)
        try:
            if now() < due and not await _trust_moved(certs, trust):
                continue
        except Exception as exc:  # the store is briefly away: check again next time
            log.warning("checking the federation trust failed: %s", exc)
            continue
        try:
            fresh = await _issue(trust, host, settings, now)
        except Exception as exc:  # keep serving the old certificate; try again soon
            log.warning("renewing the control plane's certificate failed: %s", exc)
            await asyncio.sleep(RENEW_RETRY_SECONDS)
            continue
        certs.chain, certs.key, certs.bundle = fresh.chain, fresh.key, fresh.bundle
        certs.changed = True
        log.info("control plane certificate renewed, valid until %s", certs.not_after)


def _bind(server: Any, address: str, credentials: Any, what: str) -> int:
    """add_secure_port, with gRPC's RuntimeError turned into a message naming the address."""
    try:
        port: int = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise ListenFailed(
            f"the {what} cannot listen on {address}: address in use or not local ({exc})"
        ) from None
    return port


async def start(
    store: Store,
    trust: Trust,
    listen: str = DEFAULT_LISTEN,
    now: Clock = utc_now,
    settings: Settings | None = None,
) -> ControlPlane:
    """Serve the control plane on `listen` (mTLS) and the join port; returns when listening."""
    settings = settings or Settings()
    host, _ = split_host_port(listen)
    certs = await _issue(trust, host, settings, now)
    ctx = Context(store, trust, settings, now)

    main = grpc.aio.server(options=OPTIONS)
    pbg.add_ControlPlaneServicer_to_server(ControlPlaneServicer(ctx), main)
    mtls = grpc.dynamic_ssl_server_credentials(certs.config(), certs.fetch, True)
    port = _bind(main, listen, mtls, "control plane")

    join = grpc.aio.server(options=OPTIONS)
    pbg.add_BootstrapServicer_to_server(BootstrapServicer(ctx), join)
    server_tls = grpc.dynamic_ssl_server_credentials(certs.config(), certs.fetch, False)
    join_listen = join_address(listen, settings)
    join_port = _bind(join, join_listen, server_tls, "join service")

    await main.start()
    await join.start()
    join_host, _ = split_host_port(join_listen)
    plane = ControlPlane(
        address=f"{_bracket(host)}:{port}",
        join_address=f"{_bracket(join_host)}:{join_port}",
        _servers=(main, join),
    )
    plane._renewer = asyncio.create_task(
        _renew(certs, trust, host, settings, now), name="controlplane-cert-renewal"
    )
    log.info("control plane on %s (mTLS), join on %s", plane.address, plane.join_address)
    return plane
