"""The control plane follows a root rotation by itself: no restart of `meshfed serve`.

After prepare it must accept clients renewed under the new root (it re-issues its
credentials with the new client bundle); after activate it must present a
certificate that a client holding ONLY the new root can verify (its issuing CA was
re-issued under the new root). Both within `Settings.trust_check`.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from cryptography import x509

from federation.client import ControlPlaneClient, WatchView, join
from federation.client.rotation import fingerprints, rotation_renewal
from federation.controlplane.server import start
from federation.controlplane.settings import Settings
from federation.errors import FederationError, ValidationError
from federation.model import BundleReport
from federation.registry.rotation_view import BUNDLE_REPORT_STALE, acknowledged
from trust_bundle import create_root_ca, rotation
from trust_bundle.spiffe_bundle import certificate_fingerprint

if TYPE_CHECKING:
    from tests.controlplane.conftest import Federation


def _handshake(address: str, cadata: str | None) -> x509.Certificate:
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context(cadata=cadata) if cadata else ssl.create_default_context()
    context.check_hostname = False
    if cadata is None:
        context.verify_mode = ssl.CERT_NONE  # only reading the served leaf
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def verifies_with(address: str, root_pem: str) -> bool:
    try:
        _handshake(address, root_pem)
    except ssl.SSLCertVerificationError:
        return False
    return True


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


def pems(bundle: bytes) -> set[str]:
    marker = "-----END CERTIFICATE-----"
    return {p.strip() + "\n" + marker + "\n" for p in bundle.decode().split(marker) if p.strip()}


async def test_server_certificate_follows_prepare_and_activate(fed: Federation) -> None:
    plane = await start(fed.store, fed.trust, "127.0.0.1:0", now=fed.clock,
                        settings=Settings(trust_check=0.2))  # fmt: skip
    address = plane.join_address  # same credentials as the mTLS port, no client cert needed
    try:
        old_roots = pems(await fed.trust.bundle_pem())
        before = await asyncio.to_thread(_handshake, address, None)
        await fed.trust.rotation_prepare(fed.clock())
        (new_root,) = pems(await fed.trust.bundle_pem()) - old_roots

        async def reissued() -> bool:
            leaf = await asyncio.to_thread(_handshake, address, None)
            return leaf.serial_number != before.serial_number

        await wait_for(reissued)  # the new client bundle is in force, without a restart
        assert not await asyncio.to_thread(verifies_with, address, new_root)  # not active yet

        await fed.trust.rotation_activate(fed.clock(), force=True)

        async def under_new_root() -> bool:
            return await asyncio.to_thread(verifies_with, address, new_root)

        await wait_for(under_new_root)  # a client holding only the new root accepts it
    finally:
        await plane.stop(0)


async def _next_view(
    follow: AsyncGenerator[WatchView, None], want: Callable[[WatchView], bool]
) -> WatchView:
    async def scan() -> WatchView:
        async for view in follow:
            if want(view):
                return view
        raise AssertionError("follow ended")

    return await asyncio.wait_for(scan(), 10)


def _signing(view: WatchView, trust_domain: str) -> str:
    return view.items.bundles[trust_domain].signing_root_sha256


async def test_client_follows_every_stage_over_the_watch(fed: Federation) -> None:
    """A gateway that reports its roots lets activate run without force or waiting;
    the Watch tells it to trust the next root (prepare), to renew under it
    (activate), and to drop the old one (retire), with no restart and no rejoin."""
    plane = await start(fed.store, fed.trust, "127.0.0.1:0", now=fed.clock,
                        settings=Settings(trust_check=0.2))  # fmt: skip
    identity = await join(
        plane.join_address, await fed.token("east"), cluster="east", component="gateway",
        trust_domain="east.meshfed.test", ca_pem=await fed.bundle(),
    )  # fmt: skip
    gw = ControlPlaneClient(plane.address, identity)
    follow = gw.follow()
    try:
        await _walk_the_rotation(fed, gw, follow)
    finally:
        await follow.aclose()
        await gw.close()
        await plane.stop(0)


async def _walk_the_rotation(
    fed: Federation, gw: ControlPlaneClient, follow: AsyncGenerator[WatchView, None]
) -> None:
    td = "east.meshfed.test"
    old_fp = fingerprints(gw.identity.bundle_pem)
    view = await _next_view(follow, lambda v: td in v.items.bundles)
    assert (_signing(view, td),) == old_fp  # the one root signs
    assert gw.adopt_bundles(view.items.bundles) is None  # nothing to do in a stable state

    await fed.trust.rotation_prepare(fed.clock())
    status = await fed.trust.rotation_status(fed.clock())
    assert not status.propagation.complete and "east" in status.propagation.pending
    view = await _next_view(follow, lambda v: len(v.items.bundles[td].roots_pem) == 2)
    assert gw.adopt_bundles(view.items.bundles) is None  # trust both; nobody signs with next yet
    both = fingerprints(gw.identity.bundle_pem)
    assert len(both) == 2 and set(old_fp) < set(both)
    for cluster in ("west", "north"):  # their gateways report too (they hold the bundle)
        await fed.trust.record_bundle_report(BundleReport(cluster, both, fed.clock()))
    await gw.report_health([], trusted_roots=both[:1], instance="gw-0")  # old root only
    status = await fed.trust.rotation_status(fed.clock())
    assert status.propagation.pending == ("east",)
    await gw.report_health([], trusted_roots=both, instance="gw-1")  # a second replica
    status = await fed.trust.rotation_status(fed.clock())
    assert status.propagation.pending == ("east",)  # gw-0 still lacks the next root
    await gw.report_health([], trusted_roots=both, instance="gw-0")
    status = await fed.trust.rotation_status(fed.clock())
    assert status.propagation.complete and status.propagation.reason == "every cluster reported"
    assert status.ready and status.next_action == "activate"

    await fed.trust.rotation_activate(fed.clock())  # no force: the reports suffice
    (new_fp,) = set(both) - set(old_fp)
    view = await _next_view(follow, lambda v: _signing(v, td) == new_fp)
    reason = gw.adopt_bundles(view.items.bundles)
    assert reason is not None and reason.startswith("root rotation")
    renewed = await gw.renew()
    assert rotation_renewal(renewed, view.items.bundles) is None  # under the new root now
    assert gw.adopt_bundles(view.items.bundles) is None

    await fed.trust.rotation_retire(fed.clock(), force=True)
    view = await _next_view(follow, lambda v: len(v.items.bundles[td].roots_pem) == 1)
    assert gw.adopt_bundles(view.items.bundles) is None
    assert fingerprints(gw.identity.bundle_pem) == (new_fp,)

    async def registry_verifies_under_new_root() -> bool:  # a fresh channel, new root only
        try:
            await gw.report_health([], trusted_roots=(new_fp,))
        except FederationError:
            return False
        return True

    await wait_for(registry_verifies_under_new_root)
    await gw.renew()  # and the registry accepts the renewed SVID
    await gw.report_health([], trusted_roots=(new_fp,), instance="gw-0")
    report = await fed.store.bundle_reports.get("east/gw-0")
    assert report.record.roots_sha256 == (new_fp,)


async def test_a_bad_roots_report_is_refused_with_the_field_named(fed: Federation) -> None:
    gw = await fed.join_client("east", "gateway")
    with pytest.raises(ValidationError) as err:  # INVALID_ARGUMENT, translated by the client
        await gw.report_health([], trusted_roots=("not-a-fingerprint",))
    assert err.value.field == "roots_sha256[0]" and "not a SHA-256" in str(err.value)
    with pytest.raises(ValidationError) as err:
        await gw.report_health([], trusted_roots=[f"{i:064x}" for i in range(17)])
    assert err.value.field == "trusted_roots_sha256" and "at most 16" in str(err.value)
    with pytest.raises(ValidationError) as err:
        await gw.report_health([], trusted_roots=["a" * 64], instance="Not_A_Name")
    assert err.value.field == "instance"
    assert await fed.store.bundle_reports.list() == []  # nothing stored


def test_a_replica_silent_for_three_refreshes_no_longer_holds_its_cluster_back() -> None:
    """acknowledged() over data: live replicas must all hold the roots; a replica whose
    last report is BUNDLE_REPORT_STALE older than its cluster's newest one is gone."""
    now = datetime.now(UTC)
    old, new = create_root_ca(now), create_root_ca(now)
    state = rotation.prepare(
        rotation.initial_state(old.certificate, {"east"}, now), new.certificate, now
    )
    both = tuple(certificate_fingerprint(c.certificate) for c in (old, new))
    stuck = BundleReport("east", both[:1], now, "gw-old")
    fresh = BundleReport("east", both, now + BUNDLE_REPORT_STALE, "gw-new")
    assert acknowledged(state, [stuck, fresh]).ack_map() == {}
    later = BundleReport("east", both, now + BUNDLE_REPORT_STALE + timedelta(seconds=1), "gw-new")
    assert acknowledged(state, [stuck, later]).ack_map() == {"east": state.sequence}
    assert acknowledged(state, [BundleReport("west", both, now)]).ack_map() == {}  # not a member
