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
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from cryptography import x509

from federation.controlplane.server import start
from federation.controlplane.settings import Settings

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
